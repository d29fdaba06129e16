"""The node image cache: what an image is built from (``TypeImage``), its key (a hash of everything it depends on),
where it is kept, what is in the cache, and the network-boot bundles a boot server serves from it. The builder
(build.py) fills it; ``up``'s boot phase and ``gigafactory image list|show`` read it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..plan import Plan, build_plan, group_name
from ..plan.phases import PHASES, phase_named
from ..project import ansible_root
from ..runner.execution import controller_inventory
from ..runner.phase_files import PhaseInputError, files_digest, phase_files, site_inventory_files
from ..site.model import Repository, Site
from .arch import NATIVE, Architecture
from .base import DEFAULT_PACKAGES, Image, cache_root
from .boot import NETBOOT_PACKAGES
from .manifest import summary

IMAGES_DIR = "node-images"              # under the cache root; infra/vm's recipe images are in images/
PART = "install"                        # the roles' part an image holds (gigafactory_part)
# The test bed's recipe: a kernel that boots in its VMs, ssh, Python with APT's bindings for Ansible.
IMAGE_PACKAGES = tuple(DEFAULT_PACKAGES)


def image_packages(arch: Architecture) -> tuple[str, ...]:
    """The boot recipe for ``arch``: IMAGE_PACKAGES with that architecture's kernel package."""
    return tuple(arch.kernel_package if p.startswith("linux-image-") else p for p in IMAGE_PACKAGES)


class ImageInputError(ValueError):
    """Invalid input to an image build (unknown node type, a repository that does not answer)."""



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
    """The builder's own version: its source files (the base tree and the test bed's guest files among them)."""
    digest = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for path in sorted(here.glob("*.py")):
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
# (ansible_user: how Ansible logs in; an image build runs locally), or the plan's GPU power limit (gpu_power's
# configure part writes it), so a pool that grows, a network that moves or a limit the plan lowers does not rebuild
# its images. Every other variable the image's host receives is in the key: a variable missing here costs
# a rebuild, one wrongly listed a stale image (tests/test_role_parts.py checks the install parts).
CONFIGURE_VARIABLES = frozenset({"gf_etc_hosts", "gf_slurm_files", "gf_slurm_tenants", "gf_ntp_servers", "gf_max_fail_percent",
                                 "gf_boot", "gf_networks", "gf_fabrics", "gf_gpu_power_limit_w", "ansible_user"})


def image_variables(site: Site, plan: Plan, image: TypeImage) -> dict[str, Any]:
    """The inventory variables the image's stand-in host receives (site-wide and its groups'), host lists and addresses left out."""
    view = controller_inventory(site, plan)
    out = dict(view["all"]["vars"])
    for group in sorted(image.groups):
        out.update(view["all"]["children"].get(group, {}).get("vars", {}))
    return {k: v for k, v in out.items() if k not in CONFIGURE_VARIABLES}


def image_key(site: Site, image: TypeImage, phase_files: dict[str, str], plan: Plan | None = None) -> str:
    """The hash of what the image depends on: the site's os, repositories and software, the node type, its role
    groups, the inventory variables its host receives but hosts and addresses (``image_variables``), the files of its phases
    (``PhaseInputs.files``), the builder, whether it is a test bed's, and its architecture (named apart from the node
    type's definition when foreign). Hosts, addresses and pools are not in it."""
    pools = {group_name("pool", p.name) for p in site.pools}
    plan = plan or build_plan(site)
    arch = site.node_types[image.node_type].cpu.arch
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
        **({} if arch == NATIVE else {"arch": arch}),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]



def images_root() -> Path:
    return cache_root() / IMAGES_DIR


@dataclass(frozen=True)
class BuiltImage:
    key: str
    path: Path
    node_type: str
    cached: bool          # True: found in the cache, nothing built
    arch: str = NATIVE    # its node type's cpu.arch

    def vm_image(self) -> Image:
        """The disk image with its kernel and initrd, as the test bed's launcher boots it (infra.vm)."""
        return Image(disk=self.path / "disk.qcow2", kernel=self.path / "vmlinuz", initrd=self.path / "initrd.img",
                     disk_format="qcow2", arch=self.arch)



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
