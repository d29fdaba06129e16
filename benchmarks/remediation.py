"""Benchmark: the remediation service's drain speed from the fault, 10% of N nodes failing at once, on real Slurm 24.11.

    sudo /work/main/.venv/bin/python benchmarks/remediation.py [--nodes 100 1000] [--interval-s S]

slurmctld, slurmdbd and MariaDB of Debian 13 in a chroot, in private namespaces (tests/realslurm.py), and one real
slurmd per node (``slurmd -N <node>``, each its own loopback address and port: realslurm.separate_slurmd, SchedMD's
FAQ "Can Slurm emulate a larger cluster?"): the demo's compute line as ``node[0001-N]``, ``SlurmdTimeout`` the site's,
every node IDLE and registered before the fault. Debian 13's ``slurm-wlm-emulator`` (front-end mode, one slurmd for
every node) is not needed: 1,000 slurmd fit this machine (the figures print their memory and start time).
CPU is what this machine lacks at 1,000: every failing node's agent, 1,000 slurmd, slurmctld and the service share
its 2 cores, so there the agents run late (docs/healing.md).

At the fault, every failing node runs a requeueable job (``sbatch --requeue``, a sleep) and gets an XID 79 line in its
stand-in kernel log; its signal agent (node_health's ``gigafactory-node-health --signals``, the real one, through the
chroot's scontrol) runs as its systemd timer would: once, at a phase drawn uniformly in [0, interval) after the fault
(a fleet's timers are not aligned), interval node_health's ``node_health_signals_interval_s``. Only the failing
nodes' agents run (the others' runs, every interval on every node, would report nothing). The service runs as on a
controller: its loop, ``interval_s`` 5 (the contract's default); the breaker's share raised to 0.2 for the run (the
default 0.05 would, correctly, stop at 5%). A node's drain time is slurmctld's ``reason_changed_at`` for its drain
(whole seconds). Figures: median, 90th percentile and max of fault -> drain (the issue's target: 90% within 30 s)
and of the agent's report -> drain; the jobs requeued and restarted on healthy nodes (slurmctld holds a requeued
job two minutes, brought forward here as in tests/test_remediation_real.py). Prints figures; asserts nothing about
time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
PROGRAM = ROOT / "playbooks/roles/remediation/files/gigafactory-remediate"
NODE_HEALTH_DEFAULTS = ROOT / "playbooks/roles/node_health/defaults/main.yml"
TARGET_S, TARGET_SHARE = 30, 0.9
SHARE_FAILING = 0.1


def agent_interval_s() -> int:
    """node_health's timer: ``node_health_signals_interval_s`` from the role's defaults."""
    import yaml
    return int(yaml.safe_load(NODE_HEALTH_DEFAULTS.read_text())["node_health_signals_interval_s"])


def node_names(nodes: int) -> list[str]:
    return [f"node{i:04d}" for i in range(1, nodes + 1)]


def failing_nodes(nodes: int, failing: int) -> list[str]:
    """``failing`` nodes spread evenly over the fleet."""
    names = node_names(nodes)
    return [names[i * nodes // failing] for i in range(failing)]


def cluster_files(nodes: int, failing: list[str]) -> tuple[dict[str, str], object, dict[str, str]]:
    """The demo's rendered Slurm files with its two compute nodes replaced by ``node[0001-N]``, one slurmd each on
    its own loopback address (127.1.0.0/16); the ``failing`` nodes weigh least (Slurm fills them first, so the jobs
    land there unpinned and a requeued one may run anywhere); ``RebootProgram`` a no-op (the drain is measured)."""
    from conftest import DEMO
    from realslurm import separate_slurmd
    from test_metering_real import _for_a_chroot

    from infra.plan import build_plan
    from infra.render.files import render_file, slurm_files
    from infra.site import load_site

    plan = build_plan(load_site(DEMO))
    files = {f"/etc/{rel}": content for rel, content in slurm_files(plan).items()}
    hostlist = f"node[0001-{nodes:04d}]"
    addresses = {n: f"127.1.{i // 250}.{i % 250 + 1}" for i, n in enumerate(node_names(nodes))}
    for name, text in files.items():
        files[name] = text.replace("node[01-02]", hostlist)
    conf = separate_slurmd(_for_a_chroot(files["/etc/slurm/slurm.conf"]), hostlist, addresses)
    assert "\nRebootProgram=/usr/sbin/reboot\n" in conf, conf
    for name in addresses:
        if name not in failing:
            conf = conf.replace(f"\nNodeName={name} ", f"\nNodeName={name} Weight=10 ")
    files["/etc/slurm/slurm.conf"] = conf.replace("RebootProgram=/usr/sbin/reboot", "RebootProgram=/bin/true")
    files["/etc/slurm/cgroup.conf"] = "CgroupPlugin=disabled\n"
    files["/etc/hosts"] = render_file(plan, "hosts")
    return files, plan, addresses


def config(out: Path) -> dict:
    """The contract's remediation.json with infra/site/healing.py's rules; the breaker's share raised for the run."""
    from test_remediation_service import config_for
    return config_for(out, breaker={"share": 0.2, "window_s": 600, "min_nodes": 3})


