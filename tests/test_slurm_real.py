"""riga-1's rendered Slurm configuration, loaded by a real slurmctld 24.11 (Debian 13)."""

from __future__ import annotations

import os
import re
import shutil
from collections import Counter

import pytest

from infra.plan import build_plan
from infra.render.files import render_file, slurm_files
from infra.site import load_site, validate_data
from conftest import RIGA, ROOT

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("debootstrap") or not shutil.which("unshare"),
                       reason="needs root, debootstrap and unshare"),
]


def test_slurmctld_starts_on_riga1_and_lists_the_training_nodes():
    from realslurm import daemon_logs, run_in_slurm, slurm_chroot

    root = slurm_chroot()
    plan = build_plan(load_site(RIGA))
    files = {f"/etc/{rel}": content for rel, content in slurm_files(plan).items()}
    files["/etc/hosts"] = render_file(plan, "hosts")
    result = run_in_slurm(
        root, files, controller=plan.slurm.controllers[0], dbd=plan.slurm.accounting, cluster=plan.slurm.cluster,
        commands=["sinfo --noheader -N -o '%N|%P|%G'", "scontrol show nodes gpu0042", "scontrol show topology",
                  "scontrol show config"])
    out = result.stdout
    assert "READY" in out, result.stderr + daemon_logs(root)
    rows = [line.split("|") for line in out.splitlines() if re.match(r"^gpu\d{4}\|", line)]
    batch = sorted({node for node, part, gres in rows if part.rstrip("*") == "batch" and gres == "gpu:h200:8"})
    assert batch == [f"gpu{n:04d}" for n in range(1, 97)], out + daemon_logs(root)
    assert "Gres=gpu:h200:8" in out and "RealMemory=1992294" in out
    assert f"NodeAddr={plan.hosts['gpu0042'].address()} " in out, out         # NodeAddr= paired with NodeName= in order
    assert "SwitchName=compute-su2" in out
    assert re.search(r"SlurmctldHost\[1\]\s*=\s*ctl02", out)
    assert re.search(r"AccountingStorageEnforce\s*=\s*associations,limits,qos", out)


TENANTS_PLAY = """
- name: The slurm_tenants role against the real accounting database
  hosts: ctl01
  connection: local
  gather_facts: false
  roles:
    - slurm_tenants
"""


