"""Day two on the demo's three VMs (issue 16's proof on VMs): `gigafactory up SITE --against OLD` rolls changes out
by their impact class on a running Slurm cluster, through the production path (the CLI, ansible-runner, SSH, sudo).

The demo is brought up as `gigafactory demo` does (each host from its node type's image, the configure part), unless
its VMs are running already; a first `up` of the site as the test has it makes sure they are as it says. Every site
version the test applies runs with `provisioning.strategy: mitogen_linear` (a setting that is no change, class
none): under TCG it makes each pass several times shorter. Then:
- drain: a 4-minute job runs on node01; the compute node type's cores change (the nodes' Slurm definition); node02 is
  updated first while the job runs, node01 once it has ended; `sacct` shows the job COMPLETED; both end idle;
- live: the partition's MaxTime changes; `scontrol show partition` shows it and no node was drained;
- reboot: the compute node type's huge pages change; each node is drained, updated, rebooted by Slurm (`scontrol
  reboot ASAP nextstate=DOWN`: the VM really restarts, its boot id changes), passes the health gate and is resumed.
  On a node booted from its image the huge pages themselves (a kernel argument, the install part) come with the
  node type's next image; the test bed boots its kernel with QEMU's own command line, so what this proves is the
  sequence, not the kernel argument.

Serialized with every other VM user through /tmp/gigafactory-vm.lock; about 25 minutes under TCG: slow. The VMs
are left running (`gigafactory demo --down` stops them).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from vmcli import LOCK, gigafactory, on_vm

pytestmark = [
    pytest.mark.vm, pytest.mark.root, pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("qemu-system-x86_64") or not shutil.which("flock"),
                       reason="needs root, qemu and flock"),
]

DEMO_DIR = ROOT / "inventories" / "demo"
STATE = ROOT / ".cache" / "demo" / "demo"


def on(host: str, *command: str) -> str:
    return on_vm(STATE, host, *command)


def site_version(tmp: Path, name: str, change) -> Path:
    """A copy of the demo's inventory folder whose site.yml has ``change`` applied (the same site name: the same VMs),
    run with Mitogen's strategy."""
    folder = tmp / name
    shutil.copytree(DEMO_DIR, folder)
    data = yaml.safe_load((folder / "site.yml").read_text())
    data.setdefault("provisioning", {})["strategy"] = "mitogen_linear"
    change(data)
    (folder / "site.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder / "site.yml"


def rollout_of(result: subprocess.CompletedProcess) -> dict:
    """The rollout's record in the run's summary.json (the run directory `up` names last)."""
    found = re.findall(r"run directory: (\S+)", result.stdout + result.stderr)
    assert found, result.stdout[-2000:]
    path = Path(found[-1])
    return json.loads(((path if path.is_absolute() else ROOT / path) / "summary.json").read_text())["rollout"] or {}


def updated_order(out: str) -> list[str]:
    return [h for line in re.findall(r"rollout: updating (.*)", out) for h in line.split(", ")]


def node_states() -> dict[str, str]:
    return dict(line.split() for line in on("ctl01", "sinfo", "--noheader", "--Node", "--format=%N %t").splitlines())


def test_drain_live_and_reboot_changes_roll_out_on_the_demos_vms(tmp_path):
    lock = os.open(LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        from infra.vm.launcher import Launcher
        states = Launcher(STATE).status()
        if not (states and all(s.alive for s in states)):
            first = gigafactory("demo", str(DEMO_DIR / "site.yml"))
            assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        conn = str(STATE / "connection.yml")
        old = site_version(tmp_path, "old", lambda d: None)
        result = gigafactory("up", str(old), "-i", conn)
        assert result.returncode == 0, result.stdout[-3000:]

        # --- drain: node02 first while node01's job runs; node01 once it has ended -------------------------------
        job = on("ctl01", "sbatch", "--parsable", "--account=acme-ai", "-w", "node01", "-p", "batch", "-c", "1",
                 "--mem=100M", "-J", "long", "--wrap", "sleep 240")
        deadline = time.monotonic() + 120
        while on("ctl01", "squeue", "-h", "-j", job, "-o", "%T") != "RUNNING":
            assert time.monotonic() < deadline, "the job did not start"
            time.sleep(3)

        def fewer_cores(d):
            d["node_types"]["vm-compute"]["cpu"]["cores_per_socket"] = 1
        drain = site_version(tmp_path, "drain", fewer_cores)
        result = gigafactory("up", str(drain), "--against", str(old), "-i", conn)
        assert result.returncode == 0, result.stdout[-3000:]
        assert updated_order(result.stdout + result.stderr) == ["node02", "node01"], result.stdout[-3000:]
        rolled = rollout_of(result)
        assert rolled["node01"]["waited_s"] > rolled["node02"]["waited_s"], rolled
        assert {h: n["status"] for h, n in rolled.items()} == {"node01": "ok", "node02": "ok"}, rolled
        state = on("ctl01", "sacct", "-n", "-X", "-P", "-j", job, "-o", "State")
        assert state == "COMPLETED", state
        assert set(node_states().values()) == {"idle"}, node_states()
        assert "CoresPerSocket=1" in on("ctl01", "scontrol", "show", "node", "node01")

        # --- live: the partition's MaxTime, nothing drained ------------------------------------------------------
        def longer(d):
            d["node_types"]["vm-compute"]["cpu"]["cores_per_socket"] = 1
            d["slurm"]["partitions"][0]["max_time"] = "02:00:00"
        live = site_version(tmp_path, "live", longer)
        result = gigafactory("up", str(live), "--against", str(drain), "-i", conn)
        assert result.returncode == 0, result.stdout[-3000:]
        assert not rollout_of(result), "a live-class change drained nodes"
        assert "MaxTime=02:00:00" in on("ctl01", "scontrol", "show", "partition", "batch")

        # --- reboot: drained, updated, rebooted by Slurm, health gate, resumed -----------------------------------
        boots = {h: on(h, "cat", "/proc/sys/kernel/random/boot_id") for h in ("node01", "node02")}

        def hugepages(d):
            longer(d)
            d["node_types"]["vm-compute"]["hugepages_2m"] = 16
        reboot = site_version(tmp_path, "reboot", hugepages)
        result = gigafactory("up", str(reboot), "--against", str(live), "-i", conn)
        assert result.returncode == 0, result.stdout[-3000:]
        rolled = rollout_of(result)
        for host in ("node01", "node02"):
            assert rolled[host]["status"] == "ok", rolled
            assert rolled[host]["steps"][:2] == ["drained", "idle"] and "reboot requested" in rolled[host]["steps"] \
                and rolled[host]["steps"][-1] == "resumed", rolled
            assert on(host, "cat", "/proc/sys/kernel/random/boot_id") != boots[host], f"{host} did not reboot"
        assert set(node_states().values()) == {"idle"}, node_states()
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)
