"""The test bed's VM image: a cached Debian base tree (infra.image.base), configured for QEMU guests, as a raw disk."""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..image.base import (DEFAULT_PACKAGES, DEFAULT_SIZE, DEFAULT_SUITE, DEFAULT_VARIANT, Image, _run, boot_files,
                          cache_root, cached_debootstrap, copy_tree, install_guest_files, unmount_below)
from ..image.guest_files import CONFIGURE_SCRIPT, GUEST_FILES

RECIPE_VERSION = 1
TESTBED_BASE_PREFIX = "vm-testbed"      # the test bed image's cached debootstrap (cached_debootstrap)


@dataclass(frozen=True)
class Recipe:
    """Everything that determines the image's content; its hash keys the cache."""

    suite: str = DEFAULT_SUITE
    packages: tuple[str, ...] = tuple(DEFAULT_PACKAGES)
    variant: str | None = DEFAULT_VARIANT
    size: str = DEFAULT_SIZE

    def key(self) -> str:
        data = {
            "version": RECIPE_VERSION,
            "suite": self.suite,
            "packages": sorted(self.packages),
            "variant": self.variant,
            "size": self.size,
            "files": GUEST_FILES,
            "configure": CONFIGURE_SCRIPT,
        }
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _configure(rootfs: Path) -> None:
    install_guest_files(rootfs)
    _run(["chroot", str(rootfs), "/bin/sh", "-c", CONFIGURE_SCRIPT])


def _build(recipe: Recipe, out: Path, mirror: str | None) -> None:
    rootfs = out / "rootfs"
    rootfs.mkdir()
    base = cached_debootstrap(TESTBED_BASE_PREFIX, recipe.suite, sorted(recipe.packages), variant=recipe.variant, mirror=mirror)
    copy_tree(base, rootfs)                 # the cached base stays as debootstrap left it; this copy is configured
    _configure(rootfs)
    kernel, initrd = boot_files(rootfs)
    shutil.copy2(kernel, out / "vmlinuz")
    shutil.copy2(initrd, out / "initrd.img")
    _run(
        ["mke2fs", "-q", "-t", "ext4", "-L", "root", "-d", str(rootfs), "-F",
         str(out / "disk.raw"), recipe.size],
    )
    shutil.rmtree(rootfs)
    (out / "recipe.json").write_text(json.dumps(
        {"suite": recipe.suite, "packages": list(recipe.packages), "variant": recipe.variant,
         "size": recipe.size, "version": RECIPE_VERSION}, indent=2))


def build_image(
    recipe: Recipe = Recipe(), cache: Path | None = None, mirror: str | None = None
) -> Image:
    """Return the cached image for `recipe`, building it first if the recipe is new."""
    images = (cache or cache_root()) / "images"
    images.mkdir(parents=True, exist_ok=True)
    final = images / recipe.key()
    with open(images / f"{recipe.key()}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder per recipe; others wait and reuse
        if not (final / "disk.raw").exists():
            work = Path(tempfile.mkdtemp(prefix="build-", dir=images))
            try:
                _build(recipe, work, mirror)
                work.rename(final)
            finally:
                if work.exists():
                    unmount_below(work)
                    shutil.rmtree(work, ignore_errors=True)
    return Image(disk=final / "disk.raw", kernel=final / "vmlinuz", initrd=final / "initrd.img")