def slurmd_memory_kb(root: Path) -> tuple[int, int]:
    """How many slurmd run in ``root`` (this cluster's chroot, not another test's) and their resident memory, summed."""
    count = rss = 0
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or (proc / "comm").read_text().strip() != "slurmd" \
                    or Path(f"/proc/{proc.name}/root").resolve() != root.resolve():
                continue
            rss += int(next(line.split()[1] for line in (proc / "status").read_text().splitlines()
                            if line.startswith("VmRSS:")))
            count += 1
        except (OSError, StopIteration, ValueError):
            continue
    return count, rss


def used_mb() -> int:
    """The machine's used memory as ``free`` counts it (total - available), in MiB."""
    info = {line.split(":")[0]: int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()}
    return (info["MemTotal"] - info["MemAvailable"]) // 1024


def recorded(out: Path) -> set[str]:
    """The nodes the service's events name so far."""
    events = out / "state/events.jsonl"
    return {json.loads(line)["node"] for line in events.read_text().splitlines()} if events.exists() else set()


def agent_cpu_s(cluster, node: str, runs: int = 5) -> float:
    """CPU seconds (user + system, the agent and its scontrol) of one agent run on a quiet node, the median of ``runs``."""
    times = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        cluster.run_agent(node)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(times)


def inside(root: Path, out: Path, nodes: int, failing_count: int, interval_s: int) -> None:
    """In the cluster's namespaces: the service's loop, the failing nodes' jobs, faults and agents, their drains."""
    try:
        _inside(root, out, nodes, failing_count, interval_s)
    except Exception:
        (out / "error.txt").write_text(traceback.format_exc()[-5000:])
        raise


