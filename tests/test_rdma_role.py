"""The rdma role's InfiniBand side for riga-1, rendered by the role on this machine (no IB port
needed): IPoIB files per rail, opensm.conf read back by opensm's own parser, partitions.conf."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra.plan import build_plan
from infra.plan.partitions import reachable
from infra.site import validate_data
from conftest import RIGA, ROOT, bin_path, site_data
from test_fabric_partitions import SERVICES, hosts, isolated_variant

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
        rdma_libexec_dir: {out}/{{{{ inventory_hostname }}}}/libexec
"""
CHECK = ROOT / "playbooks" / "roles" / "rdma" / "files" / "opensm-check-partitions"
RAILS = 8


def port_guid(host: str, rail: int) -> str:
    """The GUID the fake sysfs gives ``host``'s HCA of ``rail``: unique, and readable back to its host."""
    return f"0x{hashlib.sha256(host.encode()).hexdigest()[:12]}{rail:04x}"


def fake_sysfs(root: Path, host: str, hcas: int) -> None:
    """/sys/class/infiniband as a host with ``hcas`` InfiniBand HCAs (and one Ethernet port) shows it."""
    for rail in range(hcas):
        port = root / f"mlx5_{rail}" / "ports" / "1"
        (port / "gids").mkdir(parents=True)
        (port / "link_layer").write_text("InfiniBand\n")
        guid = port_guid(host, rail)[2:]
        (port / "gids" / "0").write_text("fe80:0000:0000:0000:" + ":".join(guid[i:i + 4] for i in range(0, 16, 4)) + "\n")
    eth = root / "mlx5_eth" / "ports" / "1"
    (eth / "gids").mkdir(parents=True)
    (eth / "link_layer").write_text("Ethernet\n")
    (eth / "gids" / "0").write_text("fe80:0000:0000:0000:b2ff:fffe:0000:0001\n")


