"""What a change to the site file does: each changed field with its impact class and the hosts it affects, and the
resulting class of every host. Pure: two validated sites and their plans in, a ``SiteDiff`` out; nothing is touched.

A field's class comes from the model (``infra.site.impact``); the hosts it affects come from the plans, by where the
field sits (a node type's field: the hosts of pools of that type; a partition's: that partition's hosts; the driver:
the GPU hosts). The plans are also compared directly, for what only they show: hosts added or removed, and hosts
whose address or InfiniBand partitions moved whichever field moved them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..site.hostlists import compress, expand
from ..site.impact import DRAIN, LIVE, NONE, REPLACE, Impact, field_impact, submodels
from ..site.model import Site
from ..site.revision import site_at
from . import build_plan, group_name
from .model import Plan

NEW, REMOVED, NOTHING = "new", "removed", "nothing"
HOST_CLASSES = (NOTHING, *(str(i) for i in Impact if i is not NONE), NEW, REMOVED)
"""What a host needs, in the order a plan lists them: nothing, live ... replace, or it is new, or removed."""

Step = str | tuple[str | int]        # a field name or dict key; a 1-tuple is a list entry, by name or index


@dataclass(frozen=True)
class Change:
    path: tuple[Step, ...]
    old: Any                          # the value as the site file holds it; None when unset or absent
    new: Any
    impact: Impact
    hosts: tuple[str, ...] = ()       # hosts in both plans it affects, in plan order
    new_hosts: tuple[str, ...] = ()   # hosts it adds
    removed_hosts: tuple[str, ...] = ()

    @property
    def field(self) -> str:
        """``pools[train].hosts``, ``node_types.hgx-h200.memory_gb``."""
        out = ""
        for step in self.path:
            out += f"[{step[0]}]" if isinstance(step, tuple) else (f".{step}" if out else step)
        return out


@dataclass(frozen=True)
class SiteDiff:
    site: str
    changes: tuple[Change, ...]
    hosts: dict[str, str]             # every host of either plan -> one of HOST_CLASSES

    def by_class(self) -> dict[str, tuple[str, ...]]:
        """HOST_CLASSES -> the hosts in that class (new plan order, removed hosts last); empty classes left out."""
        out: dict[str, list[str]] = {}
        for host, cls in self.hosts.items():
            out.setdefault(cls, []).append(host)
        return {c: tuple(out[c]) for c in HOST_CLASSES if c in out}


def diff_sites(old: Site, old_plan: Plan, new: Site, new_plan: Plan) -> SiteDiff:
    """Every change from ``old`` to ``new``, with its class and hosts, and each host's resulting class."""
    raw: list[tuple[tuple[Step, ...], Any, Any, Impact]] = []
    _walk(Site, old, new, (), raw)
    scope = _Scope(old, old_plan, new, new_plan)
    changes = [scope.change(path, a, b, impact) for path, a, b, impact in raw]
    changes += scope.plan_changes(changes)
    hosts: dict[str, str] = {}
    for host in new_plan.hosts:
        if host not in old_plan.hosts:
            hosts[host] = NEW
            continue
        worst = max((c.impact for c in changes if host in c.hosts), default=NONE)
        hosts[host] = NOTHING if worst is NONE else str(worst)
    hosts.update((h, REMOVED) for h in old_plan.hosts if h not in new_plan.hosts)
    return SiteDiff(new.site.name, tuple(changes), hosts)


# --- the fields that changed ---------------------------------------------------------


def diff_against(site_path: str | Path, ref: str, site: Site, plan: Plan) -> tuple[SiteDiff, str]:
    """``site`` (validated from ``site_path``, with its ``plan``) against its earlier version ``ref`` (a git revision,
    a run directory, a site file: ``infra.site.revision``), and where that version came from. The one path both
    ``gigafactory diff`` and ``gigafactory up --against`` take. Raises RevisionInvalid or SiteInvalid (the earlier
    version, ``REF:path`` as its source); files the site file names are read beside ``site_path`` for both sides."""
    old, source = site_at(Path(site_path), ref)
    return diff_sites(old, build_plan(old, source), site, plan), source


def _walk(model: type[BaseModel], old: BaseModel, new: BaseModel, path: tuple, out: list) -> None:
    for name, info in model.model_fields.items():
        a, b = getattr(old, name), getattr(new, name)
        if a != b:
            _compare(info.annotation, field_impact(model, name), a, b, (*path, info.alias or name), out)


