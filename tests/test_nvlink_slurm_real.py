"""NVLink domains on real Slurm 24.11 daemons (Debian 13 chroot): 36 stock slurmd, two blocks of 18 trays.

The site is tests/nvlink_site.py's: the demo with 36 GB300 trays in two racks, one NVLink domain of 18 each. slurm.conf
and the imex job script's map (gigafactory-nvlink.conf) are the project's render of it; each slurmd runs as its own
node (``slurmd -D -N nodeNN``, its own UTS namespace, loopback address and port), in one network namespace with
slurmctld, slurmdbd and one munged. The job script is slurm_compute's own file, installed by its job_scripts tasks;
``systemctl start/stop nvidia-imex`` is a stand-in that records each call and the node list the daemon would read (no
GPU, no IMEX here). slurmctld's switch/nvidia_imex plugin is real: it gives each job an IMEX channel.

One cluster for the module (its scenarios run in one pass, tests/nvlink_slurm_driver.sh), then each test reads what
its scenario recorded: ``--segment=16`` jobs stay inside blocks, ``--exclusive=topo`` keeps a block to one job, a
segment starts in a block with a tray drained, two jobs in one block each get a node list of exactly their own
nodes on every node, started by the prolog and stopped by the epilog, and a failing prolog drains its node.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from infra.plan import build_plan
from infra.render.files import render_file, slurm_files
from infra.site.hostlists import expand
from infra.site.load import validate_data

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("debootstrap") or not shutil.which("unshare"),
                       reason="needs root, debootstrap and unshare"),
]

HERE = Path(__file__).parent
BLOCKS = {"nvl1": "node[01-18]", "nvl2": "node[19-36]"}     # one per rack's NVLink domain: the plan's topology.conf
# The imex job script's settings on this machine: a node list per node, and the stand-in in place of systemctl
IMEX_DEFAULTS = """IMEX_NODES_FILE=/var/lib/imex-standin/%n/nodes_config.cfg
IMEX_START="/usr/local/bin/imex-standin start %n"
IMEX_STOP="/usr/local/bin/imex-standin stop %n"
"""
STANDIN = """#!/bin/sh
# stand-in for systemctl start/stop nvidia-imex: one line per call, with the node list the daemon would read
set -eu
dir=/var/lib/imex-standin/$2
[ ! -e "$dir/fail" ] || { echo "nvidia-imex failed to start" >&2; exit 1; }
printf '%s %s %s\\n' "$1" "${SLURM_JOB_ID:-?}" "$(tr '\\n' ' ' <"$dir/nodes_config.cfg")" >>"$dir/calls"
"""


def block_of(node: str) -> str:
    return next(name for name, nodes in BLOCKS.items() if node in expand(nodes))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, demo_module):
    """Start the cluster, run every scenario once, return what each recorded (and the addresses)."""
    from conftest import ROOT
    from nvlink_site import nvlink_site
    from realslurm import daemon_logs, run_in_slurm, separate_slurmd, slurm_chroot
    from test_metering_real import _for_a_chroot, install_job_scripts

    from infra.render.inventory import slurm_vars

    tmp = tmp_path_factory.mktemp("nvlink")
    site = validate_data(nvlink_site(demo_module))
    plan = build_plan(site)
    nodes = {n: plan.hosts[n].address() for n in expand("node[01-36]")}
    files = {f"/etc/{rel}": content for rel, content in slurm_files(plan).items()}
    conf = files["/etc/slurm/slurm.conf"]
    assert "\nSwitchType=switch/nvidia_imex\n" in conf and " OverSubscribe=EXCLUSIVE " in conf, conf
    assert "\nPrologFlags=Alloc\n" in conf, conf
    conf = separate_slurmd(_for_a_chroot(conf), "node[01-36]", nodes)
    assert "\nTopologyPlugin=topology/block\n" in conf, conf
    blocks = [line for line in files["/etc/slurm/topology.conf"].splitlines() if line.startswith("Block")]
    assert blocks[:2] == [f"BlockName={name} Nodes={nodes}" for name, nodes in BLOCKS.items()], blocks
    assert blocks[2].startswith("BlockSizes=18"), blocks
    files["/etc/slurm/slurm.conf"] = conf + "DebugFlags=Switch\nSlurmctldDebug=debug\n"
    files["/etc/slurm/cgroup.conf"] = "CgroupPlugin=disabled\n"
    files["/etc/hosts"] = render_file(plan, "hosts")
    files["/etc/default/gigafactory-imex"] = IMEX_DEFAULTS
    root = slurm_chroot(slurmd=True)
    state = root / "var/lib/imex-standin"
    # the trays' GPUs: slurmd 24.11 drops a GPU without a File= that exists (as in test_metering_real)
    for i in range(4):
        (root / "dev" / f"nvidia{i}").touch()
    shutil.rmtree(state, ignore_errors=True)
    for node in nodes:
        (state / node).mkdir(parents=True)
    (root / "usr/local/bin/imex-standin").write_text(STANDIN)
    (root / "usr/local/bin/imex-standin").chmod(0o755)
    gf_slurm = slurm_vars(site, plan)["gf_slurm"]
    assert gf_slurm["job_scripts"] == ["imex"]
    install_job_scripts(root, tmp, gf_slurm)
    script = ROOT / "playbooks/roles/slurm_compute/files/gigafactory-imex"
    for part in ("prolog.d", "epilog.d"):
        assert (root / "etc/slurm" / part / "50-gigafactory-imex").read_bytes() == script.read_bytes()

    out = tmp / "out"
    out.mkdir()
    started = time.monotonic()
    result = run_in_slurm(
        root, files, controller=plan.slurm.controllers[0], dbd=plan.slurm.accounting, cluster=plan.slurm.cluster,
        slurmd=list(nodes.items()), timeout=600, host_timeout=400,
        commands=["sacctmgr -i add account lab", "sacctmgr -i add user root account=lab"],
        host_commands=[f"bash {HERE / 'nvlink_slurm_driver.sh'} {root} {out}"])
    elapsed = time.monotonic() - started
    context = result.stdout[-3000:] + result.stderr[-3000:] + daemon_logs(root)
    assert (out / "done").exists(), context
    recorded = {p.name: p.read_text() for p in out.iterdir()}
    recorded["calls"] = {n: (state / n / "calls").read_text() if (state / n / "calls").exists() else "" for n in nodes}
    recorded["ctld_log"] = (root / "var/log/slurm/slurmctld.log").read_text()
    imex_log = root / "var/log/slurm/gigafactory-imex.log"
    recorded["imex_log"] = imex_log.read_text() if imex_log.exists() else ""
    print(f"cluster of 36 slurmd and every scenario: {elapsed:.0f} s")
    yield {"out": recorded, "addresses": nodes, "context": context[-4000:]}


@pytest.fixture(scope="module")
def demo_module():
    from conftest import DEMO, site_data
    return site_data(DEMO)


def job_nodes(cluster, name: str) -> list[str]:
    text = cluster["out"].get(f"{name}.nodes")
    assert text, f"{name}: no nodes recorded\n{cluster['context']}"
    return expand(text.strip())


def test_a_16_node_segment_job_lands_in_one_block(cluster):
    nodes = job_nodes(cluster, "segment16")
    assert len(nodes) == 16 and len({block_of(n) for n in nodes}) == 1, nodes


def test_a_32_node_job_of_16_node_segments_is_16_in_each_block(cluster):
    nodes = job_nodes(cluster, "segment32")
    assert sorted(block_of(n) for n in nodes) == ["nvl1"] * 16 + ["nvl2"] * 16, nodes
    # each tray's IMEX node list at the daemon's start: the job's 16 nodes in its own domain, not the other 16
    addresses = cluster["addresses"]
    job = cluster["out"]["segment32.id"].strip()
    for node in nodes:
        starts = [line.split()[2:] for line in out_calls(cluster, node) if line.split()[:2] == ["start", job]]
        assert starts == [[addresses[n] for n in nodes if block_of(n) == block_of(node)]], (node, starts)


def test_exclusive_topo_keeps_the_rest_of_its_block_from_other_jobs(cluster):
    whole = job_nodes(cluster, "exclusive")
    other = job_nodes(cluster, "beside")
    assert len(whole) == 2 and len(other) == 16
    # the 16-node job would fit best in the block with 16 free trays: it lands in the other one
    assert {block_of(n) for n in other} == {"nvl1", "nvl2"} - {block_of(whole[0])}, (whole, other)
    # while it ran, slurmctld showed the other 16 trays of its block as blocked (sinfo's "block")
    states = dict(line.split() for line in cluster["out"]["exclusive.states"].splitlines())
    mine = block_of(whole[0])
    assert {n for n, state in states.items() if state == "block"} == set(expand(BLOCKS[mine])) - set(whole), states


def test_a_segment_still_starts_in_a_block_with_one_tray_drained(cluster):
    nodes = job_nodes(cluster, "drained")
    drained = cluster["out"]["drained.node"].strip()
    assert block_of(drained) == "nvl1" and drained not in nodes
    assert len(nodes) == 16 and {block_of(n) for n in nodes} == {"nvl1"}, nodes


def test_two_jobs_in_one_block_each_get_exactly_their_own_nodes_on_every_node(cluster):
    out, addresses = cluster["out"], cluster["addresses"]
    jobs = {name: (out[f"{name}.id"].strip(), job_nodes(cluster, name)) for name in ("first", "second", "holder")}
    first, second = jobs["first"][1], jobs["second"][1]
    assert len(first) == len(second) == 8 and not set(first) & set(second)
    assert {block_of(n) for n in first + second} == {"nvl1"}, jobs
    assert "RUNNING" in out["both.squeue"] and out["both.squeue"].count("RUNNING") == 3, out["both.squeue"]
    # while both ran: every node's list, read on each node of the cluster, holds exactly its own job's addresses
    lists = dict(re.findall(r"^(node\d\d) ?(.*)$", out["lists.during"], flags=re.MULTILINE))
    assert sorted(lists) == sorted(addresses), out["lists.during"]
    for _, nodes in jobs.values():
        for node in nodes:
            assert lists[node].split() == [addresses[n] for n in nodes], (node, lists[node])
    for node in set(addresses) - {n for _, ns in jobs.values() for n in ns}:
        assert lists[node].split() == [], (node, lists[node])
    # after them: every list empty; the stand-in started each job's daemon once per node and stopped it once
    assert re.findall(r"^node\d\d (.+)$", out["lists.after"], flags=re.MULTILINE) == [], out["lists.after"]
    for _, (job, nodes) in jobs.items():
        for node in nodes:
            calls = [line.split()[0] for line in out_calls(cluster, node) if line.split()[1] == job]
            assert calls == ["start", "stop"], (node, out_calls(cluster, node))
    # slurmctld gave the two jobs of one block distinct IMEX channels
    channels = dict((job, int(channel)) for channel, job in
                    re.findall(r"allocating channel (\d+) to JobId=(\d+)", cluster["out"]["ctld_log"]))
    assert jobs["first"][0] in channels and jobs["second"][0] in channels, cluster["out"]["ctld_log"][-3000:]
    assert channels[jobs["first"][0]] != channels[jobs["second"][0]]


def out_calls(cluster, node: str) -> list[str]:
    return cluster["out"]["calls"][node].splitlines()


def test_a_failing_prolog_drains_its_node(cluster):
    state = cluster["out"]["failing.node_state"]
    assert re.search(r"State=\S*DRAIN", state) and "Reason=Prolog error" in state, state
    assert "nvidia-imex failed to start" in cluster["out"]["imex_log"], cluster["out"]["imex_log"]
