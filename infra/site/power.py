"""The site's power draw and its power tree.

The draw: every host's node type, NVLink switch trays and fabric switches, then the facility's PUE. The tree: the
facility, then ``site.power.domains`` (halls, rows, PDUs), racks naming the domain that feeds them. A node type that
declares its GPUs' power-limit range (``gpu.power_limit_w``) draws ``power_kw - count x max + count x limit``; the
plan chooses one limit per such node type so that every domain's worst case (every node at its limit, the NVLink
switch trays in their racks) stays within its budget, and the facility's (the fabric switches too) within its
contracted power at the declared PUE.

How the limit is chosen: every node type with a range takes ``min + t x (default - min)`` watts for one share ``t``
in [0, 1], the largest that every budget allows. A domain's worst case is linear in ``t`` (its fixed draw plus ``t``
times what its GPUs add above their minimum), so ``t`` is the smallest of ``(budget - fixed) / added`` over the
domains, at most 1; rounded down to whole watts, every budget holds. A domain whose fixed draw (every GPU at its
minimum) is over its budget cannot be held by any limit: the site is refused, naming the domain and the figures.
Fabric switches are counted at the facility only (the site file does not say which rack holds them).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .fabric import FabricPlan, plan_fabric
from .index import SiteIndex
from .model import NodeType, Site
from .placement import place

FACILITY = "facility"


def gpu_kw(node_type: NodeType) -> tuple[float, float]:
    """(draw with every GPU at its minimum limit, what the GPUs add from minimum to default), in kW.
    A node type without a declared range draws its power_kw, fixed."""
    limit = node_type.gpu.power_limit_w if node_type.gpu else None
    if limit is None:
        return node_type.power_kw, 0.0
    count = node_type.gpu.count
    rest = node_type.power_kw - count * limit.max / 1000
    return rest + count * limit.min / 1000, count * (limit.default - limit.min) / 1000


def limit_w(node_type: NodeType, share: float) -> int | None:
    """The planned GPU power limit at ``share`` (whole watts, rounded down), or None without a declared range."""
    limit = node_type.gpu.power_limit_w if node_type.gpu else None
    if limit is None:
        return None
    return max(limit.min, math.floor(limit.min + share * (limit.default - limit.min) + 1e-9))


def planned_kw(node_type: NodeType, share: float) -> float:
    """A host's worst-case draw with its GPUs at the planned limit."""
    watts = limit_w(node_type, share)
    if watts is None:
        return node_type.power_kw
    return node_type.power_kw - node_type.gpu.count * (node_type.gpu.power_limit_w.max - watts) / 1000


def switch_trays_kw(node_type: NodeType, trays: int) -> float:
    """The switch trays of ``trays`` compute trays' whole NVLink domains."""
    nv = node_type.nvlink
    if nv is None or not nv.switch_tray_kw:
        return 0.0
    return trays // nv.trays * nv.switch_trays * nv.switch_tray_kw


@dataclass(frozen=True, slots=True)
class DomainLoad:
    """One domain of the tree (the facility first): its budget, its planned worst case, what is left."""
    name: str
    parent: str | None
    budget_kw: float            # the facility's: its contracted power divided by its PUE (the IT power it allows)
    worst_kw: float             # every node at its planned limit
    racks: int

    @property
    def headroom_kw(self) -> float:
        return round(self.budget_kw - self.worst_kw, 3)


@dataclass(frozen=True, slots=True)
class PowerPlan:
    share: float                        # t: where in [min, default] every limited node type stands (1: its default)
    limits_w: dict[str, int]            # node type -> planned GPU power limit, for node types declaring a range
    domains: tuple[DomainLoad, ...]     # the facility, then site.power.domains in the site's order
    problems: tuple[tuple[str, str], ...] = ()      # (field path, text): budgets no limit can hold