def _compare(annotation: Any, impact: Impact | None, a: Any, b: Any, path: tuple, out: list) -> None:
    """Descend into sub-models, mappings and lists of entries; anything else changed as a whole."""
    assert impact is not None, f"{path}: no impact class (tests/test_impact.py)"
    if isinstance(a, BaseModel) and type(a) is type(b):
        _walk(type(a), a, b, path, out)
    elif isinstance(a, dict) and isinstance(b, dict):
        for key in dict.fromkeys([*a, *b]):
            if a.get(key) != b.get(key):
                _compare(annotation, impact, a.get(key), b.get(key), (*path, key), out)
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and submodels(annotation):
        olds, news = _entries(a), _entries(b)
        for key in dict.fromkeys([*olds, *news]):
            if olds.get(key) != news.get(key):
                _compare(annotation, impact, olds.get(key), news.get(key), (*path, (key,)), out)
    else:
        out.append((path, a, b, impact))


def _entries(items: Iterable[Any]) -> dict[str | int, Any]:
    """List entries by name where they have one (pools, partitions, tenants), else by position (racks)."""
    items = list(items)
    if items and all(isinstance(getattr(i, "name", None), str) for i in items):
        return {i.name: i for i in items}
    return dict(enumerate(items))


# --- the hosts each change affects ---------------------------------------------------


REPOSITORY_USERS = {"debian": None, "debian_security": None, "cuda": ("gpu",), "doca": ("rdma",), "slurm": ("slurm",),
                    "enroot": ("slurm_compute", "slurm_login"), "charts": ("k8s_control_plane",),
                    "kubernetes": ("k8s_control_plane", "k8s_worker"), "images": ("k8s_control_plane", "k8s_worker")}
"""Groups whose roles install from each mirror (None: every host)."""
SOFTWARE_USERS = {"nvidia_driver": ("gpu",), "cuda": ("gpu",), "rdma": ("rdma",), "slurm": ("slurm",)}


