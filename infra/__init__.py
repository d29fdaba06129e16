"""gigafactory: infrastructure as code for AI factories.

Layers, bottom to top, each importing only those below it (docs/architecture.md; tests/test_layers.py):
``project`` (where the checkout and the Ansible tree are) -> ``site`` (the site file as a typed, validated model)
-> ``plan`` (pure functions: hosts, racks, addresses, fabric, capacity, Slurm layout; the phase registry) ->
``render`` (Jinja2 configuration files and inventory views) -> ``usage`` (metering) -> ``runner`` (Ansible through
ansible-runner) -> ``image`` (node images) -> ``orchestrate`` (``up``) -> ``stack`` (Pulumi) -> ``vm`` (the QEMU
test bed and the demo) -> ``cli`` (the command lines).
"""