def test_tenants_become_accounts_and_qos_and_a_changed_quota_updates_in_place(tmp_path):
    """The slurm_tenants role run three times against slurmdbd 24.11 and MariaDB: create, rerun, changed quota.

    Ansible runs on this machine (connection local) inside the daemons' namespaces; its ``sacctmgr`` is the chroot's
    own binary, reached through a two-line exec wrapper on PATH, so every query and change is real.
    """
    import json
    import sys

    from realslurm import daemon_logs, run_in_slurm, slurm_chroot
    from conftest import DEMO, ROOT, bin_path

    root = slurm_chroot()
    site = load_site(DEMO)
    plan = build_plan(site, DEMO)
    files = {f"/etc/{rel}": content for rel, content in slurm_files(plan).items()}
    files["/etc/hosts"] = render_file(plan, "hosts")
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    (wrappers / "sacctmgr").write_text(f'#!/bin/sh\nexec chroot {root} sacctmgr "$@"\n')
    (wrappers / "sacctmgr").chmod(0o755)
    play = tmp_path / "tenants.yml"
    play.write_text(TENANTS_PLAY)
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps({"slurm_tenants": [
        {"tenant": "acme-ai", "account": "acme-ai", "fairshare": 60, "gpus": None, "cpus": None, "nodes": 3},
        {"tenant": "univ-latvia", "account": "univ-latvia", "fairshare": 25, "gpus": None, "cpus": None, "nodes": 1}]}))
    ansible = (f"env PATH={wrappers}:{os.path.dirname(sys.executable)}:/usr/sbin:/usr/bin:/sbin:/bin HOME={tmp_path} "
               f"ANSIBLE_CONFIG={ROOT / 'ansible.cfg'} ANSIBLE_ROLES_PATH={ROOT / 'playbooks' / 'roles'} "
               f"ANSIBLE_LOCAL_TEMP={tmp_path / 'tmp'} {bin_path('ansible-playbook')} -i {DEMO} "
               f"-e ansible_python_interpreter={sys.executable} {play}")
    result = run_in_slurm(
        root, files, controller=plan.slurm.controllers[0], dbd=plan.slurm.accounting, cluster=plan.slurm.cluster,
        commands=[], host_commands=[
            "echo '=== first'", ansible,
            "echo '=== again'", ansible,
            "echo '=== changed quota'", f"{ansible} -e @{changed}",
            "echo '=== database'",
            f"chroot {root} sacctmgr --noheader --parsable2 show qos format=name,grptres",
            f"chroot {root} sacctmgr --noheader --parsable2 show association where cluster=demo format=account,user,fairshare,qos,defaultqos",
        ], timeout=900)
    out = result.stdout
    assert "=== database" in out, out[-4000:] + result.stderr[-3000:] + daemon_logs(root)
    first, again, changed_run, database = (part for part in out.split("=== ")[1:])

    def recap(text: str) -> dict[str, int]:
        line = next(line for line in text.splitlines() if line.startswith("ctl01") and "ok=" in line)
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}

    assert recap(first)["changed"] >= 4 and recap(first)["failed"] == 0, first[-3000:]
    assert recap(again)["changed"] == 0, again[-3000:]
    assert recap(changed_run)["changed"] == 2 and recap(changed_run)["failed"] == 0, changed_run[-3000:]   # one QOS, one account
    rows = database.splitlines()
    assert "acme-ai|node=3" in rows and "univ-latvia|node=1" in rows, database
    assert "acme-ai||60|acme-ai|acme-ai" in rows and "univ-latvia||25|univ-latvia|univ-latvia" in rows, database


NVL72 = ROOT / "inventories" / "nvl72-gigafactory" / "site.yml"


def _blocks_shown(plan, files: dict[str, str], nodes: tuple[str, ...] = ()) -> tuple[dict[str, str], list[tuple[str, str]], float, dict[str, str]]:
    """slurmctld started on ``files``: ``scontrol show topology``'s base blocks (name -> nodes), its aggregated
    blocks (names, size), the seconds from the daemons' start to the answer and the NodeAddr of each of ``nodes``."""
    import time

    from realslurm import daemon_logs, run_in_slurm, slurm_chroot

    root = slurm_chroot()
    started = time.monotonic()
    result = run_in_slurm(
        root, files, controller=plan.slurm.controllers[0], dbd=plan.slurm.accounting, cluster=plan.slurm.cluster,
        commands=["scontrol show topology", "scontrol show config", *(f"scontrol show nodes {n}" for n in nodes)])
    seconds = time.monotonic() - started
    out = result.stdout
    assert "READY" in out, result.stderr + daemon_logs(root)
    assert re.search(r"TopologyPlugin\s*=\s*topology/block", out), out[-3000:]
    blocks = dict(re.findall(r"^BlockName=(\S+) BlockIndex=\d+ Nodes=(\S+) BlockSize=\d+$", out, re.M))
    aggregated = re.findall(r"^AggregatedBlock=(\S+) BlockIndex=\d+ Nodes=\S+ BlockSize=(\d+)$", out, re.M)
    addresses = dict(re.findall(r"^NodeName=(\S+) (?:(?!^NodeName=).)*?\bNodeAddr=(\S+)", out, re.M | re.S))
    return blocks, aggregated, seconds, addresses


def _rendered(plan) -> dict[str, str]:
    files = {f"/etc/{rel}": content for rel, content in slurm_files(plan).items()}
    # node energy over IPMI (the reference site): the chroot has no slurm-wlm-ipmi-plugins (nor a BMC)
    files["/etc/slurm/slurm.conf"] = re.sub(r"^AcctGather(Energy|Node).*\n", "", files["/etc/slurm/slurm.conf"], flags=re.M)
    files["/etc/hosts"] = render_file(plan, "hosts")
    return files