class _Scope:
    """The hosts a change affects, read from both plans."""

    def __init__(self, old: Site, old_plan: Plan, new: Site, new_plan: Plan):
        self.old, self.new, self.old_plan, self.new_plan = old, new, old_plan, new_plan
        self.order = {h: i for i, h in enumerate([*new_plan.hosts, *(h for h in old_plan.hosts if h not in new_plan.hosts)])}

    def change(self, path: tuple, a: Any, b: Any, impact: Impact) -> Change:
        hosts = set() if impact is NONE else self.hosts(path)
        return self._split(path, _plain(a), _plain(b), impact, hosts)

    def _split(self, path: tuple, a: Any, b: Any, impact: Impact, hosts: set[str]) -> Change:
        def ordered(names: Iterable[str]) -> tuple[str, ...]:
            return tuple(sorted(names, key=self.order.__getitem__))
        both = {h for h in hosts if h in self.old_plan.hosts and h in self.new_plan.hosts}
        return Change(path, a, b, impact, ordered(both), ordered(h for h in hosts if h not in self.old_plan.hosts),
                      ordered(h for h in hosts if h not in self.new_plan.hosts))

    def group(self, *names: str) -> set[str]:
        return {h for plan in (self.old_plan, self.new_plan) for n in names for h in plan.groups.get(n, ())}

    def all(self) -> set[str]:
        return set(self.old_plan.hosts) | set(self.new_plan.hosts)

    def moved(self, network: str | None = None) -> set[str]:
        """Hosts in both plans whose address on ``network`` (any site network when None) differs."""
        return {h for h, o in self.old_plan.hosts.items() if h in self.new_plan.hosts
                and (o.addresses != self.new_plan.hosts[h].addresses if network is None
                     else o.addresses.get(network) != self.new_plan.hosts[h].addresses.get(network))}

    def hosts(self, path: tuple) -> set[str]:  # noqa: C901, PLR0911, PLR0912 -- one branch per section of the site file
        section, rest = path[0], path[1:]
        first = rest[0] if rest else None
        key = first[0] if isinstance(first, tuple) else first
        field = rest[1] if len(rest) > 1 else None
        if section == "site":
            return self.all() if key in ("name", "timezone", "ntp_servers") else set()
        if section in ("os", "testbed", "storage"):
            return self.all()
        if section == "repositories":
            users = REPOSITORY_USERS.get(key) if key else None
            return self.all() if users is None else self.group(*users)
        if section == "software":
            return self.group(*SOFTWARE_USERS[key]) if key else self.all()
        if section == "networks":
            return self.moved(key) if field in ("cidr", "reserved") else self.all()
        if section == "fabrics":
            if field in ("switch", "topology", "scalable_unit"):
                return self.group("slurm_controller")        # topology.conf
            sm = {h for site in (self.old, self.new) for f in site.fabrics
                  if f.name == key and f.subnet_manager for h in f.subnet_manager.hosts}
            return sm if field == "subnet_manager" else self.group(group_name("fabric", key)) | sm
        if section == "node_types":
            return self.group(group_name("type", key)) if key else set()
        if section == "racks":
            return {h for h, o in self.old_plan.hosts.items() if h in self.new_plan.hosts
                    and (o.rack, o.rack_unit) != (self.new_plan.hosts[h].rack, self.new_plan.hosts[h].rack_unit)}
        if section == "pools":
            members = [set(plan.groups.get(group_name("pool", key), ())) for plan in (self.old_plan, self.new_plan)]
            return members[0] ^ members[1] if field == "hosts" else members[0] | members[1]
        if section == "slurm":
            if key == "partitions" and len(rest) > 1:
                name = rest[1][0]
                return {h for plan in (self.old_plan, self.new_plan) if plan.slurm
                        for p in plan.slurm.partitions if p.name == name for h in expand(p.nodes)}
            return self.group({"login": "slurm_login", "state_save_location": "slurm_controller"}.get(key, "slurm"))
        if section == "kubernetes":
            members = [set(plan.groups.get(group_name("k8s", key), ())) for plan in (self.old_plan, self.new_plan)]
            if field == "addons":
                return set()                                 # objects through the API
            return members[0] ^ members[1] if field == "workers" else members[0] | members[1]
        if section == "tenants":
            if field in ("fabric_isolation", "pools", "partition_key"):
                pools = {p for site in (self.old, self.new) for t in site.tenants if t.name == key for p in t.pools}
                return self.group(*(group_name("pool", p) for p in pools))
            # accounts, quotas and shares: sacctmgr on the primary controller (slurm_tenants); namespaces and their
            # quotas through a control plane (the kubernetes phase); a tenant's storage share: nothing on a host
            where = {"slurm": ("slurm_controller",), "kubernetes": ("k8s_control_plane",), "storage_tb": ()}
            return self.group(*where.get(field, ("slurm_controller", "k8s_control_plane")))
        if section == "energy":
            return self.group({"gpu": "gpu"}.get(key, "slurm_compute")) if key in ("node", "gpu", "node_frequency_s") else set()
        return set()                                         # policy, billing, provisioning: nothing on a host

    def plan_changes(self, changes: list[Change]) -> list[Change]:
        """What only the plans show: hosts whose address moved (replace), whose InfiniBand partitions changed
        (drain), or that hold a Slurm configuration that changed (live: every host of group ``slurm`` keeps
        slurm.conf, and slurmctld learns node and partition lines on ``scontrol reconfigure``), where no change
        of the site file already claims them at that class or above."""
        def claimed(impact: Impact) -> set[str]:
            return {h for c in changes if c.impact >= impact for h in c.hosts}
        out = []
        moved = self.moved() - claimed(REPLACE)
        if moved:
            first = min(moved, key=self.order.__getitem__)
            old, new = self.old_plan.hosts[first].addresses, self.new_plan.hosts[first].addresses
            out.append(self._split(("(plan)", "addresses"), {first: old}, {first: new}, REPLACE, moved))
        keyed = self._partition_members(self.old_plan), self._partition_members(self.new_plan)
        repartitioned = {h for h in self.old_plan.hosts if h in self.new_plan.hosts
                         and keyed[0].get(h) != keyed[1].get(h)} - claimed(DRAIN)
        if repartitioned:
            out.append(self._split(("(plan)", "fabric_partitions"), None, None, DRAIN, repartitioned))
        if self.old_plan.slurm is not None and self.new_plan.slurm is not None \
                and self.old_plan.slurm != self.new_plan.slurm:
            holders = {h for h in self.group("slurm") if h in self.old_plan.hosts and h in self.new_plan.hosts}
            holders -= claimed(LIVE)
            if holders:
                differ = [f.name for f in fields(self.new_plan.slurm)
                          if getattr(self.old_plan.slurm, f.name) != getattr(self.new_plan.slurm, f.name)]
                out.append(self._split(("(plan)", "slurm_conf"), None, differ, LIVE, holders))
        return out

    @staticmethod
    def _partition_members(plan: Plan) -> dict[str, frozenset[tuple[str, str, str]]]:
        """host -> its InfiniBand partitions as (fabric, P_Key, full or limited)."""
        out: dict[str, set] = {}
        for fabric, parts in plan.partitions.items():
            for p in parts:
                for kind, members in (("full", p.full), ("limited", p.limited)):
                    for h in members:
                        out.setdefault(h, set()).add((fabric, p.key, kind))
        return {h: frozenset(s) for h, s in out.items()}


def _plain(value: Any) -> Any:
    """A value as JSON holds it: models as the site file writes them, hostlists compressed, paths as strings."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    if isinstance(value, tuple) and value and all(isinstance(v, str) for v in value):
        return compress(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value
