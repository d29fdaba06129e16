"""What the slow VM tests share: the CLI run as a user runs it, and a root command on a VM of a launcher's run."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

LOCK = "/tmp/gigafactory-vm.lock"      # every VM user on this machine takes it (tests/test_molecule_vm.py too)


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