def render(tmp: Path, site: dict, hosts: str = "gpu0001,sm01,sm02", skip_sysfs: tuple[str, ...] = (),
           unreachable: tuple[str, ...] = (), host_vars: dict[str, dict] | None = None) -> subprocess.CompletedProcess:
    """The role applied to ``hosts``; every fabric host has a fake sysfs the subnet manager reads by delegation
    (connection local), but ``unreachable`` hosts, which are given a closed port on loopback."""
    plan = build_plan(validate_data(site))
    (tmp / "site.yml").write_text(yaml.safe_dump(site))
    sysfs = {}
    for name, host in plan.hosts.items():
        if host.fabric and name not in skip_sysfs:
            fake_sysfs(tmp / name / "sys", name, len(host.rails))
        sysfs[name] = {"rdma_sysfs_infiniband": str(tmp / name / "sys"), "ansible_connection": "local"}
        if name in unreachable:
            sysfs[name].update(ansible_connection="ssh", ansible_host="127.0.0.1", ansible_port=9)
        sysfs[name].update((host_vars or {}).get(name, {}))
    (tmp / "sysfs.yml").write_text(yaml.safe_dump({"all": {"hosts": sysfs}}))
    for host in hosts.split(","):
        (tmp / host / "network").mkdir(parents=True, exist_ok=True)     # as /etc/systemd/network is on a node
    (tmp / "play.yml").write_text(PLAY.format(hosts=hosts, out=tmp))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(ROOT / "playbooks" / "roles"))
    return subprocess.run([bin_path("ansible-playbook"), "-i", str(tmp / "site.yml"), "-i", str(tmp / "sysfs.yml"),
                           "-e", f"ansible_python_interpreter={sys.executable}",
                           str(tmp / "play.yml")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def riga_ib(isolated: bool) -> dict:
    site = site_data(RIGA)
    if isolated:
        site = isolated_variant(site)
    site["fabrics"][0]["ipoib"].update(mode="connected", mtu=65520)
    return site


@pytest.fixture(scope="module", params=["riga-1", "two-isolated-tenants"])
def rendered(request, tmp_path_factory) -> Path:
    """riga-1, and riga-1 with two tenants fabric-isolated; the role applied to a GPU node and both subnet managers."""
    if shutil.which("opensm") is None:
        pytest.skip("opensm is not installed (.ci/apt-packages.txt)")
    tmp = tmp_path_factory.mktemp(request.param)
    result = render(tmp, riga_ib(request.param != "riga-1"))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    tmp.joinpath("variant").write_text(request.param)
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


def read_partitions(path: Path, every_ca: set[str]) -> dict[str, tuple[set[str], set[str]]]:
    """partitions.conf as opensm's documentation defines it: P_Key -> (full, limited) port GUIDs.

    ALL_CAS stands for ``every_ca``; SELF, ALL_SWITCHES and flags do not name host ports."""
    text = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
    out: dict[str, tuple[set[str], set[str]]] = {}
    for statement in filter(str.strip, text.split(";")):
        header, members = statement.split(":", 1)
        key = header.split(",")[0].split("=")[1].strip()
        full, limited = out.setdefault(key, (set(), set()))
        for member in filter(None, (m.strip() for m in members.split(","))):
            name, _, flag = member.partition("=")
            ports = every_ca if name == "ALL_CAS" else set() if name in ("SELF", "ALL_SWITCHES", "NONE") else {name}
            full.difference_update(ports)               # opensm: a later entry overwrites an earlier one
            limited.difference_update(ports)
            (full if flag == "full" else limited).update(ports)
    return out


def guids_of(rendered: Path) -> dict[str, str]:
    """GUID -> host, for every InfiniBand port the fake sysfs gave a fabric host."""
    plan = build_plan(validate_data(yaml.safe_load((rendered / "site.yml").read_text())))
    return {port_guid(name, rail): name for name, h in plan.hosts.items() if h.fabric for rail in range(len(h.rails))}


def test_opensm_reads_the_rendered_partitions_conf_with_its_own_parser(rendered, tmp_path):
    conf = rendered / "sm01" / "opensm" / "partitions.conf"
    result = subprocess.run([str(CHECK), str(conf)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "partitions.conf"
    broken.write_text(conf.read_text().replace("=full,", "=full, 0xnot-a-guid,", 1))
    result = subprocess.run([str(CHECK), str(broken)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "bad PortGUID" in result.stderr, result.stdout + result.stderr


def test_partitions_conf_lists_every_fabric_port_by_the_guid_its_host_reported(rendered):
    text = (rendered / "sm01" / "opensm" / "partitions.conf").read_text()
    guids = guids_of(rendered)
    listed = set(re.findall(r"\b0x[0-9a-f]{16}\b", text))
    assert listed == set(guids) and len(guids) == 128 * RAILS + 11   # every port, no Ethernet port
    assert "0xb2fffffe00000001" not in text                      # the Ethernet port's
    assert f"{port_guid('gpu0097', 7)}=full,  # gpu0097" in text
    assert (rendered / "sm02" / "opensm" / "partitions.conf").read_text() == text


def test_the_rendered_partitions_conf_means_the_planned_membership_table(rendered):
    guids = guids_of(rendered)
    partitions = read_partitions(rendered / "sm01" / "opensm" / "partitions.conf", set(guids))
    assert partitions["0x7fff"][0] == {g for g, h in guids.items() if h in SERVICES}
    talk: dict[str, set[str]] = {h: set() for h in guids.values()}
    for full, limited in partitions.values():
        for a in full:
            for b in full | limited:
                if guids[a] != guids[b]:
                    talk[guids[a]].add(guids[b])
                    talk[guids[b]].add(guids[a])
    shared, acme, gov = hosts("gpu[0001-0064]"), hosts("gpu[0065-0096]"), hosts("gpu[0097-0128]")
    if (rendered / "variant").read_text() == "riga-1":
        groups = [shared | acme | gov]
    else:
        groups = [shared, acme, gov]
    for group in groups:
        for host in group:
            assert talk[host] == (group | SERVICES) - {host}, host
    for service in SERVICES:
        assert talk[service] == (shared | acme | gov | SERVICES) - {service}
    site = yaml.safe_load((rendered / "site.yml").read_text())
    assert talk == {h: set(peers) for h, peers in reachable(build_plan(validate_data(site)).partitions["compute"]).items()}


def test_each_port_gets_its_own_partition_at_pkey_index_0(rendered):
    """indx0 claims: a node's is its compute partition, a service's the default one; one claim per port."""
    text = "\n".join(line.split("#", 1)[0] for line in (rendered / "sm01" / "opensm" / "partitions.conf").read_text().splitlines())
    claims: dict[str, list[str]] = {}
    for statement in filter(str.strip, text.split(";")):
        header, members = statement.split(":", 1)
        if "indx0" in [flag.strip() for flag in header.split(",")]:
            for member in filter(None, (m.strip() for m in members.split(","))):
                if member != "NONE":
                    assert member.endswith("=full"), member            # never a limited member's index 0
                    claims.setdefault(member.removesuffix("=full"), []).append(header.split(",")[0].split("=")[1].strip())
    guids = guids_of(rendered)
    site = yaml.safe_load((rendered / "site.yml").read_text())
    own = {h: p.key for p in build_plan(validate_data(site)).partitions["compute"] for h in p.full}
    assert claims == {g: [own[h]] for g, h in guids.items()}
    assert {own[h] for h in SERVICES} == {"0x7fff"} and own["gpu0001"] == "0x7ffe"


def test_the_subnet_manager_fails_naming_hosts_that_report_no_guid_or_are_unreachable(tmp_path):
    if shutil.which("opensm") is None:
        pytest.skip("opensm is not installed (.ci/apt-packages.txt)")
    result = render(tmp_path, riga_ib(True), hosts="sm01", skip_sysfs=("gpu0100", "nfs01"), unreachable=("gpu0090",))
    assert result.returncode != 0
    assert "No InfiniBand port GUID from nfs01, gpu0090, gpu0100" in result.stdout, result.stdout[-3000:]
    assert not (tmp_path / "sm01" / "opensm" / "partitions.conf").exists()


def test_loading_the_modules_reports_changed_only_when_modprobe_loads_one(tmp_path):
    """The role's own task, run twice against a stand-in modprobe that loads the modules the first time only."""
    tasks = yaml.safe_load((ROOT / "playbooks/roles/rdma/tasks/configure.yml").read_text())
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


# A GB200-like tray's functions as NVIDIA's deploy guide numbers them: the compute rails' ports are mlx5_0, mlx5_1,
# mlx5_4 and mlx5_5 because the BlueField-3 ports between them (06:03:00.0/.1, 16:03:00.0/.1) take mlx5_2/3 and 6/7.
TRAY = {"0000:03:00.0": "mlx5_0", "0002:03:00.0": "mlx5_1", "0006:03:00.0": "mlx5_2", "0006:03:00.1": "mlx5_3",
        "0010:03:00.0": "mlx5_4", "0012:03:00.0": "mlx5_5", "0016:03:00.0": "mlx5_6", "0016:03:00.1": "mlx5_7"}
RAIL_PORTS = ["0000:03:00.0", "0002:03:00.0", "0010:03:00.0", "0012:03:00.0"]


def fake_pci(root: Path, functions: dict[str, str]) -> Path:
    """/sys/bus/pci/devices with each function's RDMA device and its IPoIB interface (ib<N> in mlx5_N's order)."""
    for address, device in functions.items():
        (root / address / "infiniband" / device).mkdir(parents=True)
        (root / address / "net" / f"ib{device.removeprefix('mlx5_')}").mkdir(parents=True)
    return root


def four_rail_trays(ports: list[str]) -> dict:
    site = site_data(RIGA)
    site["fabrics"][0]["rails"] = 4
    site["node_types"]["hgx-h200"]["hca"] = {"model": "ConnectX-7", "ports": ports}
    return site


def test_each_rail_is_the_rdma_device_at_its_pci_address_not_the_nth_mlx5(tmp_path):
    pci = fake_pci(tmp_path / "pci", TRAY)
    result = render(tmp_path, four_rail_trays(RAIL_PORTS), hosts="gpu0001", host_vars={"gpu0001": {
        "rdma_sysfs_pci_devices": str(pci), "rdma_rails_file": str(tmp_path / "gpu0001" / "rdma-rails")}})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    networks = sorted((tmp_path / "gpu0001" / "network").iterdir())
    assert [f.name for f in networks] == [f"30-gigafactory-compute-rail{r}.network" for r in range(4)]
    rail2 = networks[2].read_text()
    assert "# RDMA device mlx5_4, PCI 0010:03:00.0 (node type's hca.ports)\n" in rail2 and "Name=ib4\n" in rail2
    assert "Address=10.50.129.1/18\n" in rail2                                       # the plan's rail-2 address
    rails = (tmp_path / "gpu0001" / "rdma-rails").read_text().splitlines()
    assert rails[2:] == ["0 0000:03:00.0 mlx5_0 ib0", "1 0002:03:00.0 mlx5_1 ib1", "2 0010:03:00.0 mlx5_4 ib4",
                         "3 0012:03:00.0 mlx5_5 ib5"]


def test_a_rail_port_missing_from_sysfs_stops_the_role_naming_its_pci_address(tmp_path):
    pci = fake_pci(tmp_path / "pci", {a: d for a, d in TRAY.items() if a != "0010:03:00.0"})
    result = render(tmp_path, four_rail_trays(RAIL_PORTS), hosts="gpu0001", host_vars={"gpu0001": {
        "rdma_sysfs_pci_devices": str(pci), "rdma_rails_file": str(tmp_path / "gpu0001" / "rdma-rails")}})
    assert result.returncode != 0
    assert "No RDMA device with a network interface" in result.stdout and "for 0010:03:00.0:" in result.stdout, result.stdout[-3000:]
    assert not (tmp_path / "gpu0001" / "network" / "30-gigafactory-compute-rail0.network").exists()
