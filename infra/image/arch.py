"""The CPU architectures a node image is built for (a node type's ``cpu.arch``), and whether this machine can run
a foreign one's programs in a chroot: Debian's qemu-user-static, registered with binfmt_misc with the F flag (the
kernel opens the interpreter when it is registered, so it works inside any chroot and mount namespace)."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Architecture:
    """One architecture: its names (the kernel's ``uname -m``, Debian's), the kernel package of its images, the serial
    console its kernel writes to on QEMU's machine for it, and qemu-user-static's binfmt entry that runs it here."""
    cpu: str
    debian: str
    kernel_package: str
    console: str
    binfmt: str


ARCHITECTURES: dict[str, Architecture] = {a.cpu: a for a in (
    Architecture("x86_64", "amd64", "linux-image-amd64", "ttyS0", "qemu-x86_64"),
    Architecture("aarch64", "arm64", "linux-image-arm64", "ttyAMA0", "qemu-aarch64"),     # Grace; PL011 on QEMU's virt
)}
NATIVE = "x86_64"                       # the architecture whose keys and trees predate the others (left out of keys)
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
HOST_SETUP = ("apt-get install qemu-user-static binfmt-support; "
              "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; update-binfmts --enable {binfmt}")


class ForeignArchUnsupported(ValueError):
    """This machine cannot run a foreign architecture's programs in a chroot: the message names the missing piece."""


def architecture(cpu: str) -> Architecture:
    try:
        return ARCHITECTURES[cpu]
    except KeyError:
        raise ValueError(f"cpu.arch: {cpu!r} is not an architecture the image builder produces; "
                         f"known: {', '.join(ARCHITECTURES)}") from None


def host_cpu() -> str:
    """This machine's architecture, as ``uname -m`` names it."""
    return platform.machine()


def foreign_arch_problem(arch: Architecture, binfmt_dir: Path | None = None, host: str | None = None) -> str | None:
    """None when this machine (``host``: its ``uname -m``) runs ``arch``'s programs in a chroot, natively or through a
    binfmt_misc entry with the F flag whose interpreter exists; else what is missing, with the commands that set it up
    (docs/images.md)."""
    if arch.cpu == (host or host_cpu()):
        return None
    binfmt_dir = binfmt_dir or BINFMT_DIR
    entry = binfmt_dir / arch.binfmt
    setup = HOST_SETUP.format(binfmt=arch.binfmt)
    if not (binfmt_dir / "status").exists():
        return f"binfmt_misc is not mounted at {binfmt_dir}; as root: {setup}"
    if not entry.is_file():
        return f"no binfmt_misc entry {entry} runs {arch.cpu} programs (qemu-user-static); as root: {setup}"
    lines = entry.read_text().splitlines()
    fields = dict(line.split(" ", 1) for line in lines if " " in line)
    state = lines[0].strip() if lines else ""
    if state != "enabled":
        return f"the binfmt_misc entry {entry} is {state or 'empty'}; as root: update-binfmts --enable {arch.binfmt}"
    if "F" not in fields.get("flags:", ""):
        return (f"the binfmt_misc entry {entry} lacks the F (fix binary) flag, so its interpreter cannot be found "
                f"inside a chroot: register it as qemu-user-static does (update-binfmts --enable {arch.binfmt})")
    interpreter = fields.get("interpreter", "").strip()
    if not interpreter or not Path(interpreter).exists():
        return f"the binfmt_misc entry {entry} names {interpreter or 'no interpreter'}, which is not installed: {setup}"
    return None
