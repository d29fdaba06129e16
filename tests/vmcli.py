"""What the slow VM tests share: the CLI run as a user runs it, and a root command on a VM of a launcher's run."""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import ROOT

LOCK = "/tmp/gigafactory-vm.lock"      # every VM user on this machine takes it (tests/test_molecule_vm.py too)
DEMO_SITE = ROOT / "inventories" / "demo" / "site.yml"
DEMO_STATE = ROOT / ".cache" / "demo" / "demo"        # `gigafactory demo`'s run of DEMO_SITE (vms.json, connection.yml)
# a test on the demo's VMs: slow, as root, with qemu and flock
DEMO_VM_MARKS = [
    pytest.mark.vm, pytest.mark.root, pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("qemu-system-x86_64") or not shutil.which("flock"),
                       reason="needs root, qemu and flock"),
]


def gigafactory(*args: str, timeout: float = 3600) -> subprocess.CompletedProcess:
    """``gigafactory ARGS`` from the checkout, its output's tail printed for the test's log."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-c", "import sys; from infra.cli import main; sys.exit(main())", *args]
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    print(f"$ gigafactory {' '.join(args)}: rc {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def on_vm(state: Path, host: str, *command: str) -> str:
    """``command`` as root (sudo) on ``host``, a VM of the run in ``state`` (its vms.json), with its pinned host key."""
    from infra.vm.ssh import ssh_argv
    vm = {v["name"]: v for v in json.loads((state / "vms.json").read_text())}[host]
    # ssh hands the remote shell one line: each argument quoted for it
    argv = ssh_argv(vm["ssh_host"], vm["ssh_port"], vm["user"], Path(vm["key_path"]), Path(vm["known_hosts"]),
                    [shlex.join(["sudo", "-n", *command])])
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{host}: {shlex.join(command)}: rc {result.returncode}: {result.stderr.strip()}"
    return result.stdout.strip()


def maybe_on_vm(state: Path, host: str, *command: str) -> str | None:
    """``on_vm``, or None while the host does not answer (it is rebooting)."""
    try:
        return on_vm(state, host, *command)
    except (AssertionError, subprocess.TimeoutExpired):
        return None


def wait_for(what: str, check, deadline_s: float, every_s: float = 3.0):
    """``check()``'s first true value; fails naming ``what`` once ``deadline_s`` passed (a bound, not a measure)."""
    deadline = time.monotonic() + deadline_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {deadline_s:.0f} s: {what}"
        time.sleep(every_s)


def demo_running(state: Path, site: Path) -> float | None:
    """The demo's VMs running: brought up as ``gigafactory demo`` does unless they are; the seconds that took, or
    None when they ran already. Call it holding LOCK."""
    from infra.vm.launcher import Launcher
    states = Launcher(state).status()
    if states and all(s.alive for s in states):
        return None
    started = time.monotonic()
    first = gigafactory("demo", str(site))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return time.monotonic() - started


@contextmanager
def vm_lock() -> Iterator[None]:
    """LOCK held: no other VM user on this machine runs meanwhile."""
    lock = os.open(LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)
