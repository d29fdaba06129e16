"""Cached Debian chroots for tests that need a distribution's real packages and daemons on this machine.

Built once per (suite, packages, components) with debootstrap from the host's mirror (needs root), kept under
the test bed's cache, never changed by a test: a test that installs into one works on an overlay of it.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
from pathlib import Path

from infra.vm.image import cache_root, debootstrap


def cached_chroot(prefix: str, suite: str, packages: list[str], components: tuple[str, ...] = ("main",),
                  variant: str = "minbase") -> Path:
    """The chroot for this package list, built on first use (concurrent callers wait on a lock)."""
    ident = " ".join([suite, *packages] + ([] if components == ("main",) else ["components:", *components]))
    key = hashlib.sha256(ident.encode()).hexdigest()[:12]
    root = cache_root() / "chroots"
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{prefix}-{suite}-{key}"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / ".complete").exists():
            shutil.rmtree(target, ignore_errors=True)
            partial = root / f"{target.name}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            debootstrap(partial, suite, packages, variant=variant, components=components)
            (partial / ".complete").write_text("ok\n")
            partial.rename(target)
    return target


OVERLAY = """\
set -u
R={merged}
mount -t overlay overlay -o lowerdir={base},upperdir={upper},workdir={work} "$R" || exit 90
mount -t proc proc "$R/proc"
mount --bind /dev "$R/dev"
mkdir -p "$R{tmp}" && mount --bind {tmp} "$R{tmp}"
cp /etc/resolv.conf "$R/etc/resolv.conf"
printf '#!/bin/sh\\nexit 101\\n' > "$R/usr/sbin/policy-rc.d"; chmod 0755 "$R/usr/sbin/policy-rc.d"
"""


def overlay_script(base: Path, layers: Path, tmp: Path, body: str) -> str:
    """A bash script (run it under ``unshare --mount --fork``) that mounts a throw-away overlay of ``base`` at
    ``$R`` with /proc, /dev and ``tmp`` (same path inside and out, for Ansible's module files), no service starts
    (policy-rc.d), then runs ``body``. The mounts die with the namespace; ``layers`` holds what was written."""
    dirs = {name: layers / name for name in ("upper", "work", "merged")}
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    return OVERLAY.format(merged=dirs["merged"], base=base, upper=dirs["upper"], work=dirs["work"], tmp=tmp) + body


def chroot_python(path: Path, layers: Path) -> Path:
    """An interpreter for Ansible that runs the chroot's own python3: modules then act on the chroot."""
    path.write_text(f'#!/bin/sh\nexec chroot {layers / "merged"} /usr/bin/python3 "$@"\n')
    path.chmod(0o755)
    return path
