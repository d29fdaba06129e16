"""A VM as execution host for the others (issue 14): on the demo's three VMs, a variant of the demo site with
`provisioning.execution: {hosts: [ctl01]}` and `repositories.python` at the test bed's Python index
(infra/vm/python_index.py: the execution host's pins as wheels for the guests' Python, on this machine's loopback).

The test bed's VMs get their management addresses from the base phase (a site's hosts have theirs from DHCP at boot),
so the demo's base phase runs from the controller first. Then `gigafactory up --phase base,rdma` of the variant: the
base phase runs on ctl01 first, from the controller (role execution_host: the virtualenv from the test bed's index,
the project at the controller's revision), then on node01 and node02 from ctl01; the rdma phase runs on all three from
ctl01. Each shard on ctl01 is `/opt/gigafactory/venv/bin/ansible-runner worker` over SSH, fed by transmit and read
back by process into the same run directory, hosts.json and summary. ctl01 reaches node01 and node02 at their
management addresses (192.168.100.0/24) with the host keys this machine pinned for them and the key this machine uses,
streamed in the job into an ssh-agent there (ansible-runner's ssh_key). Proof that the tasks ran there: the shard's
`command` artifact (the worker's directory and project on ctl01), and node01's sshd, which logged the connections from
ctl01's management address.

The demo's VMs are reused when they run (as test_rollout_vm.py does; GIGAFACTORY_DEMO_STATE names another checkout's
state directory, whose VMs are then required); else booted from their images as `gigafactory demo` does (demo_boot)
and stopped at the end. ctl01's image was built for a site where it executes nothing, so it takes the install part too
(gigafactory_part: all). Then the rdma phase alone, run from the controller and from ctl01, for the wall time of each
(printed, not asserted). Serialized through /tmp/gigafactory-vm.lock: slow.
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

from conftest import DEMO, ROOT
from vmcli import LOCK, gigafactory, on_vm

pytestmark = [
    pytest.mark.vm, pytest.mark.root, pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("qemu-system-x86_64") or not shutil.which("flock"),
                       reason="needs root, qemu and flock"),
]

# the demo's VMs as `gigafactory demo` of this checkout keeps them; GIGAFACTORY_DEMO_STATE: another checkout's
STATE = Path(os.environ.get("GIGAFACTORY_DEMO_STATE") or ROOT / ".cache" / "demo" / "demo")
# beside the demo's site file: its group_vars apply, and it is in the project archive the execution host unpacks
VARIANT = DEMO.parent / "execution-test.yml"


def timed(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    result = gigafactory(*args)
    return result, time.monotonic() - start


def run_dir_of(result: subprocess.CompletedProcess) -> Path:
    found = re.findall(r"run directory: (\S+)", result.stdout + result.stderr)
    assert found, result.stdout[-2000:]
    path = Path(found[-1])
    return path if path.is_absolute() else ROOT / path


def on(host: str, *command: str) -> str:
    return on_vm(STATE, host, *command)


def shard_events(run: Path, ident: str) -> list[dict]:
    return [json.loads(line) for line in (run / "ansible" / "artifacts" / ident / "job_events.jsonl").read_text().splitlines()]


def ok_hosts(events: list[dict]) -> set[str]:
    return {e["event_data"]["host"] for e in events if e.get("event") == "runner_on_ok"}


def test_ctl01_runs_the_phases_of_node01_and_node02(tmp_path):
    from infra.vm.demo import demo_boot
    from infra.plan import build_plan
    from infra.runner.execution import execution_packages
    from infra.site import load_site
    from infra.vm.launcher import Launcher
    from infra.vm.python_index import ensure_python_index

    lock = os.open(LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)
    brought_up = False
    try:
        states = Launcher(STATE).status()
        if not (states and all(s.alive for s in states)):
            assert "GIGAFACTORY_DEMO_STATE" not in os.environ, f"no demo VMs running in {STATE}"
            brought_up = True
            demo_boot(DEMO)
        data = yaml.safe_load(DEMO.read_text())
        data["provisioning"]["execution"] = {"hosts": ["ctl01"]}
        data["repositories"]["python"] = ensure_python_index(execution_packages(data["provisioning"].get("strategy", "linear")))
        VARIANT.write_text(yaml.safe_dump(data, sort_keys=False))
        plan = build_plan(load_site(str(VARIANT)), str(VARIANT))
        address = {h: plan.hosts[h].address("management") for h in ("ctl01", "node01", "node02")}
        conn = STATE / "connection.yml"
        first_conn = tmp_path / "connection.yml"
        hosts = yaml.safe_load(conn.read_text())
        hosts["all"]["hosts"]["ctl01"]["gigafactory_part"] = "all"
        first_conn.write_text(yaml.safe_dump(hosts))
        # The test bed's VMs get their management addresses from the base phase (a site's hosts from DHCP at boot):
        # the base phase from here first, as `gigafactory demo` runs it (no change on provisioned VMs).
        prepared, _ = timed("up", str(DEMO), "--phase", "base", "-i", str(conn))
        assert prepared.returncode == 0, prepared.stdout[-3000:]
        since = on("node01", "date", "+%Y-%m-%d %H:%M:%S")

        result, _ = timed("up", str(VARIANT), "--phase", "base,rdma", "-i", str(first_conn))
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        run = run_dir_of(result)
        summary = json.loads((run / "summary.json").read_text())
        assert {p["name"]: p["failed"] for p in summary["phases"]} == {"base": [], "rdma": []}, summary["phases"]
        assert summary["hosts"]["ok"] == 3 and summary["exit_code"] == 0, summary
        base = next(p for p in summary["phases"] if p["name"] == "base")
        # the execution host alone first (Phase.first), then the canary and the rest (the site's batch 1, 100%)
        assert base["waves"] == [["ctl01"], ["node01"], ["node02"]], base
        artifacts = sorted(p.name for p in (run / "ansible" / "artifacts").iterdir())
        assert artifacts == ["01-base-w1-controller", "01-base-w2-ctl01", "01-base-w3-ctl01", "03-rdma-w1-ctl01"], artifacts
        # ctl01's base phase ran here; node01's and node02's, and the rdma phase of all three, on ctl01
        assert ok_hosts(shard_events(run, "01-base-w1-controller")) == {"ctl01"}
        assert ok_hosts(shard_events(run, "01-base-w2-ctl01")) == {"node01"}
        assert ok_hosts(shard_events(run, "01-base-w3-ctl01")) == {"node02"}
        assert ok_hosts(shard_events(run, "03-rdma-w1-ctl01")) == {"ctl01", "node01", "node02"}
        for ident in ("01-base-w2-ctl01", "01-base-w3-ctl01", "03-rdma-w1-ctl01"):
            shard = run / "ansible" / "artifacts" / ident
            assert (shard / "status").read_text().strip() == "successful" and (shard / "rc").read_text().strip() == "0"
            command = json.loads((shard / "command").read_text())
            # the worker's directory and project there: paths of ctl01, none of them on this machine
            assert command["cwd"].startswith("/opt/gigafactory/project/"), command["cwd"]
            assert f"/var/tmp/gigafactory/demo/{ident}/" in " ".join(command["command"]), command["command"]
        # node01 saw the connections come from ctl01's management address (this machine's come through QEMU's NAT)
        log = on("node01", "journalctl", "--no-pager", "-o", "cat", "--since", since, "-t", "sshd-session", "-t", "sshd")
        assert re.search(rf"Accepted publickey for gigafactory from {re.escape(address['ctl01'])} ", log), log[-2000:]
        # the key this machine uses reached no file of the run directory
        secret = Path(yaml.safe_load(conn.read_text())["all"]["hosts"]["node01"]["ansible_ssh_private_key_file"]).read_text()
        body = secret.strip().splitlines()[1]
        assert not [p for p in run.rglob("*") if p.is_file() and body in p.read_text(errors="replace")]
        # no key file on ctl01 either: the worker's directory is gone (--delete), the agent's FIFO with it
        assert on("ctl01", "sh", "-c", "ls /var/tmp/gigafactory/demo 2>/dev/null | grep -v '^facts$' || true") == ""

        # the rdma phase alone, from the controller and from ctl01: the wall time of each (reported, not asserted)
        here, here_s = timed("up", str(DEMO), "--phase", "rdma", "-i", str(conn))
        assert here.returncode == 0, here.stdout[-3000:]
        there, there_s = timed("up", str(VARIANT), "--phase", "rdma", "-i", str(conn))
        assert there.returncode == 0, there.stdout[-3000:]
        for name, res, wall in (("controller", here, here_s), ("ctl01", there, there_s)):
            s = json.loads((run_dir_of(res) / "summary.json").read_text())
            phase = s["phases"][0]
            print(f"FIGURE rdma phase executed by {name}: gigafactory up {wall:.1f} s wall, summary {s['wall_seconds']:.1f} s, "
                  f"ansible {phase['ansible_seconds']:.1f} s, {phase['host_tasks']} host-tasks, changed {phase['changed']}")
    finally:
        VARIANT.unlink(missing_ok=True)
        if brought_up:
            Launcher(STATE).down()
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)
