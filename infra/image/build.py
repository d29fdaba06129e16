"""Node images: every role's install part for one node type, run once into a fresh Debian root, natively.

The hosts of a node type (from the plan) are in some of the plan's groups; the phases (infra/plan/phases.py)
on those groups run their playbooks with ``gigafactory_part=install`` against one inventory host standing for the
type, whose modules act on a debootstrapped tree through the chroot runner (chroot.py). The tree then becomes a
disk image (raw and qcow2, with its kernel and initrd), a network-boot bundle (kernel, live-boot initrd, squashfs,
iPXE script) and a manifest of its packages, kept under a key that hashes everything the image depends on.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from ..plan import Plan
from ..project import ansible_root
from ..plan.phases import phase_named
from ..runner.ansible import run_wave
from ..runner.execution import controller_inventory
from ..site.model import Site
from .arch import NATIVE, ForeignArchUnsupported, architecture, foreign_arch_problem
from .base import DEFAULT_SIZE, boot_files, cached_debootstrap, copy_tree, install_guest_files, unmount_below
from .boot import NETBOOT_FSTAB, NETBOOT_INITRAMFS, ipxe_script
from .cache import (PART, BuiltImage, ImageInputError, TypeImage, image_key, image_packages, images_root,
                    phase_digests, type_images)
from .chroot import Chroot, ChrootError, Relays
from .guest_files import CONFIGURE_SCRIPT
from .manifest import MANIFEST_PROGRAM
from .mirror import host_debian_mirror

CODENAMES = {"12": "bookworm", "13": "trixie"}
NOT_PROBED = ("images",)                # a container registry: no image build reaches it
BASE_PREFIX = "image-base"              # the cached debootstrap under the cache's chroots/ (one per release and mirror)
BASE_VARIANT = "minbase"
# The network-boot bundle's squashfs: zstd level 3, measured on vm-compute's tree (2 cores): 3.0 s and 274 MB,
# against level 6's 7.8 s and 266 MB, level 15's 97 s and 256 MB, xz's 209 s and 246 MB, lz4's 2.0 s and 334 MB
# (docs/images.md): 3 % more to fetch at boot for a build seconds shorter.
SQUASHFS_COMPRESSION = ("-comp", "zstd", "-Xcompression-level", "3")
Say = Callable[[str], None]


class ImageBuildFailed(RuntimeError):
    """A step of a build failed; nothing of it is left in the cache."""


# --- a mirror mapping (the test bed's: infra/vm/mirrors.py), and whether repositories answer -------------------


def relays_for(mapping: dict[str, str]) -> Relays:
    out = {}
    for guest, here in mapping.items():
        g, h = urllib.parse.urlsplit(guest), urllib.parse.urlsplit(here)
        out[(g.hostname, g.port or 80)] = (h.hostname, h.port or 80)
    return out


def _here(url: str, mapping: dict[str, str]) -> str:
    for guest, here in mapping.items():
        if url == guest or url.startswith(guest + "/"):
            return here + url[len(guest):]
    return url


def unanswered(site: Site, mapping: dict[str, str], timeout: float = 10) -> list[str]:
    """Each repository of the site that does not answer over HTTP (the Debian mirror: its suite's Release file)."""
    problems = []
    codename = CODENAMES[site.os.release]
    for name, url in site.repositories.urls().items():
        if name in NOT_PROBED:
            continue
        probe = _here(url.rstrip("/"), mapping) + (f"/dists/{codename}/Release" if name == "debian" else "/")
        try:
            with urllib.request.urlopen(urllib.request.Request(probe, method="GET"), timeout=timeout) as reply:
                reply.read(1)
        except urllib.error.HTTPError as err:
            if name == "debian" or err.code >= 500:
                problems.append(f"repositories.{name}: {url} answered {err.code} for {probe}")
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            problems.append(f"repositories.{name}: {url} does not answer ({reason})")
    return problems


def _du(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _print(text: str) -> None:
    print(text, flush=True)


def _ansible_events(say: Say, node_type: str, phase: str):
    def sink(event: dict[str, Any]) -> None:
        if event.get("event") == "playbook_on_task_start":
            say(f"  {node_type} {phase}: {(event.get('event_data') or {}).get('task', '')}")
    return sink


def _inventory(site: Site, plan: Plan, image: TypeImage, host: str, chroot: Chroot) -> dict[str, Any]:
    """One host standing for the type: in the type's groups, with the site-wide variables and those groups'."""
    view = controller_inventory(site, plan)
    children = {}
    for group in image.groups:
        entry: dict[str, Any] = {"hosts": {host: None}}
        if "vars" in view["all"]["children"].get(group, {}):
            entry["vars"] = view["all"]["children"][group]["vars"]
        children[group] = entry
    return {"all": {
        "vars": view["all"]["vars"],
        "hosts": {host: {"ansible_connection": "local", "ansible_python_interpreter": str(chroot.python),
                         "ansible_remote_tmp": str(chroot.tmp), "gf_node_type": image.node_type}},
        "children": children,
    }}


def tree_kernel(rootfs: Path) -> str:
    """The release of the newest kernel installed in the tree (``/boot/vmlinuz-<release>``): what the image boots."""
    return boot_files(rootfs)[0].name.removeprefix("vmlinuz-")


def install_extravars(phase: str, kernel: str) -> dict[str, str]:
    """What every phase of an image build is told: the install part, and the image's kernel as the one kernel
    modules are built for (``gigafactory_kernel``; without it a DKMS build would target this machine's kernel)."""
    return {"gigafactory_part": PART, "gigafactory_kernel": kernel, "gf_phase": phase}


def _run_phases(site: Site, plan: Plan, site_path: Path, image: TypeImage, key: str, chroot: Chroot,
                work: Path, say: Say, again: bool = False) -> list[str]:
    """Every phase's install part into the tree. ``again``: a second pass over the finished tree, which must find
    the install part satisfied; returns the tasks that changed there ("phase: role: task"), for the caller to refuse."""
    host = f"image-{key}"
    inventory_dir = work / "inventory"
    if not inventory_dir.is_dir():
        inventory_dir.mkdir()
        (inventory_dir / "hosts.yml").write_text(yaml.safe_dump(_inventory(site, plan, image, host, chroot)))
        beside = site_path.parent / "group_vars"
        if beside.is_dir():
            (inventory_dir / "group_vars").symlink_to(beside)
    changed: list[str] = []
    for i, phase in enumerate(image.phases, 1):
        say(f"{image.node_type}: phase {phase} ({'install part again: nothing may change' if again else 'install part'})")
        show = _ansible_events(say, image.node_type, phase)

        def sink(event: dict[str, Any], show=show, phase=phase) -> None:
            show(event)
            data = event.get("event_data") or {}
            if event.get("event") == "runner_on_ok" and (data.get("res") or {}).get("changed"):
                changed.append(f"{phase}: {data.get('role') or '-'}: {data.get('task', '')}")
        result = run_wave(playbook=ansible_root() / phase_named(phase).playbook, inventories=[inventory_dir / "hosts.yml"],
                          hosts=[host], private_data_dir=work / "ansible", ident=f"{i:02d}-{phase}" + ("-again" * again),
                          ansible_config=ansible_root() / "ansible.cfg", check=False,
                          extravars=install_extravars(phase, tree_kernel(chroot.root)), sink=sink)
        if result.failed:
            failure = result.failed[host]
            raise ImageBuildFailed(f"{image.node_type}: phase {phase} failed at task {failure.task!r}: {failure.message}")
        if result.changed.get(host) and not any(c.startswith(f"{phase}: ") for c in changed):
            changed.append(f"{phase}: {result.changed[host]} task(s)")
    return changed


# Settings of the tree while it is built, none of them in the image: dpkg without fsync (the tree is thrown away on
# any failure), no documentation or manual pages unpacked (copyright files kept), APT without recommends or
# suggestions, and no initrd made at each package's trigger (FINISH makes both once, after the roles).
BUILD_SETTINGS = """set -eu
cat > /etc/dpkg/dpkg.cfg.d/gigafactory-build <<'END'
force-unsafe-io
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
END
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' > /etc/apt/apt.conf.d/99gigafactory-build
c=/etc/initramfs-tools/update-initramfs.conf
cp -a "$c" "$c.gigafactory-build"
sed -i 's/^update_initramfs=.*/update_initramfs=no/' "$c"
"""
BUILD_SETTINGS_OFF = """set -eu
rm -f /etc/dpkg/dpkg.cfg.d/gigafactory-build /etc/apt/apt.conf.d/99gigafactory-build
c=/etc/initramfs-tools/update-initramfs.conf
mv -f "$c.gigafactory-build" "$c"
"""
BUILD_FILES = ("etc/dpkg/dpkg.cfg.d/gigafactory-build", "etc/apt/apt.conf.d/99gigafactory-build",
               "etc/initramfs-tools/update-initramfs.conf.gigafactory-build")

FINISH = f"""set -eu
{NETBOOT_INITRAMFS}
update-initramfs -u -k all
"""

CLEAN = """set -eu
apt-get clean
rm -f /etc/ssh/ssh_host_*
: > /etc/machine-id
"""


def _build(site: Site, plan: Plan, site_path: Path, image: TypeImage, key: str, mapping: dict[str, str],
           out: Path, say: Say) -> None:
    rootfs = out / "rootfs"
    rootfs.mkdir()
    suite = CODENAMES[site.os.release]
    mirror = _here(site.repositories.urls()["debian"], mapping) if "debian" in site.repositories.urls() else host_debian_mirror()
    arch = architecture(site.node_types[image.node_type].cpu.arch)
    packages = image_packages(arch)
    t0 = time.monotonic()
    say(f"{image.node_type}: base tree of {suite} for {arch.debian} ({len(packages)} packages of the boot recipe; "
        f"debootstrap when not cached)")
    # The native architecture's tree keeps its key from before architectures were named (arch None: this machine's).
    base = cached_debootstrap(BASE_PREFIX, suite, packages, variant=BASE_VARIANT, mirror=mirror,
                              arch=None if arch.cpu == NATIVE else arch.debian)
    copy_tree(base, rootfs)
    if site.testbed is not None:       # the VM test bed's first boot (fw_cfg keys, sudo, virtio); never a real site's image
        install_guest_files(rootfs)
    work = Path(tempfile.mkdtemp(prefix="gigafactory-image-"))     # Ansible's files: outside the cache, 0700
    try:
        with Chroot(rootfs, work / "namespace", relays=relays_for(mapping)) as chroot:
            chroot.run(["/bin/sh", "-c", BUILD_SETTINGS])
            if site.testbed is not None:
                chroot.run(["/bin/sh", "-c", CONFIGURE_SCRIPT])
            _run_phases(site, plan, site_path, image, key, chroot, work, say)
            # A node booted from the image finds its install part satisfied: proved on the image itself, every build.
            changed = _run_phases(site, plan, site_path, image, key, chroot, work, say, again=True)
            if changed:
                raise ImageBuildFailed(f"{image.node_type}: the install part changed the finished image again: "
                                       + "; ".join(changed))
            say(f"{image.node_type}: initrds (disk, network boot) and the package manifest")
            chroot.run(["/bin/sh", "-c", BUILD_SETTINGS_OFF])
            chroot.run(["/bin/sh", "-c", FINISH], timeout=1800)
            manifest = json.loads(chroot.run(["/usr/bin/python3", "-c", MANIFEST_PROGRAM]).stdout)
            chroot.run(["/bin/sh", "-c", CLEAN])
    finally:
        # The scratch folder was bound at the same path inside the tree: its mount point goes too.
        shutil.rmtree(rootfs / str(work).lstrip("/"), ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    _annotate(manifest, site, mapping)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    kernel, initrd = boot_files(rootfs)
    version = kernel.name.removeprefix("vmlinuz-")
    net = out / "netboot"
    net.mkdir()
    for src, dst in ((kernel, out / "vmlinuz"), (initrd, out / "initrd.img"), (kernel, net / "vmlinuz"),
                     (rootfs / "boot" / f"netboot-initrd.img-{version}", net / "initrd.img")):
        shutil.copy2(src, dst)
    (rootfs / "boot" / f"netboot-initrd.img-{version}").unlink()
    size = max(_parse_size(DEFAULT_SIZE), int(_du(rootfs) * 1.5) + (1 << 30))
    say(f"{image.node_type}: disk image ({size >> 20} MiB, raw and qcow2)")
    _tool(["mke2fs", "-q", "-t", "ext4", "-L", "root", "-d", str(rootfs), "-F", str(out / "disk.raw"), f"{size >> 10}k"])
    _tool(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(out / "disk.raw"), str(out / "disk.qcow2")])
    say(f"{image.node_type}: network-boot bundle (squashfs root)")
    (rootfs / "etc" / "fstab").write_text(NETBOOT_FSTAB)        # the disk image, made above, keeps its own
    _tool(["mksquashfs", str(rootfs), str(net / "root.squashfs"), "-noappend", "-quiet", "-no-progress",
           *SQUASHFS_COMPRESSION, "-processors", str(os.cpu_count() or 1)])
    (net / "boot.ipxe").write_text(ipxe_script(None, image.node_type, key, console=arch.console))
    shutil.rmtree(rootfs)
    (out / "image.json").write_text(json.dumps({
        "key": key, "node_type": image.node_type, "site": plan.site, "site_file": str(site_path),
        "built": datetime.now(UTC).isoformat(timespec="seconds"), "build_seconds": round(time.monotonic() - t0, 1),
        "os": {"distribution": "debian", "release": site.os.release, "suite": suite}, "part": PART,
        "architecture": arch.debian,
        "type": asdict(image), "kernel": version, "packages": len(manifest["packages"]),
    }, indent=1) + "\n")


def _parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def _tool(argv: list[str]) -> None:
    try:
        result = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    except FileNotFoundError:
        raise ImageBuildFailed(f"{argv[0]} not found: install it (see .ci/apt-packages.txt)") from None
    if result.returncode != 0:
        raise ImageBuildFailed(f"{argv[0]} exited with {result.returncode}: {result.stderr.strip()[-1000:]}")


def _annotate(manifest: dict[str, Any], site: Site, mapping: dict[str, str]) -> None:
    """Name each package source by the site's repository it belongs to (``repositories.<name>``), when it does."""
    reverse = {here: guest for guest, here in mapping.items()}
    named = site.repositories.urls()
    if "debian" in named and "debian_security" not in named:       # the base role's default security mirror
        named["debian_security"] = named["debian"].rstrip("/") + "-security"
    urls = sorted(((u.rstrip("/"), n) for n, u in named.items()), key=lambda x: -len(x[0]))
    for package in manifest["packages"]:
        for source in package["sources"]:
            uri = _here(source["uri"].rstrip("/"), reverse)
            source["uri"] = uri
            source["repository"] = next((n for u, n in urls if uri == u or uri.startswith(u + "/")), None)


def build(site: Site, plan: Plan, site_path: Path, images: list[TypeImage], phase_files: dict[str, str],
          say: Say = _print, mapping: Mapping[str, str] | None = None,
          start_mirrors: Callable[[], None] | None = None) -> list[BuiltImage]:
    """Each image from the cache, or built into a temporary folder beside it and renamed there when complete.
    ``mapping``: mirror origins as the site names them -> as this machine reaches them (a test bed's, from its
    caller); ``start_mirrors``: starts those mirrors when a repository does not answer."""
    mapping = dict(mapping or {})
    keys = {image.node_type: image_key(site, image, phase_files, plan) for image in images}
    root = images_root()
    missing = [i for i in images if not (root / keys[i.node_type] / "image.json").is_file()]

    def arch_of(image: TypeImage) -> str:
        return site.node_types[image.node_type].cpu.arch
    for cpu in dict.fromkeys(map(arch_of, missing)):            # before anything is fetched or written
        problem = foreign_arch_problem(architecture(cpu))
        if problem:
            types = ", ".join(i.node_type for i in missing if arch_of(i) == cpu)
            raise ForeignArchUnsupported(f"node type {types} (cpu.arch {cpu}): this machine cannot build its image: {problem}")
    if missing:
        problems = unanswered(site, mapping)
        if problems and start_mirrors is not None:      # the test bed's mirrors, started on demand as the demo does
            start_mirrors()
            problems = unanswered(site, mapping)
        if problems:
            raise ImageInputError("; ".join(problems))
    out: list[BuiltImage] = []
    t0, plain = time.monotonic(), say
    say = lambda text: plain(f"[{time.monotonic() - t0:5.0f} s] {text}")  # noqa: E731 - progress with elapsed time
    for image in images:
        key = keys[image.node_type]
        final = root / key
        if (final / "image.json").is_file():
            say(f"{image.node_type}: cache hit: {final} (key {key})")
            out.append(BuiltImage(key, final, image.node_type, cached=True, arch=arch_of(image)))
            continue
        if len(image.pools) > 1:
            say(f"{image.node_type}: hosts in pools {', '.join(image.pools)}: the image has the union of their groups")
        say(f"{image.node_type}: building image {key}: groups {', '.join(image.groups)}; phases {', '.join(image.phases)}")
        root.mkdir(parents=True, exist_ok=True)
        with open(root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)       # one build at a time; a second asking for the same key reuses it
            if not (final / "image.json").is_file():
                partial = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=root))
                try:
                    _build(site, plan, site_path, image, key, mapping, partial, say)
                    partial.chmod(0o755)
                    partial.rename(final)
                except ChrootError as err:
                    raise ImageBuildFailed(f"{image.node_type}: {err}") from None
                finally:
                    if partial.exists():
                        unmount_below(partial)
                        shutil.rmtree(partial, ignore_errors=True)
        say(f"{image.node_type}: image {final} (key {key})")
        out.append(BuiltImage(key, final, image.node_type, cached=False, arch=arch_of(image)))
    return out


def site_images(site: Site, plan: Plan, site_path: Path, node_types: list[str] | None = None,
                say: Say = _print, mapping: Mapping[str, str] | None = None,
                start_mirrors: Callable[[], None] | None = None) -> list[BuiltImage]:
    """The image of each node type asked for (default: every type with hosts), from the cache or built: what
    ``gigafactory image build`` and the demo's launcher both run (``mapping``, ``start_mirrors``: ``build``'s)."""
    images = type_images(site, plan, node_types)
    phases = tuple(dict.fromkeys(p for image in images for p in image.phases))
    return build(site, plan, site_path, images, phase_digests(ansible_root(), site_path, phases), say, mapping,
                 start_mirrors)


