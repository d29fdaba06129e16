"""Choose the QEMU accelerator: KVM when it boots a guest, TCG otherwise."""

from __future__ import annotations

import os
from collections.abc import Callable
from enum import Enum
from pathlib import Path

ACCEL_ENV = "GIGAFACTORY_ACCEL"


class Accel(str, Enum):  # noqa: UP042  (StrEnum would change what str() of a member says)
    KVM = "kvm"
    TCG = "tcg"


def kvm_usable(device: Path = Path("/dev/kvm")) -> bool:
    """True when /dev/kvm exists and this process may open it read-write."""
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def choose_accel(
    cached: Accel | None, kvm_available: bool, probe_kvm: Callable[[], bool], foreign: bool = False
) -> tuple[Accel, bool]:
    """Return the accelerator and whether `probe_kvm` ran (and so left a KVM guest running).

    A run with a guest of a foreign architecture (an aarch64 image on this x86_64 machine) is TCG, KVM never probed
    nor taken from a cached verdict; else a cached verdict wins; else KVM is probed only when the device is usable,
    and a guest that does not come up under KVM sends the run to TCG.
    """
    if foreign:
        return Accel.TCG, False
    if cached is not None:
        return cached, False
    if not kvm_available:
        return Accel.TCG, False
    return (Accel.KVM if probe_kvm() else Accel.TCG), True


def boot_outcome(
    alive: bool,
    ssh_ready: bool,
    console_bytes: int,
    elapsed: float,
    timeout: float,
    console_timeout: float | None,
) -> str | None:
    """'ready', or why the guest is given up on ('exited', 'silent console', 'timeout'),
    or None to keep waiting. A console timeout catches a guest that hangs before printing."""
    if not alive:
        return "exited"
    if ssh_ready:
        return "ready"
    if console_timeout is not None and elapsed > console_timeout and console_bytes == 0:
        return "silent console"
    if elapsed > timeout:
        return "timeout"
    return None


def accel_override() -> Accel | None:
    """$GIGAFACTORY_ACCEL=kvm|tcg skips the probe."""
    value = os.environ.get(ACCEL_ENV, "").strip().lower()
    if not value:
        return None
    try:
        return Accel(value)
    except ValueError:
        raise ValueError(f"{ACCEL_ENV}={value!r}: use 'kvm' or 'tcg'") from None
