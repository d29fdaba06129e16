"""The plan as one self-contained HTML page (``gigafactory plan SITE --html FILE``, docs/pages.md): rack elevations,
the fabric, the power tree and the tenants, drawn as inline SVG by a Jinja2 template with autoescape on. Past
``FULL_RACKS`` racks, racks of identical content share one drawing ("1,200 racks like this")."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ..plan import Plan
from ..site.hostlists import compress
from ..site.model import Site
from .page import PALETTE, page_environment
from .summary import FULL_RACKS

U_PX = 8                  # one rack unit, in SVG pixels
RACK_W = 170              # a rack's drawing width


@dataclass(frozen=True, slots=True)
class Slot:
    """What fills some units of a rack: a host of a pool, or an NVLink domain's switch trays (``pool`` None)."""
    unit: int                 # lowest unit, from 1 at the bottom
    height: int               # units
    pool: str | None
    host: str                 # the host's name (in a shared drawing: the first rack's), or "" for switch trays
    node_type: str


@dataclass(frozen=True, slots=True)
class Outline:
    """An NVLink domain around its trays and switch trays."""
    name: str
    unit: int
    height: int


@dataclass(slots=True)
class RackDrawing:
    """One drawing: a rack, or every rack of one kind (``names``) past ``FULL_RACKS``."""
    names: list[str]
    units: int
    slots: tuple[Slot, ...]
    outlines: tuple[Outline, ...]
    used_kw: float
    limit_kw: float
    used_units: int
    power_domain: str
    pools: dict[str, int] = field(default_factory=dict)      # pool -> hosts in one rack of the drawing
    # where the rack declares cooling (racks[].cooling): the heat its hosts give to liquid and to air, and its limits
    cooling: tuple[float, float, float, float] | None = None  # liquid kW, liquid limit, air kW, air limit

    @property
    def label(self) -> str:
        return f"rack {self.names[0]}" if len(self.names) == 1 else f"{len(self.names):,} racks like this"

    @property
    def hostlist(self) -> str:
        return compress(self.names)


def _rack_contents(site: Site, plan: Plan) -> dict[str, tuple[tuple[Slot, ...], tuple[Outline, ...]]]:
    """Each rack's hosts in their units and its NVLink domains with their switch trays, lowest unit first."""
    types = {pool.name: pool.type for pool in site.pools}
    slots: dict[str, list[Slot]] = {name: [] for name in plan.racks}
    for host in plan.hosts.values():
        if host.rack in slots:
            node_type = site.node_types[host.node_type]
            slots[host.rack].append(Slot(host.rack_unit, node_type.rack_units, host.pool, host.name, host.node_type))
    outlines: dict[str, list[Outline]] = {name: [] for name in plan.racks}
    for domain in plan.domains:
        node_type = site.node_types[types[domain.pool]]
        nv = node_type.nvlink
        first = plan.hosts[domain.hosts[0]].rack_unit
        top = plan.hosts[domain.hosts[-1]].rack_unit + node_type.rack_units
        switch_units = nv.switch_trays * nv.switch_tray_units if nv else 0
        if switch_units:
            slots[domain.rack].append(Slot(top, switch_units, None, "", f"{nv.switch_trays} NVLink switch trays"))
        outlines[domain.rack].append(Outline(domain.name, first, top + switch_units - first))
    return {name: (tuple(sorted(s, key=lambda x: x.unit)), tuple(outlines[name])) for name, s in slots.items()}


def rack_drawings(site: Site, plan: Plan, full: int = FULL_RACKS) -> list[RackDrawing]:
    """The racks' drawings in site order: one per rack up to ``full`` racks, else one per kind of rack (same hosts'
    pools and types in the same units, same NVLink domains, load, limits and power domain)."""
    feeds = {name: rack.domain or "facility" for rack in site.racks for name in rack.names}
    cooled = {name: rack.cooling is not None for rack in site.racks for name in rack.names}
    contents = _rack_contents(site, plan)
    kinds: dict[tuple, RackDrawing] = {}
    for name, use in plan.racks.items():
        slots, outlines = contents[name]
        key: tuple = (name,) if len(plan.racks) <= full else (
            tuple((s.unit, s.height, s.pool, s.node_type) for s in slots),
            tuple((o.unit, o.height) for o in outlines), round(use.used.kw, 3), round(use.used.liquid_kw, 3),
            use.limits, feeds[name])
        drawing = kinds.get(key)
        if drawing is None:
            kinds[key] = RackDrawing([name], use.limits.units, slots, outlines, use.used.kw, use.limits.kw,
                                     use.used.units, feeds[name],
                                     dict(Counter(s.pool for s in slots if s.pool is not None)), _cooling(use, cooled[name]))
        else:
            drawing.names.append(name)
    return list(kinds.values())


