"""Node images: every role's install part for one node type, run once into a fresh Debian root, natively.

The hosts of a node type (from the plan) are in some of the plan's groups; the phases (infra/orchestrate/phases.py)
on those groups run their playbooks with ``gigafactory_part=install`` against one inventory host standing for the
type, whose modules act on a debootstrapped tree through the chroot runner (chroot.py). The tree then becomes a
disk image (raw and qcow2, with its kernel and initrd), a network-boot bundle (kernel, live-boot initrd, squashfs,
iPXE script) and a manifest of its packages, kept under a key that hashes everything the image depends on.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from ..orchestrate.phases import PHASES, phase_named
from ..orchestrate.project import ansible_root
from ..plan import Plan, build_plan, group_name
from ..render.inventory import site_inventory
from ..site.model import Repository, Site
from ..stack.phase_files import PhaseInputError, files_digest, phase_files, site_inventory_files
from ..vm.guest_files import CONFIGURE_SCRIPT
from ..vm.image import (DEFAULT_PACKAGES, DEFAULT_SIZE, Image, boot_files, install_guest_files, unmount_below, cache_root,
                        cached_debootstrap, copy_tree)
from ..vm.mirror import host_debian_mirror
from .boot import NETBOOT_FSTAB, NETBOOT_INITRAMFS, NETBOOT_PACKAGES, ipxe_script
from .chroot import Chroot, ChrootError, Relays
from .manifest import MANIFEST_PROGRAM, summary

IMAGES_DIR = "node-images"              # under the cache root; infra/vm's recipe images are in images/
PART = "install"                        # the roles' part an image holds (gigafactory_part)
# The test bed's recipe: a kernel that boots in its VMs, ssh, Python with APT's bindings for Ansible.
IMAGE_PACKAGES = tuple(DEFAULT_PACKAGES)
CODENAMES = {"12": "bookworm", "13": "trixie"}
NOT_PROBED = ("images",)                # a container registry: no image build reaches it
BASE_PREFIX = "image-base"              # the cached debootstrap under the cache's chroots/ (one per release and mirror)
BASE_VARIANT = "minbase"
# The network-boot bundle's squashfs: zstd level 3, measured on vm-compute's tree (2 cores): 3.0 s and 274 MB,
# against level 6's 7.8 s and 266 MB, level 15's 97 s and 256 MB, xz's 209 s and 246 MB, lz4's 2.0 s and 334 MB
# (docs/images.md): 3 % more to fetch at boot for a build seconds shorter.
SQUASHFS_COMPRESSION = ("-comp", "zstd", "-Xcompression-level", "3")
Say = Callable[[str], None]


class ImageInputError(ValueError):
    """Invalid input to an image build (unknown node type, a repository that does not answer)."""


class ImageBuildFailed(RuntimeError):
    """A step of a build failed; nothing of it is left in the cache."""


@dataclass(frozen=True)
class TypeImage:
    """What one node type's image is built from: the groups its hosts are in and the phases on those groups."""
    node_type: str
    hosts: tuple[str, ...]
    pools: tuple[str, ...]
    groups: tuple[str, ...]
    phases: tuple[str, ...]


def type_images(site: Site, plan: Plan, wanted: list[str] | None = None) -> list[TypeImage]:
    """Per node type asked for (default: every type with hosts), its hosts' groups (the union over its pools) and
    its phases; an unknown type or one without hosts is an ImageInputError naming the known ones."""
    with_hosts = [t for t in site.node_types if any(h.node_type == t for h in plan.hosts.values())]
    names = list(dict.fromkeys(wanted or with_hosts))
    unknown = [n for n in names if n not in with_hosts]
    if unknown:
        kind = "unknown node type" if not set(unknown) & set(site.node_types) else "node type without hosts"
        raise ImageInputError(f"--node-type: {kind} {', '.join(repr(n) for n in unknown)}; "
                              f"node types with hosts: {', '.join(with_hosts)}")
    out = []
    for name in names:
        hosts = [h for h in plan.hosts.values() if h.node_type == name]
        groups = [g for g in plan.groups if any(g in h.groups for h in hosts)]
        phases = [p.name for p in PHASES if not p.groups or set(p.groups) & set(groups)]
        out.append(TypeImage(name, tuple(h.name for h in hosts), tuple(dict.fromkeys(h.pool for h in hosts)),
                             tuple(groups), tuple(phases)))
    return out


def phase_digests(root: Path, site_path: Path, phases: tuple[str, ...]) -> dict[str, str]:
    """Per phase of an image, the digest of the files it reads (its playbooks and roles, the group_vars/ and
    host_vars/ beside the site file): what ``PhaseInputs.files`` holds for those phases, without reading the others
    or building the inventory (a cache hit computes only this and the site's sections)."""
    beside = site_inventory_files(root, str(site_path))
    out = {}
    for phase in phases:
        try:
            out[phase] = files_digest(root, phase_files(root, phase_named(phase).playbook) + beside)
        except PhaseInputError as err:
            raise PhaseInputError(f"phase {phase!r}: {err}") from None
    return out


