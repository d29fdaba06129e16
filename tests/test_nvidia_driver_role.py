"""The nvidia_driver role's decisions, from the node type: packages, Fabric Manager, IMEX, peermem, the branch pin.

Ansible itself resolves the role's defaults and vars for riga-1's hosts (inventory from the site file) and renders
the role's APT files; the role's install on a VM is the Molecule scenario (distribution source, slow).
"""

from __future__ import annotations

import json

import pytest

from conftest import ROOT, playbook, site_data, RIGA
from nvlink_data import riga_of_trays

ROLE = ROOT / "playbooks" / "roles" / "nvidia_driver"
# The role's own defaults and vars, resolved by Ansible for riga-1's gpu0001 on this machine.
ON_GPU0001 = f"""  hosts: gpu0001
  connection: local
  gather_facts: false
  vars:
    site_repository_key_signed_by: /etc/apt/keyrings/gigafactory-cuda.asc   # as site_repository_key sets it first
  vars_files:
    - {ROLE}/defaults/main.yml
    - {ROLE}/vars/main.yml
"""

PLAY = f"""
- name: Resolve the nvidia_driver role's variables and render its APT files per host
{ON_GPU0001}  tasks:
    - name: Write what the role would do
      ansible.builtin.copy:
        dest: "{{{{ out }}}}/decision.json"
        content: "{{{{ {{'packages': _nvidia_driver_packages, 'extra': _nvidia_driver_extra_packages,
                        'peermem': nvidia_driver_peermem | bool, 'module': _nvidia_driver_module_file}} | to_json }}}}"
        mode: "0644"
    - name: Render the role's APT files
      ansible.builtin.template:
        src: "{ROLE}/templates/{{{{ item }}}}.j2"
        dest: "{{{{ out }}}}/{{{{ item }}}}"
        mode: "0644"
      loop: [preferences, cuda.sources]
"""


def decide(tmp_path, site: dict) -> tuple[dict, str, str]:
    out = tmp_path / "out"
    out.mkdir()
    result = playbook(tmp_path, site, PLAY.replace("{{ out }}", str(out)))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return (json.loads((out / "decision.json").read_text()), (out / "preferences").read_text(),
            (out / "cuda.sources").read_text())


def test_nvswitch_node_gets_fabric_manager_and_peermem_from_the_sites_mirror(tmp_path):
    decision, preferences, sources = decide(tmp_path, site_data(RIGA))     # H200 HGX, 8 HCAs, branch 570 open
    assert decision == {"packages": ["nvidia-open"], "extra": ["nvidia-fabricmanager-570"], "peermem": True, "module": "nvidia"}
    assert "Pin: version 570.*\nPin-Priority: 1001" in preferences
    assert "URIs: http://mirror.riga-1.internal/cuda/debian13/x86_64\nSuites: /\n" in sources


def test_nvlink_domain_node_gets_imex_not_fabric_manager(tmp_path):
    site = riga_of_trays(site_data(RIGA))
    decision, _, _ = decide(tmp_path, site)
    assert decision["extra"] == ["nvidia-imex-570"]


def test_proprietary_flavor_and_a_node_without_hcas(tmp_path):
    site = site_data(RIGA)
    site["software"]["nvidia_driver"]["flavor"] = "proprietary"
    site["node_types"]["hgx-h200"].pop("hca")
    site["fabrics"] = []
    for pool in site["pools"]:
        pool.pop("fabric", None)
    decision, _, _ = decide(tmp_path, site)
    assert decision["packages"] == ["cuda-drivers"] and decision["peermem"] is False


REBOOT_PLAY = f"""
- name: The reboot decision from what this run found on the node
{ON_GPU0001}  vars:
    _nvidia_driver_installed: {{{{ changed: {{installed}} }}}}
    _nvidia_driver_nouveau: {{{{ stat: {{{{ exists: {{nouveau}} }}}} }}}}
    _nvidia_driver_loaded: {{loaded}}
    _nvidia_driver_built: {{{{ stdout: "570.172.08" }}}}
  tasks:
    - name: Write it
      ansible.builtin.copy:
        dest: "{{{{{{{{ out }}}}}}}}/reboot"
        content: "{{{{{{{{ _nvidia_driver_needs_reboot | bool }}}}}}}}"
        mode: "0644"
"""