def _cooling(use, declared: bool) -> tuple[float, float, float, float] | None:
    if not declared:
        return None
    return (round(use.used.liquid_kw, 3), use.limits.liquid_kw, round(use.used.air_kw, 3), use.limits.air_kw)


@dataclass(frozen=True, slots=True)
class PowerRow:
    name: str
    depth: int
    budget_kw: float
    worst_kw: float
    headroom_kw: float
    racks: int

    @property
    def share(self) -> float:
        return min(self.worst_kw / self.budget_kw, 1.0) if self.budget_kw else 1.0


def power_rows(plan: Plan) -> list[PowerRow]:
    """The power tree depth first: each domain under its parent, in the site's order."""
    if plan.power is None:
        return []
    children: dict[str | None, list] = {}
    for d in plan.power.domains:
        children.setdefault(d.parent, []).append(d)
    rows: list[PowerRow] = []
    seen: set[str] = set()

    def walk(parent: str | None, depth: int) -> None:
        for d in children.get(parent, []):
            if d.name not in seen:
                seen.add(d.name)
                rows.append(PowerRow(d.name, depth, d.budget_kw, d.worst_kw, d.headroom_kw, d.racks))
                walk(d.name, depth + 1)

    walk(None, 0)
    return rows


@dataclass(frozen=True, slots=True)
class TenantRow:
    name: str
    hosts: int
    hostlist: str
    pools: tuple[str, ...]
    slurm: str
    partitions: str
    fabric_partition: str
    kubernetes: str
    storage: str
    billing: str


def tenant_rows(site: Site, plan: Plan) -> list[TenantRow]:
    """Each tenant: its own hosts, its Slurm account's quotas and partitions, its fabric partition, its namespace."""
    pools = {pool.name: pool for pool in site.pools}
    keys = {p.tenant: f"{p.name} ({p.key})" for parts in plan.partitions.values() for p in parts if p.tenant}
    shared = next((f"{p.name} ({p.key})" for parts in plan.partitions.values() for p in parts
                   if p.tenant is None and not p.default), "")
    slurm_partitions = ", ".join(p.name for p in plan.slurm.partitions) if plan.slurm else ""
    rows = []
    for t in site.tenants:
        hosts = [h for name in t.pools if name in pools for h in pools[name].hosts]
        s, k = t.slurm, t.kubernetes
        quotas = ", ".join(f"{n} {v:,}" for n, v in (("GPUs", s.gpus), ("CPUs", s.cpus), ("nodes", s.nodes))
                           if v is not None) if s else ""
        billing = ""
        if t.billing is not None:
            billing = t.billing.class_ or ""
            if t.billing.prepaid is not None:
                billing += f"{', ' if billing else ''}prepaid {t.billing.prepaid.amount:,} {t.billing.prepaid.currency}"
        rows.append(TenantRow(
            t.name, len(hosts), compress(hosts) if hosts else "shared", tuple(t.pools),
            f"account {s.account}, fairshare {s.fairshare}{'; ' + quotas if quotas else ''}" if s else "",
            slurm_partitions if s else "", keys.get(t.name, shared),
            f"{k.cluster}/{k.namespace}, {k.gpus:,} GPUs, group {k.group or t.name}" if k else "",
            ", ".join(f"{name} {tb:g} TB" for name, tb in t.storage_tb.items()), billing))
    return rows


def plan_page(site: Site, plan: Plan) -> str:
    """The whole page, one self-contained HTML document."""
    pools = [(pool.name, PALETTE[i % len(PALETTE)], pool.type, len(pool.hosts)) for i, pool in enumerate(site.pools)]
    fabrics = [(f, Counter(len(su) for su in f.scalable_units)) for f in plan.fabrics]
    return page_environment().get_template("plan_page.html.j2").render(
        site=site, plan=plan, capacity=plan.capacity, pools=pools, colours={p[0]: p[1] for p in pools},
        drawings=rack_drawings(site, plan), power=power_rows(plan), fabrics=fabrics, tenants=tenant_rows(site, plan),
        U=U_PX, W=RACK_W)