def builder_digest() -> str:
    """The builder's own version: its source files and the test bed recipe it starts from."""
    digest = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for path in sorted(here.glob("*.py")) + [here.parent / "vm" / "guest_files.py"]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(json.dumps([IMAGE_PACKAGES, NETBOOT_PACKAGES]).encode())
    return digest.hexdigest()


def _repositories(site: Site) -> dict[str, Any]:
    """The repositories section with each key file's content digest in place of its path on this machine."""
    out = site.repositories.model_dump(mode="json")
    for name in type(site.repositories).model_fields:
        repo = getattr(site.repositories, name)
        if isinstance(repo, Repository) and repo.signed_by is not None:
            out[name]["signed_by"] = hashlib.sha256(Path(repo.signed_by).read_bytes()).hexdigest()
    return out


# Inventory variables the install parts never read: the site's hosts, addresses and networks, or this run's settings
# (ansible_user: how Ansible logs in; an image build runs locally), so a pool that grows or a network that moves does
# not rebuild its images. Every other variable the image's host receives is in the key: a variable missing here costs
# a rebuild, one wrongly listed a stale image (tests/test_role_parts.py checks the install parts).
CONFIGURE_VARIABLES = frozenset({"gf_etc_hosts", "gf_slurm_files", "gf_slurm_tenants", "gf_ntp_servers", "gf_max_fail_percent",
                                 "gf_boot", "gf_networks", "gf_fabrics", "ansible_user"})


def image_variables(site: Site, plan: Plan, image: TypeImage) -> dict[str, Any]:
    """The inventory variables the image's stand-in host receives (site-wide and its groups'), host lists and addresses left out."""
    view = site_inventory(site, plan)
    out = dict(view["all"]["vars"])
    for group in sorted(image.groups):
        out.update(view["all"]["children"].get(group, {}).get("vars", {}))
    return {k: v for k, v in out.items() if k not in CONFIGURE_VARIABLES}