@pytest.mark.parametrize(("installed", "nouveau", "loaded", "reboot"), [
    ("true", "true", "{}", True),                                          # nouveau holds the GPUs
    ("true", "false", '{content: "NTcwLjEzMy4yMAo="}', True),              # 570.133.20 loaded, 570.172.08 built
    ("true", "false", '{content: "NTcwLjE3Mi4wOAo="}', False),             # the built one is already loaded
    ("true", "false", "{}", False),                                        # nothing loaded: no GPU, or first load
    ("false", "true", '{content: "NTcwLjEzMy4yMAo="}', False),             # this run installed nothing
], ids=["nouveau-loaded", "older-loaded", "same-loaded", "nothing-loaded", "nothing-installed"])
def test_a_reboot_only_when_an_install_changed_the_module_under_a_loaded_one(tmp_path, installed, nouveau, loaded, reboot):
    out = tmp_path / "out"
    out.mkdir()
    play = REBOOT_PLAY.format(installed=installed, nouveau=nouveau, loaded=loaded).replace("{{ out }}", str(out))
    result = playbook(tmp_path, site_data(RIGA), play)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert (out / "reboot").read_text() == str(reboot)


# The role's IMEX parts on an NVLink tray (install: config.cfg, the service disabled; configure: masked or not), run by
# Ansible for riga-1's hosts as trays: gpu0001 (train, a Slurm pool)
# and gpu0097 (infer, a Kubernetes pool). systemctl is a stand-in (tests/systemctl_standin.sh: no systemd here) that
# starts from the state the nvidia-imex package leaves, enabled.
IMEX_PLAY = """
- name: The nvidia_driver role's IMEX part
  hosts: "{host}"
  connection: local
  gather_facts: false
  environment:
    PATH: "{path}"
    SYSTEMCTL_STANDIN: "{state}"
  tasks:
    - name: As the install part runs it
      ansible.builtin.include_role:
        name: nvidia_driver
        tasks_from: imex
        public: true
      vars:
        nvidia_driver_imex_config_dir: "{out}/etc/nvidia-imex"
    - name: As the configure part runs it
      ansible.builtin.include_role:
        name: nvidia_driver
        tasks_from: imex_service
    - name: What the role decided
      ansible.builtin.copy:
        dest: "{out}/service"
        content: "{{{{ nvidia_driver_imex_service }}}}"
        mode: "0644"
"""


@pytest.mark.parametrize(("host", "service"), [("gpu0001", "disabled"), ("gpu0097", "masked")], ids=["slurm", "kubernetes"])
def test_nvlink_tray_gets_imex_config_and_a_service_never_started_at_boot(tmp_path, host, service):
    import os
    import re
    import shutil

    site = riga_of_trays(site_data(RIGA))
    out, state, bin_ = tmp_path / "out", tmp_path / "state", tmp_path / "bin"
    for path in (out, state, bin_):
        path.mkdir()
    shutil.copy(ROOT / "tests" / "systemctl_standin.sh", bin_ / "systemctl")
    (bin_ / "systemctl").chmod(0o755)
    play = IMEX_PLAY.format(host=host, path=f"{bin_}:{os.environ['PATH']}", state=state, out=out)
    runs = []
    for _ in range(2):
        result = playbook(tmp_path, site, play)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        runs.append(result.stdout)
    assert (out / "service").read_text() == service
    assert (state / "nvidia-imex.service").read_text().strip() == service
    config = (out / "etc/nvidia-imex/config.cfg").read_text()
    assert f"\nIMEX_NODE_CONFIG_FILE={out}/etc/nvidia-imex/nodes_config.cfg\n" in config, config
    assert "\nSERVER_PORT=50000\n" in config and "\nBIND_INTERFACE_IP=\n" in config, config
    # the first run changed the service (and wrote the file), the second nothing
    assert re.search(r"changed=[1-9]", runs[0].split("PLAY RECAP")[1]), runs[0]
    assert "changed=0" in runs[1].split("PLAY RECAP")[1], runs[1]
    assert not any(line.startswith(("start", "enable")) for line in (state / "calls").read_text().splitlines())


def test_a_grace_node_reads_the_sbsa_repository_beside_the_x86_64_one(tmp_path):
    """NVIDIA's CUDA repository has one tree per architecture (x86_64, sbsa): an aarch64 node type (gf_arch) reads
    sbsa from the mirror repositories.cuda names; an x86_64 one the URL as written (the first test)."""
    site = site_data(RIGA)
    site["node_types"]["hgx-h200"]["cpu"]["arch"] = "aarch64"
    _, _, sources = decide(tmp_path, site)
    assert "URIs: http://mirror.riga-1.internal/cuda/debian13/sbsa\nSuites: /\n" in sources
