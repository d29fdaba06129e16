"""The rdma role's InfiniBand side for riga-1, rendered by the role on this machine (no IB port
needed): IPoIB files per rail, opensm.conf read back by opensm's own parser, partitions.conf."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import RIGA, ROOT, bin_path, site_data

PLAY = """
- name: Render the rdma role's configuration only
  hosts: {hosts}
  connection: local
  gather_facts: false
  roles:
    - role: rdma
      vars:
        rdma_install: false
        rdma_network_dir: {out}/{{{{ inventory_hostname }}}}/network
        rdma_opensm_config_dir: {out}/{{{{ inventory_hostname }}}}/opensm
"""


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    """riga-1 with two tenants fabric-isolated; the role applied to a GPU node and both subnet managers."""
    if shutil.which("opensm") is None:
        pytest.skip("opensm is not installed (.ci/apt-packages.txt)")
    tmp = tmp_path_factory.mktemp("rdma")
    site = site_data(RIGA)
    for tenant in site["tenants"]:
        if tenant["name"] in ("acme-ai", "gov-lv"):
            tenant["fabric_isolation"] = True
    site["fabrics"][0]["ipoib"].update(mode="connected", mtu=65520)
    (tmp / "site.yml").write_text(yaml.safe_dump(site))
    for host in ("gpu0001", "sm01", "sm02"):
        (tmp / host / "network").mkdir(parents=True)     # as /etc/systemd/network is on a node
    (tmp / "play.yml").write_text(PLAY.format(hosts="gpu0001,sm01,sm02", out=tmp))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(ROOT / "playbooks" / "roles"))
    result = subprocess.run([bin_path("ansible-playbook"), "-i", str(tmp / "site.yml"), "-e",
                             f"ansible_python_interpreter={sys.executable}", str(tmp / "play.yml")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return tmp


def test_one_ipoib_file_per_rail_with_the_planned_address_mode_and_mtu(rendered):
    files = sorted((rendered / "gpu0001" / "network").iterdir())
    assert [f.name for f in files] == [f"30-gigafactory-compute-rail{r}.network" for r in range(8)]
    rail3 = files[3].read_text()
    assert "Name=ib3\n" in rail3
    assert "Address=10.50.97.1/19\n" in rail3          # the plan's rail-3 address for gpu0001
    assert "MTUBytes=65520\n" in rail3
    assert "[IPoIB]\nMode=connected\n" in rail3


def test_no_subnet_manager_on_a_compute_node(rendered):
    assert not (rendered / "gpu0001" / "opensm").exists()


@pytest.mark.parametrize("host, priority", [("sm01", 15), ("sm02", 14)])
def test_opensm_reads_the_priority_from_the_order_of_subnet_managers(rendered, host, priority):
    conf = rendered / host / "opensm" / "opensm.conf"
    result = subprocess.run(["opensm", "--config", str(conf), "--create-config", str(rendered / f"{host}.dump")],
                            capture_output=True, text=True, timeout=60)
    said = result.stdout + result.stderr
    assert result.returncode == 0 and "Unrecognized token" not in said, said
    dump = dict(line.split(" ", 1) for line in (rendered / f"{host}.dump").read_text().splitlines()
                if line and not line.startswith("#") and " " in line)
    assert dump["sm_priority"] == str(priority)
    assert dump["partition_config_file"] == str(rendered / host / "opensm" / "partitions.conf")
    assert dump["no_partition_enforcement"] == "FALSE"


def test_each_isolated_tenant_gets_its_own_partition_key(rendered):
    lines = [line for line in (rendered / "sm01" / "opensm" / "partitions.conf").read_text().splitlines()
             if line and not line.startswith("#")]
    assert lines == [
        "Default=0x7fff, ipoib : ALL=limited, SELF=full ;",
        "acme-ai=0x0001, ipoib : SELF=full ;",
        "gov-lv=0x0002, ipoib : SELF=full ;",
    ]
    assert (rendered / "sm02" / "opensm" / "partitions.conf").read_text() == (rendered / "sm01" / "opensm" / "partitions.conf").read_text()