def image_key(site: Site, image: TypeImage, phase_files: dict[str, str], plan: Plan | None = None) -> str:
    """The hash of what the image depends on: the site's os, repositories and software, the node type, its role
    groups, the inventory variables its host receives but hosts and addresses (``image_variables``), the files of its phases
    (``PhaseInputs.files``), the builder, and whether it is a test bed's. Hosts, addresses and pools are not in it."""
    pools = {group_name("pool", p.name) for p in site.pools}
    plan = plan or build_plan(site)
    data = {
        "testbed": site.testbed is not None,
        "variables": image_variables(site, plan, image),
        "builder": builder_digest(),
        "part": PART,
        "os": site.os.model_dump(mode="json"),
        "repositories": _repositories(site),
        "software": site.software.model_dump(mode="json"),
        "node_type": {"name": image.node_type, "definition": site.node_types[image.node_type].model_dump(mode="json")},
        "groups": sorted(g for g in image.groups if g not in pools),
        "phases": {p: phase_files[p] for p in image.phases},
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


# --- the test bed's mirror, and whether repositories answer ---------------------------------------------------


def testbed_mapping(site: Site) -> dict[str, str]:
    """A test bed's site names its mirrors as its guests see them; here they are on this machine's loopback
    (infra/vm/mirror_cache.py for Debian, infra/vm/python_index.py for pip): guest URL origin -> this machine's, for
    each the site names. Empty for a real site."""
    if site.testbed is None:
        return {}
    from ..vm import mirror_cache, python_index
    named = {urllib.parse.urlsplit(u).netloc for u in site.repositories.urls().values()}
    out = {}
    for guest_url, here_url in ((mirror_cache.GUEST_URL, mirror_cache.HOST_URL),
                                (python_index.GUEST_URL, python_index.HOST_URL)):
        guest, here = urllib.parse.urlsplit(guest_url), urllib.parse.urlsplit(here_url)
        if guest.netloc in named:
            out[f"{guest.scheme}://{guest.netloc}"] = f"{here.scheme}://{here.netloc}"
    return out


def start_testbed_mirrors(site: Site, mapping: dict[str, str]) -> None:
    """Start the test bed's mirrors the site names (as the demo does): Debian's cache, and the Python index with
    what the site's execution hosts install."""
    from ..vm import mirror_cache, python_index
    origins = {urllib.parse.urlsplit(g).netloc for g in mapping}
    if urllib.parse.urlsplit(mirror_cache.GUEST_URL).netloc in origins:
        mirror_cache.ensure_mirror_cache()
    if urllib.parse.urlsplit(python_index.GUEST_URL).netloc in origins:
        from ..render.inventory import execution_packages
        python_index.ensure_python_index(execution_packages(site.provisioning.strategy))


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


# --- the cache --------------------------------------------------------------------------------------------------


def images_root() -> Path:
    return cache_root() / IMAGES_DIR


@dataclass(frozen=True)
class BuiltImage:
    key: str
    path: Path
    node_type: str
    cached: bool          # True: found in the cache, nothing built

    def vm_image(self) -> Image:
        """The disk image with its kernel and initrd, as the test bed's launcher boots it (infra.vm)."""
        return Image(disk=self.path / "disk.qcow2", kernel=self.path / "vmlinuz", initrd=self.path / "initrd.img",
                     disk_format="qcow2")


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
    view = site_inventory(site, plan)
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
    from ..orchestrate.runner import run_wave
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
    t0 = time.monotonic()
    say(f"{image.node_type}: base tree of {suite} ({len(IMAGE_PACKAGES)} packages of the boot recipe; "
        f"debootstrap when not cached)")
    base = cached_debootstrap(BASE_PREFIX, suite, IMAGE_PACKAGES, variant=BASE_VARIANT, mirror=mirror)
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
    (net / "boot.ipxe").write_text(ipxe_script(None, image.node_type, key))
    shutil.rmtree(rootfs)
    (out / "image.json").write_text(json.dumps({
        "key": key, "node_type": image.node_type, "site": plan.site, "site_file": str(site_path),
        "built": datetime.now(UTC).isoformat(timespec="seconds"), "build_seconds": round(time.monotonic() - t0, 1),
        "os": {"distribution": "debian", "release": site.os.release, "suite": suite}, "part": PART,
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
          say: Say = _print) -> list[BuiltImage]:
    """Each image from the cache, or built into a temporary folder beside it and renamed there when complete."""
    mapping = testbed_mapping(site)
    keys = {image.node_type: image_key(site, image, phase_files, plan) for image in images}
    root = images_root()
    missing = [i for i in images if not (root / keys[i.node_type] / "image.json").is_file()]
    if missing:
        problems = unanswered(site, mapping)
        if problems and mapping:            # the test bed's mirrors, started on demand as the demo does
            start_testbed_mirrors(site, mapping)
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
            out.append(BuiltImage(key, final, image.node_type, cached=True))
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
        out.append(BuiltImage(key, final, image.node_type, cached=False))
    return out


def site_images(site: Site, plan: Plan, site_path: Path, node_types: list[str] | None = None,
                say: Say = _print) -> list[BuiltImage]:
    """The image of each node type asked for (default: every type with hosts), from the cache or built: what
    ``gigafactory image build`` and the demo's launcher both run."""
    images = type_images(site, plan, node_types)
    phases = tuple(dict.fromkeys(p for image in images for p in image.phases))
    return build(site, plan, site_path, images, phase_digests(ansible_root(), site_path, phases), say)


def served_node_types(site: Site, plan: Plan) -> list[str]:
    """The node types of the hosts with a declared boot MAC (``pools[].macs``): the bundles the boot server serves."""
    declared = {host for pool in site.pools for host in pool.macs}
    return list(dict.fromkeys(h.node_type for name, h in plan.hosts.items() if name in declared))


def netboot_bundles(site: Site, plan: Plan, site_path: Path, node_types: list[str]) -> dict[str, Path]:
    """Each node type's network-boot bundle in the cache (``<key>/netboot``), never built here: an ImageInputError
    names every type without one and the command that builds it."""
    if not node_types:
        return {}
    images = type_images(site, plan, node_types)
    digests = phase_digests(ansible_root(), site_path, tuple(dict.fromkeys(p for i in images for p in i.phases)))
    found, missing = {}, []
    for image in images:
        path = images_root() / image_key(site, image, digests, plan)
        if (path / "image.json").is_file():
            found[image.node_type] = path / "netboot"
        else:
            missing.append(image.node_type)
    if missing:
        raise ImageInputError(
            f"provisioning.images: no network-boot bundle of node type {', '.join(missing)} in {images_root()} for "
            f"the boot server to serve: gigafactory image build {site_path} "
            + " ".join(f"--node-type {t}" for t in missing))
    return found


# --- what exists ------------------------------------------------------------------------------------------------


def list_images() -> list[dict[str, Any]]:
    """Every complete image in the cache, newest first, with its size on disk."""
    root = images_root()
    out = []
    for meta in sorted(root.glob("*/image.json")) if root.is_dir() else ():
        if meta.parent.name.startswith("."):
            continue
        data = json.loads(meta.read_text())
        data["path"] = str(meta.parent)
        data["bytes"] = sum(p.stat().st_blocks * 512 for p in meta.parent.rglob("*") if p.is_file())
        out.append(data)
    return sorted(out, key=lambda d: d["built"], reverse=True)


def find_image(key: str) -> dict[str, Any]:
    matches = [i for i in list_images() if i["key"].startswith(key)] if key else []
    if len(matches) != 1:
        known = ", ".join(i["key"] for i in list_images()) or "none"
        raise ImageInputError(f"{'no' if not matches else 'more than one'} image with key {key!r}; images: {known}")
    image = matches[0]
    image["manifest"] = summary(json.loads((Path(image["path"]) / "manifest.json").read_text()))
    return image


def age(built: str) -> str:
    seconds = (datetime.now(UTC) - datetime.fromisoformat(built)).total_seconds()
    for unit, span in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= span:
            return f"{seconds / span:.0f} {unit}"
    return f"{seconds:.0f} s"


def human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
