"""Boot two real VMs: SSH with checked host keys, and a ping over their private segment."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from infra.vm.launcher import Launcher
from infra.vm.spec import parse_specs

pytestmark = [pytest.mark.vm, pytest.mark.root]

TOOLS = ("qemu-system-x86_64", "qemu-img", "debootstrap", "mke2fs", "vde_switch", "ssh")


@pytest.fixture(scope="module")
def booted(tmp_path_factory: pytest.TempPathFactory):
    if os.geteuid() != 0:
        pytest.skip("debootstrap needs root")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"missing tools: {missing} (see .ci/apt-packages.txt)")
    specs = parse_specs([
        {"name": f"vmt-{x}", "nics": [{"segment": "fabric", "interface": "enp0s4",
                                      "address": f"10.77.9.{i + 1}/24"}]}
        for i, x in enumerate("ab")
    ])
    launcher = Launcher(tmp_path_factory.mktemp("run"))
    vms = launcher.up(specs)
    yield launcher, specs, vms
    launcher.down()


def _qemu_running(pid: int | None) -> bool:
    try:
        return b"qemu" in Path(f"/proc/{pid}/cmdline").read_bytes()  # empty for a zombie
    except OSError:
        return False


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def test_ssh_with_strict_host_key_checking_reaches_each_named_vm(booted) -> None:
    _, specs, vms = booted
    for spec, vm in zip(specs, vms, strict=True):
        result = _run(vm.ssh("hostname"))
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == spec.name


def test_a_wrong_host_key_is_refused(booted, tmp_path: Path) -> None:
    _, _, (a, b) = booted
    # Put b's host key under a's address: ssh must refuse a.
    lines = a.known_hosts.read_text().splitlines()
    b_key = next(line for line in lines if line.startswith(f"[127.0.0.1]:{b.ssh_port} "))
    forged = tmp_path / "known_hosts"
    forged.write_text(f"[127.0.0.1]:{a.ssh_port} " + b_key.split(" ", 1)[1] + "\n")
    argv = a.ssh("true")
    argv[argv.index(f"UserKnownHostsFile={a.known_hosts}")] = f"UserKnownHostsFile={forged}"
    result = _run(argv)
    assert result.returncode != 0
    assert "Host key verification failed" in result.stderr


def test_vms_ping_each_other_over_the_private_segment(booted) -> None:
    _, specs, vms = booted
    for spec, vm in zip(specs, vms, strict=True):
        nic = spec.nics[0]
        result = _run(vm.ssh("sudo", "ip", "addr", "add", str(nic.address), "dev", nic.interface))
        assert result.returncode == 0, result.stderr
        assert _run(vm.ssh("sudo", "ip", "link", "set", nic.interface, "up")).returncode == 0
    peer = str(specs[1].nics[0].address.ip)
    # -I binds to the private NIC, so nothing can leave through the user-mode NAT.
    result = _run(vms[0].ssh("ping", "-c", "3", "-W", "5", "-I", "enp0s4", peer))
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0% packet loss" in result.stdout


def test_status_and_down_from_a_second_launcher(booted) -> None:
    """Runs last in this module: it tears the run down as a separate process would."""
    launcher, specs, vms = booted
    other = Launcher(launcher.state_dir)
    statuses = other.status()
    assert {s.name: s.alive for s in statuses} == {s.name: True for s in specs}
    other.down()
    assert not any(_qemu_running(s.pid) for s in statuses)
    assert not vms[0].key_path.exists()
