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


def test_loading_the_modules_reports_changed_only_when_modprobe_loads_one(tmp_path):
    """The role's own task, run twice against a stand-in modprobe that loads the modules the first time only."""
    tasks = yaml.safe_load((ROOT / "playbooks/roles/rdma/tasks/main.yml").read_text())
    task = next(t for t in tasks if t["name"] == "Load the RDMA kernel modules now")
    task = {k: v for k, v in task.items() if k != "when"}
    stub = tmp_path / "bin"
    stub.mkdir()
    # kmod's modprobe --verbose: an "insmod <file>" line per module it inserts, nothing for one already loaded.
    (stub / "modprobe").write_text('#!/bin/sh\necho "$@" >> "$STATE/argv"\n[ -e "$STATE/loaded" ] && exit 0\ntouch "$STATE/loaded"\n'
                                   'echo "insmod /lib/modules/6.12.0/kernel/drivers/infiniband/sw/rxe/rdma_rxe.ko.xz"\n')
    (stub / "modprobe").chmod(0o755)
    record = {"ansible.builtin.set_fact": {"changed_runs": "{{ changed_runs + [_rdma_modprobe is changed] }}"}, "name": "Keep it"}
    play = [{"name": "modprobe twice", "hosts": "localhost", "connection": "local", "gather_facts": False,
             "environment": {"PATH": f"{stub}:/usr/bin:/bin", "STATE": str(tmp_path)},
             "vars": {"_rdma_modules": ["ib_core", "rdma_rxe"], "changed_runs": []},
             "tasks": [task, record, task, record,
                       {"name": "Write", "ansible.builtin.copy": {"content": "{{ changed_runs | to_json }}", "dest": str(tmp_path / "changed.json"),
                                                                  "mode": "0644"}}]}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    result = subprocess.run([bin_path("ansible-playbook"), "-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}",
                             str(tmp_path / "play.yml")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert (tmp_path / "changed.json").read_text() == "[true, false]"
    assert (tmp_path / "argv").read_text().splitlines() == ["--all --verbose ib_core rdma_rxe"] * 2