def test_slurmctld_takes_an_nvl72_sites_blocks_in_rack_order():
    """128 GB300 NVL72 racks, 8 to a scalable unit: slurmctld 24.11 lists each rack's block and aggregates them as
    topology.conf's BlockSizes=18,36,72,144 says, by the file's (the racks') order."""
    from test_slurm_blocks import nvl72_blocks

    plan = build_plan(validate_data(nvl72_blocks(racks=128, scalable_unit=144)))
    assert plan.slurm.block_sizes == (18, 36, 72, 144)
    blocks, aggregated, seconds, _ = _blocks_shown(plan, _rendered(plan))
    print(f"slurmctld with {len(blocks)} blocks of {len(plan.slurm.blocks) * 18} trays: {seconds:.1f} s")
    assert blocks == dict(plan.slurm.blocks) and len(blocks) == 128
    assert sorted(Counter(size for _, size in aggregated).items()) == [("144", 16), ("36", 64), ("72", 32)], aggregated
    assert ("n[01-08]", "144") in aggregated and ("n[125-128]", "72") in aggregated


# slurmctld 24.11 resolves every node's address as it starts (read_config.c _validate_slurmd_addr): slurm.conf's
# NodeAddr= (the planned management addresses) spares it 21,600 lookups through a 25,216-line /etc/hosts, which took
# about 106 s of this case on this machine; with them the case takes a few seconds (docs/slurm.md).
def test_slurmctld_takes_the_reference_nvl72_sites_blocks():
    """The reference GB300 NVL72 site's slurm.conf and topology.conf: a block per Slurm rack, aggregated in fours."""
    plan = build_plan(load_site(NVL72))
    trays = ("gb00001", "gb00255", "gb00256", "gb21600")          # the first, across an octet (.128.255, .129.0), the last
    blocks, aggregated, seconds, addresses = _blocks_shown(plan, _rendered(plan), trays)
    print(f"slurmctld with {len(blocks)} blocks of {len(plan.slurm.blocks) * 18} trays: {seconds:.1f} s")
    assert addresses == {t: plan.hosts[t].address() for t in trays}, addresses
    assert blocks == dict(plan.slurm.blocks) and len(blocks) == 1200
    assert sorted(Counter(size for _, size in aggregated).items()) == [("36", 600), ("72", 300)], aggregated
    assert ("n[0001-0004]", "72") in aggregated and ("n[1197-1198]", "36") in aggregated


def test_slurmctld_stops_on_a_block_below_the_base_that_validate_refuses():
    """A topology.conf written by hand with a 17-node block under BlockSizes base 18: real slurmctld 24.11 stops on it;
    the site change that would render it (a second NVLink pool of 17-tray domains) is refused by validate."""
    from realslurm import daemon_logs, run_in_slurm, slurm_chroot
    from test_slurm_blocks import _second_nvlink_pool, nvl72_blocks
    from test_nvlink_placement import problems

    good = nvl72_blocks(racks=2, scalable_unit=36)
    plan = build_plan(validate_data(good))
    files = {f"/etc/{rel}": content for rel, content in slurm_files(plan).items()}
    files["/etc/hosts"] = render_file(plan, "hosts")
    topology = files["/etc/slurm/topology.conf"]
    assert "BlockName=n01 Nodes=gb[0001-0018]" in topology and "BlockSizes=18,36" in topology
    files["/etc/slurm/topology.conf"] = topology.replace("Nodes=gb[0001-0018]", "Nodes=gb[0001-0017]")
    root = slurm_chroot()
    result = run_in_slurm(root, files, controller=plan.slurm.controllers[0], dbd=plan.slurm.accounting,
                          cluster=plan.slurm.cluster, commands=["scontrol show topology"])
    logs = daemon_logs(root)
    assert "READY" not in result.stdout, result.stdout
    assert "fatal: Block configuration (n01) children count lower than bblock_node_cnt" in logs, result.stderr + logs
    refused = problems(_second_nvlink_pool(nvl72_blocks(racks=2, scalable_unit=36), trays=17))
    assert [p.split(":")[0] for p in refused] == ["node_types.gb300-small.nvlink.trays"], refused
