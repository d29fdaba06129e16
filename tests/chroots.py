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