def _inside(root: Path, out: Path, nodes: int, failing_count: int, interval_s: int) -> None:
    from test_remediation_real import Cluster

    ready = time.time()
    started = float((root / "var/log/slurm/started-slurmd").read_text())
    slurmd, rss_kb = slurmd_memory_kb(root)
    figures = {"nodes": nodes, "failing": failing_count, "interval_s": interval_s, "slurmd": slurmd,
               "slurmd_rss_mb": rss_kb // 1024, "used_mb": used_mb(), "slurmd_start_s": ready - started}
    c = Cluster(root, out)                          # the agents' stand-ins and the chroot's tools
    service_bin = out / "service-bin"               # the service's: each call it makes counted in calls.txt
    service_bin.mkdir()
    for tool in ("scontrol", "squeue"):
        (service_bin / tool).write_text(f'#!/bin/sh\necho "{tool} $1" >>{out}/calls.txt\nexec chroot {root} {tool} "$@"\n')
        (service_bin / tool).chmod(0o755)

    def read() -> dict:
        return {n["name"]: n for n in json.loads(c.slurm("scontrol", "show", "nodes", "--json"))["nodes"]}

    began = time.monotonic()
    first = read()
    figures["read_s"] = time.monotonic() - began
    figures["flags"] = sorted({"+".join(n["state"]) for n in first.values()})
    failing = failing_nodes(nodes, failing_count)
    for name in failing:
        c.agent(name)
    figures["agent_cpu_s"] = agent_cpu_s(c, failing[0])
    submitted = [c.slurm("sbatch", "--parsable", "-A", "lab", "-N", "1", "--exclusive", "--requeue", "-o", "/dev/null",
                         "--wrap", "sleep 3600").strip() for _ in failing]

    def running() -> dict[str, tuple[str, str]]:
        rows = (line.split() for line in c.slurm("squeue", "-h", "-o", "%i %T %N").splitlines())
        return {row[0]: (row[1], row[2] if len(row) > 2 else "") for row in rows}

    def on_the_failing_nodes() -> bool:
        queue = running()
        return sorted(queue[j][1] for j in submitted if queue.get(j, ("", ""))[0] == "RUNNING") == failing

    c.wait(on_the_failing_nodes, limit_s=300, said="a job running on every failing node")
    jobs = {node: job for job, (_, node) in running().items()}
    service = subprocess.Popen([sys.executable, str(PROGRAM), "--config", str(out / "remediation.json"), "--host", "ctl01",
                                "--bin-dir", str(service_bin)], stdout=subprocess.DEVNULL, stderr=open(out / "service.err", "w"))
    errors: list[str] = []
    reported: dict[str, float] = {}

    def timer(name: str, phase: float, fault: float) -> None:
        time.sleep(max(0.0, fault + phase - time.time()))
        try:
            c.run_agent(name)
            reported[name] = time.time()
        except (AssertionError, subprocess.SubprocessError, OSError) as error:
            errors.append(f"{name}: {error}"[:500])

    drained: dict[str, dict] = {}
    seen: dict[str, float] = {}                     # when this loop first saw each drain (a check on slurmctld's)
    try:
        time.sleep(6)                                   # one quiet round first
        quiet_until = time.monotonic() + 180            # and the machine quiet again after 1,000 slurmd's start
        while os.getloadavg()[0] > 2 * os.cpu_count() and time.monotonic() < quiet_until:
            time.sleep(2)
        rng = random.Random(25)
        fault = time.time()
        figures["load_at_fault"] = os.getloadavg()
        for name in failing:                            # the fault: an XID 79 in each failing node's kernel log
            with open(c.agent(name) / "kern.log", "a") as log:
                log.write(f"{fault:.6f} {name} kernel: NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen off the bus\n")
        timers = [threading.Thread(target=timer, args=(n, rng.uniform(0, interval_s), fault)) for n in failing]
        for t in timers:
            t.start()
        end = time.monotonic() + interval_s + 300
        while len(drained) < len(failing) and time.monotonic() < end:
            for name, node in read().items():
                if name in jobs and name not in drained and "DRAIN" in node["state"]:
                    drained[name] = node
                    seen[name] = time.time()
            time.sleep(1)
        for t in timers:
            t.join()
        c.wait(lambda: set(failing) <= recorded(out), limit_s=120, said="the service's round done (its events written)")
        now = read()
    finally:
        service.terminate()
        service.wait(timeout=30)
    # the requeued jobs: pending (slurmctld holds them two minutes), brought forward, running again elsewhere
    queue = running()
    requeued = [j for j in jobs.values() if queue.get(j, ("", ""))[0] == "PENDING"]
    for job in requeued:
        c.slurm("scontrol", "update", f"JobId={job}", "StartTime=now")
    if requeued:
        c.wait(lambda: all(running().get(j, ("", ""))[0] == "RUNNING" for j in requeued), limit_s=120,
               said="the requeued jobs running again")
    queue = running()
    reasons = sorted({d["reason"].split(":")[1].split(" xid")[0].strip() for d in drained.values()})
    calls = [e for e in map(json.loads, (out / "state/events.jsonl").read_text().splitlines()) if e["action"] in reasons]
    at = {n: d["reason_changed_at"]["number"] for n, d in drained.items()}
    figures.update({
        "drained": len(drained), "fault_to_drain": sorted(max(0.0, t - fault) for t in at.values()),
        "report_to_drain": sorted(max(0.0, at[n] - reported[n]) for n in at if n in reported),
        "reported": len(reported), "agent_errors": errors[:5], "drain_events": len(calls),
        "reported_after_fault": sorted(t - fault for t in reported.values()),
        "seen_after_fault": sorted(t - fault for t in seen.values()), "load_at_end": os.getloadavg(),
        "events": [{k: e.get(k) for k in ("at", "node", "action", "to")} for e in calls][:20],
        "reasons": reasons,
        "updates": (out / "calls.txt").read_text().count("scontrol update"),
        "other_drained": sum(1 for n, v in now.items() if "DRAIN" in v["state"] and n not in jobs),
        "jobs": len(jobs), "requeued": len(requeued),
        "restarted_elsewhere": sum(1 for j in requeued if queue.get(j, ("", ""))[0] == "RUNNING"
                                   and queue[j][1] not in jobs),
        "service_err": (out / "service.err").read_text()[-2000:]})
    (out / "figures.json").write_text(json.dumps(figures))


def measure(nodes: int, failing: int | None = None, interval_s: int | None = None) -> dict:
    from realslurm import release_overlays

    try:
        return _measure(nodes, failing or round(nodes * SHARE_FAILING), interval_s or agent_interval_s())
    finally:
        release_overlays()                          # the chroot's throw-away overlay (a test's fixture does it there)


def _measure(nodes: int, failing: int, interval_s: int) -> dict:
    from realslurm import daemon_logs, run_in_slurm, slurm_chroot

    files, plan, addresses = cluster_files(nodes, failing_nodes(nodes, failing))
    root = slurm_chroot(slurmd=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        (out / "remediation.json").write_text(json.dumps(config(out)))
        result = run_in_slurm(root, files, controller=plan.slurm.controllers[0], dbd=plan.slurm.accounting,
                              cluster=plan.slurm.cluster, slurmd=list(addresses.items()), slurmd_ready_s=600,
                              commands=["sacctmgr -i add account lab", "sacctmgr -i add user root account=lab"],
                              timeout=2400, host_timeout=1200,
                              host_commands=[f"{sys.executable} {__file__} --inside {root} {out} {nodes} {failing} {interval_s}"])
        figures = out / "figures.json"
        if not figures.exists():
            error = out / "error.txt"
            raise SystemExit((error.read_text() if error.exists() else result.stdout[-3000:] + result.stderr[-3000:])
                             + daemon_logs(root)[-5000:])
        return json.loads(figures.read_text())


def percentile(values: list[float], share: float) -> float:
    return values[min(len(values) - 1, max(0, round(share * len(values)) - 1))]


def summary(values: list[float], failing: int) -> str:
    """Median, 90th percentile and max of ``values``, and the share of the ``failing`` nodes within the target."""
    if not values:
        return "none"
    within = sum(1 for v in values if v <= TARGET_S) / max(1, failing)
    return (f"median {statistics.median(values):.1f}, p90 {percentile(values, 0.9):.1f}, max {values[-1]:.1f}; "
            f"{within:.0%} within {TARGET_S} s")


def main() -> int:
    if len(sys.argv) == 7 and sys.argv[1] == "--inside":
        inside(Path(sys.argv[2]), Path(sys.argv[3]), *map(int, sys.argv[4:]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--interval-s", type=int, help="the agents' timer (default: node_health's)")
    args = parser.parse_args()
    if not shutil.which("unshare"):
        raise SystemExit("needs unshare (and root, debootstrap for the chroot)")
    for nodes in args.nodes:
        f = measure(nodes, interval_s=args.interval_s)
        print(f"{nodes} nodes, {f['slurmd']} slurmd ({'/'.join(f['flags'])}): started and idle in {f['slurmd_start_s']:.0f} s, "
              f"their memory {f['slurmd_rss_mb']} MiB resident, the machine's used {f['used_mb']} MiB; one read of every "
              f"node {f['read_s']:.2f} s; one agent run {f['agent_cpu_s']:.2f} s CPU")
        print(f"  {f['failing']} failing at once (XID 79, agents' timer {f['interval_s']} s, {f['reported']} reported): "
              f"{f['drained']} drained ({'/'.join(f['reasons'])}; {f['drain_events']} drain events, {f['updates']} "
              f"scontrol update by the service; other nodes drained: {f['other_drained']})")
        print(f"  seconds (±1: slurmctld keeps whole seconds) fault -> drain: {summary(f['fault_to_drain'], f['failing'])} "
              f"(target {TARGET_SHARE:.0%}); report -> drain: {summary(f['report_to_drain'], f['failing'])}")
        print(f"  jobs on the failing nodes: {f['jobs']}, requeued {f['requeued']}, running again on healthy nodes "
              f"{f['restarted_elsewhere']}")
        for what in ("agent_errors", "service_err"):
            if f[what]:
                print(f"  {what}: {f[what]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
