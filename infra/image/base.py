"""A Debian base tree for an image: debootstrap (cached per suite, packages and mirror), its copy, its kernel and
initrd, and the cache root every image and tree is kept under; the node image builder and the test bed both start here."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .guest_files import GUEST_FILES
from .mirror import host_debian_mirror

DEFAULT_SUITE = "trixie"
DEFAULT_VARIANT = "minbase"
DEFAULT_SIZE = "6G"
# The full kernel, not -cloud: later roles need rdma_rxe and other drivers.
DEFAULT_PACKAGES = [
    "linux-image-amd64",
    "initramfs-tools",
    "systemd-sysv",
    "udev",
    "kmod",
    "dbus",
    "openssh-server",
    "python3",
    "python3-apt",
    "sudo",
    "iproute2",
    "iputils-ping",
    "ca-certificates",
    "systemd-timesyncd",
    "procps",
    "less",
]
CACHE_ENV = "GIGAFACTORY_CACHE"


class ImageBuildError(RuntimeError):
    """A step of an image build failed."""


@dataclass(frozen=True)
class Image:
    """A built image: root disk plus the kernel and initrd for direct kernel boot."""

    disk: Path
    kernel: Path
    initrd: Path
    disk_format: str = "raw"
    arch: str = "x86_64"        # the CPU architecture it runs on (``cpu.arch``): which QEMU machine boots it


def cache_root() -> Path:
    """$GIGAFACTORY_CACHE, else ~/.cache/gigafactory."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "gigafactory"


def _run(argv: list[str], **kwargs) -> None:
    # The build's own output goes to stderr: stdout belongs to the caller (``python -m infra.cli.vm up``
    # prints its JSON there, which Molecule's create playbook parses).
    kwargs.setdefault("stdout", sys.stderr)
    try:
        subprocess.run(argv, check=True, **kwargs)
    except FileNotFoundError as exc:
        raise ImageBuildError(f"{argv[0]} not found: install it (see .ci/apt-packages.txt)") from exc
    except subprocess.CalledProcessError as exc:
        raise ImageBuildError(f"{' '.join(argv[:3])}... exited with {exc.returncode}") from exc


def debootstrap(
    target: Path,
    suite: str,
    packages: list[str],
    variant: str | None = None,
    mirror: str | None = None,
    components: tuple[str, ...] = ("main",),
    arch: str | None = None,
) -> None:
    """Bootstrap Debian `suite` into `target` from the host's mirror (needs root); ``arch``: a Debian architecture
    (``arm64``), whose programs the second stage runs through qemu-user-static (infra/image/arch.py)."""
    argv = ["debootstrap", "--components=" + ",".join(components)]
    if arch:
        argv.append(f"--arch={arch}")
    if variant:
        argv.append(f"--variant={variant}")
    if packages:
        argv.append("--include=" + ",".join(packages))
    argv += [suite, str(target), mirror or host_debian_mirror()]
    _run(argv, stdout=subprocess.DEVNULL)


CHROOTS_DIR = "chroots"                 # under the cache root: debootstrapped trees, never changed once complete
COMPLETE = ".complete"                  # marker in a complete tree (left out of a copy)


def tree_name(prefix: str, suite: str, packages: list[str] | tuple[str, ...], components: tuple[str, ...] = ("main",),
              variant: str | None = "minbase", mirror: str | None = None, arch: str | None = None) -> str:
    """The cached tree's folder name: its prefix, suite and a hash of what it is made from (``cached_debootstrap``);
    a default is left out of the hash, so a tree made before the parameter existed keeps its name."""
    ident = " ".join([suite, *packages] + ([] if components == ("main",) else ["components:", *components])
                     + ([] if variant == "minbase" else ["variant:", variant or "-"]) + ([] if mirror is None else ["mirror:", mirror])
                     + ([] if arch is None else ["arch:", arch]))
    return f"{prefix}-{suite}-{hashlib.sha256(ident.encode()).hexdigest()[:12]}"


def cached_debootstrap(prefix: str, suite: str, packages: list[str] | tuple[str, ...],
                       components: tuple[str, ...] = ("main",), variant: str | None = "minbase",
                       mirror: str | None = None, arch: str | None = None) -> Path:
    """A debootstrapped tree per (suite, packages, variant, components, mirror, arch), built on first use under the
    cache (concurrent callers wait on a lock) and never changed afterwards: callers copy it or lay an overlay on it.
    ``mirror`` None is this machine's (as ``debootstrap``), left out of the key, which tests' chroots keep; ``variant``
    None is debootstrap's default; ``arch`` None (debootstrap's: this machine's) is left out of the key too."""
    root = cache_root() / CHROOTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    target = root / tree_name(prefix, suite, packages, components, variant, mirror, arch)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / COMPLETE).exists():
            shutil.rmtree(target, ignore_errors=True)
            partial = root / f"{target.name}.partial"
            if partial.exists():
                unmount_below(partial)
            shutil.rmtree(partial, ignore_errors=True)
            try:
                debootstrap(partial, suite, list(packages), variant=variant, mirror=mirror, components=components,
                            arch=arch)
            except BaseException:
                unmount_below(partial)
                shutil.rmtree(partial, ignore_errors=True)
                raise
            (partial / COMPLETE).write_text("ok\n")
            partial.rename(target)
    return target


def copy_tree(source: Path, target: Path) -> None:
    """A complete copy of a cached tree (``cp -a``, sharing blocks where the file system can), without its marker."""
    _run(["cp", "-a", "--reflink=auto", "--", f"{source}/.", str(target)], stdout=subprocess.DEVNULL)
    (target / COMPLETE).unlink(missing_ok=True)


def install_guest_files(rootfs: Path) -> None:
    for guest_path, (mode, content) in GUEST_FILES.items():
        path = rootfs / guest_path.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            path.unlink()
        path.write_text(content)
        path.chmod(mode)


def boot_files(rootfs: Path) -> tuple[Path, Path]:
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise ImageBuildError(f"no kernel in {rootfs}/boot: is linux-image-<arch> (amd64, arm64) in the recipe?")
    version = kernels[-1].name.removeprefix("vmlinuz-")
    initrd = rootfs / "boot" / f"initrd.img-{version}"
    if not initrd.exists():
        raise ImageBuildError(f"no initrd for kernel {version} in {rootfs}/boot")
    return kernels[-1], initrd


def unmount_below(path: Path) -> None:
    """Unmount whatever a failed debootstrap left mounted inside `path`, deepest first."""
    prefix = str(path.resolve()) + "/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)
