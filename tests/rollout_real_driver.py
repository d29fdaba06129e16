"""Run by tests/test_rollout_real.py inside the real Slurm's namespaces: the rollout engine against slurmctld and two
slurmd, every scontrol / squeue call going through ansible-runner's ad-hoc command module (``AnsibleCommand``, the
production path) on ``ctl01`` (connection local; ``scontrol`` and ``squeue`` on PATH exec the chroot's binaries).

Usage: rollout_real_driver.py CHROOT WORKDIR; writes WORKDIR/result.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from infra.orchestrate.rollout import AnsibleCommand, HostImpact, Rollout, Slurm  # noqa: E402
from infra.orchestrate.up import _reconfigure  # noqa: E402

NODES = ["node01", "node02"]
DOMAINS = {"partition batch": NODES}


def main(chroot: str, workdir: Path) -> None:
    t0 = time.monotonic()
    log: list[dict] = []
    messages: list[str] = []

    def now() -> float:
        return round(time.monotonic() - t0, 1)

    def sh(*argv: str) -> str:
        return subprocess.run(["chroot", chroot, *argv], capture_output=True, text=True, timeout=60).stdout.strip()

    class Logged:
        def __init__(self, inner):
            self.inner = inner

        def run(self, argv):
            r = self.inner.run(argv)
            log.append({"t": now(), "argv": list(argv), "rc": r.rc, "stdout": r.stdout, "stderr": r.stderr})
            return r

    class Progress:
        waits: list[dict] = []

        def message(self, text: str) -> None:
            messages.append(f"{now()} {text}")
            print(text, flush=True)

        def waiting(self, waits) -> None:
            if waits:
                self.waits.append({"t": now(), "waits": {n: [w, round(s, 1)] for n, (w, s) in waits.items()}})

    progress = Progress()
    control = Logged(AnsibleCommand("ctl01", [workdir / "hosts"], workdir / "runner", ROOT / "ansible.cfg"))
    slurm = Slurm(control)

    def recorder(name: str, job: str, fail: set[str] = frozenset()):
        calls: list[dict] = []

        def run(hosts: list[str]) -> dict[str, str]:
            calls.append({"t": now(), "hosts": list(hosts), "job": sh("squeue", "-h", "-j", job, "-o", "%T|%N")})
            return {h: f"{name} failed on purpose" for h in hosts if h in fail}
        return run, calls

    def rollout(impacts: dict[str, str], apply, health, **kw) -> dict:
        r = Rollout(impacts={h: HostImpact(h, c, ("slurm.node_types.vm-compute.memory_gb: 1 -> 2",))
                             for h, c in impacts.items()},
                    domains=DOMAINS, schedulers=dict.fromkeys(NODES, slurm), apply=apply, health=health,
                    reboot=lambda hosts: {h: "no plain reboot here" for h in hosts}, max_unavailable_percent=50,
                    progress=progress, poll_s=3, **kw).run()
        return {h: {"status": n.status, "message": n.message, "waited_s": n.waited_s, "steps": n.steps}
                for h, n in r.nodes.items()} | {"stopped": r.stopped}

    out: dict = {}
    job = sh("sbatch", "--parsable", "-w", "node01", "-p", "batch", "-c", "1", "--mem=100M", "-J", "long",
             "--wrap", "sleep 75")
    for _ in range(60):
        if sh("squeue", "-h", "-j", job, "-o", "%T") == "RUNNING":
            break
        time.sleep(1)
    out["job"] = job
    out["job_state_before"] = sh("squeue", "-h", "-j", job, "-o", "%T|%N")

    # 1. drain class on both nodes, at most one out (50% of two)
    apply, applied = recorder("apply", job)
    health, checked = recorder("health", job)
    out["drain"] = rollout({"node01": "drain", "node02": "drain"}, apply, health)
    out["drain_applied"], out["drain_checked"] = applied, checked
    out["drain_log_end"] = len(log)
    for _ in range(30):                     # slurmdbd records the end a moment after slurmctld
        out["sacct"] = sh("sacct", "-n", "-X", "-P", "-j", job, "-o", "JobID,State,ExitCode,NodeList")
        if "RUNNING" not in out["sacct"] and out["sacct"]:
            break
        time.sleep(1)
    out["nodes_after_drain"] = sh("scontrol", "show", "node", "node01,node02", "--oneliner")

    # 2. a failing update on node02: it stays drained with the reason
    apply, _ = recorder("apply", job, fail={"node02"})
    health, _ = recorder("health", job)
    out["failing"] = rollout({"node02": "drain"}, apply, health)
    out["node02_after_failure"] = sh("scontrol", "show", "node", "node02", "--oneliner")
    sh("scontrol", "update", "nodename=node02", "state=resume")

    # 3. live class: a new MaxTime for the partition, then scontrol reconfigure once, no node drained
    conf = Path(chroot) / "etc" / "slurm" / "slurm.conf"
    conf.write_text(conf.read_text().replace("MaxTime=01:00:00", "MaxTime=02:00:00"))
    before = len(log)
    out["reconfigure"] = _reconfigure(slurm, progress)
    out["live_commands"] = [e["argv"] for e in log[before:]]
    time.sleep(2)
    out["partition_after_live"] = sh("scontrol", "show", "partition", "batch", "--oneliner")
    out["nodes_after_live"] = sh("scontrol", "show", "node", "node01,node02", "--oneliner")

    # 4. reboot class on node01 while a short job runs there: drained, updated once idle, scontrol reboot ASAP
    job2 = sh("sbatch", "--parsable", "-w", "node01", "-p", "batch", "-c", "1", "--mem=100M", "-J", "short",
              "--wrap", "sleep 15")
    time.sleep(3)
    before = len(log)
    apply, applied = recorder("apply", job2)
    health, checked = recorder("health", job2)
    out["reboot"] = rollout({"node01": "reboot"}, apply, health, reboot_timeout_s=30)
    out["reboot_applied"], out["reboot_checked"] = applied, checked
    out["reboot_log"] = log[before:]
    out["sacct_short"] = sh("sacct", "-n", "-X", "-P", "-j", job2, "-o", "JobID,State")
    out["node01_after_reboot"] = sh("scontrol", "show", "node", "node01", "--oneliner")

    out["log"], out["messages"], out["waits"] = log, messages, Progress.waits
    out["ansible_calls"] = control.inner.calls
    (workdir / "result.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