def plan_power(site: Site, host_types: Mapping[str, str], host_racks: Mapping[str, str | None],
               rack_domains: Mapping[str, str | None], fabrics: Iterable[FabricPlan]) -> PowerPlan:
    """The power tree's loads and the GPU power limits. ``host_types``: host -> node type; ``host_racks``: host ->
    its rack (None where unplaced: counted at the facility only); ``rack_domains``: rack -> its power domain."""
    power = site.site.power
    parents: dict[str, str | None] = {d.name: d.parent for d in power.domains}
    budgets = {FACILITY: power.facility_kw / power.pue, **{d.name: d.kw for d in power.domains}}
    fixed = dict.fromkeys(budgets, 0.0)
    added = dict.fromkeys(budgets, 0.0)
    racks_in = dict.fromkeys(budgets, 0)

    def chain(rack: str | None):
        at, seen = (rack_domains.get(rack) if rack is not None else None), set()
        while at is not None and at in parents and at not in seen:      # a loop or an unknown name: checks say so
            seen.add(at)
            yield at
            at = parents[at]
        yield FACILITY

    for rack in {r for r in host_racks.values() if r is not None}:
        for name in chain(rack):
            racks_in[name] += 1
    per_rack_type: dict[tuple[str | None, str], int] = {}
    for host, type_name in host_types.items():
        if type_name in site.node_types:
            key = (host_racks.get(host), type_name)
            per_rack_type[key] = per_rack_type.get(key, 0) + 1
    for (rack, type_name), count in per_rack_type.items():
        node_type = site.node_types[type_name]
        low, more = gpu_kw(node_type)
        trays = switch_trays_kw(node_type, count)
        for name in chain(rack):
            fixed[name] += count * low + trays
            added[name] += count * more
    fixed[FACILITY] += sum(f.power_kw for f in fabrics)

    share, problems = 1.0, []
    for name, budget in budgets.items():
        if fixed[name] > budget + 1e-9:
            problems.append((_path(site, name), _over(site, name, fixed[name], budget, any(added.values()))))
        elif added[name] > 0:
            share = min(share, (budget - fixed[name]) / added[name])
    share = max(0.0, share) if not problems else 0.0
    limits = {t: w for t, nt in site.node_types.items() if (w := limit_w(nt, share)) is not None}
    worst = dict.fromkeys(budgets, 0.0)
    for (rack, type_name), count in per_rack_type.items():
        node_type = site.node_types[type_name]
        for name in chain(rack):
            worst[name] += count * planned_kw(node_type, share) + switch_trays_kw(node_type, count)
    worst[FACILITY] += sum(f.power_kw for f in fabrics)
    domains = tuple(DomainLoad(name, None if name == FACILITY else parents[name] or FACILITY, round(budgets[name], 3),
                               round(worst[name], 3), racks_in[name]) for name in budgets)
    return PowerPlan(round(share, 6), limits, domains, tuple(problems))


def site_power_plan(index: SiteIndex) -> PowerPlan:
    """The power plan of a site as the plan places it (placement and fabric plans computed once per index)."""
    site = index.site
    placement = place(index, [])
    fabrics = [plan_fabric(index, i, [])[0] for i in range(len(site.fabrics))]
    host_types = {host: pool.type for pool in site.pools for host in pool.hosts}
    racks = {host: rack for host, (rack, _) in placement.hosts.items()}
    rack_domains = {name: site.racks[i].domain for name, i in index.racks.items()}
    return plan_power(site, host_types, racks, rack_domains, fabrics)


def _path(site: Site, name: str) -> str:
    if name == FACILITY:
        return "site.power.facility_kw"
    index = next(i for i, d in enumerate(site.site.power.domains) if d.name == name)
    return f"site.power.domains[{index}].kw"


def _over(site: Site, name: str, low_kw: float, budget_kw: float, limited: bool) -> str:
    at = "with every GPU at its minimum power limit " if limited else ""
    if name == FACILITY:
        pue = site.site.power.pue
        return (f"the site needs {low_kw * pue:g} kW {at}(IT load {low_kw:g} kW x PUE {pue:g}), more than the contracted "
                f"{site.site.power.facility_kw:g} kW")
    return f"power domain {name!r} needs {low_kw:g} kW {at}(its racks' worst case), more than its {budget_kw:g} kW"
