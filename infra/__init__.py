"""gigafactory: infrastructure as code for AI factories.

Layers, each reading only the one above it:
``site`` (the site file as a typed, validated model) -> ``plan`` (pure functions:
hosts, racks, addresses, fabric, capacity, Slurm layout) -> ``render`` (Jinja2
configuration files and inventory views) -> apply (Ansible through ansible-runner,
Pulumi components).
"""
