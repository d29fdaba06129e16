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
from .problems import printable
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


@dataclass(frozen=True, slots=True)
class _Loads:
    """The tree and what its hosts draw: each domain's budget, fixed draw (every GPU at its minimum limit, the NVLink
    switch trays, the facility's fabric switches) and what its GPUs add from minimum to default."""
    parents: dict[str, str | None]
    rack_domains: Mapping[str, str | None]
    budgets: dict[str, float]
    fixed: dict[str, float]
    added: dict[str, float]
    racks_in: dict[str, int]
    per_rack_type: dict[tuple[str | None, str], int]       # (rack or None, node type) -> hosts

    def chain(self, rack: str | None):
        """The domains feeding ``rack``, its own first, the facility last (None: the facility only)."""
        at, seen = (self.rack_domains.get(rack) if rack is not None else None), set()
        while at is not None and at in self.parents and at not in seen:     # a loop or an unknown name: checks say so
            seen.add(at)
            yield at
            at = self.parents[at]
        yield FACILITY


def _loads(site: Site, host_types: Mapping[str, str], host_racks: Mapping[str, str | None],
           rack_domains: Mapping[str, str | None], fabrics: Iterable[FabricPlan]) -> _Loads:
    power = site.site.power
    budgets = {FACILITY: power.facility_kw / power.pue, **{d.name: d.kw for d in power.domains}}
    loads = _Loads({d.name: d.parent for d in power.domains}, rack_domains, budgets, dict.fromkeys(budgets, 0.0),
                   dict.fromkeys(budgets, 0.0), dict.fromkeys(budgets, 0), {})
    for rack in {r for r in host_racks.values() if r is not None}:
        for name in loads.chain(rack):
            loads.racks_in[name] += 1
    for host, type_name in host_types.items():
        if type_name in site.node_types:
            key = (host_racks.get(host), type_name)
            loads.per_rack_type[key] = loads.per_rack_type.get(key, 0) + 1
    for (rack, type_name), count in loads.per_rack_type.items():
        node_type = site.node_types[type_name]
        low, more = gpu_kw(node_type)
        trays = switch_trays_kw(node_type, count)
        for name in loads.chain(rack):
            loads.fixed[name] += count * low + trays
            loads.added[name] += count * more
    loads.fixed[FACILITY] += sum(f.power_kw for f in fabrics)
    return loads


def _share(site: Site, loads: _Loads) -> tuple[float, list[tuple[str, str]]]:
    """The largest share every budget allows (at most 1), and the budgets no limit can hold."""
    share, problems = 1.0, []
    for name, budget in loads.budgets.items():
        if loads.fixed[name] > budget + 1e-9:
            problems.append((_path(site, name), _over(site, name, loads.fixed[name], budget, any(loads.added.values()))))
        elif loads.added[name] > 0:
            share = min(share, (budget - loads.fixed[name]) / loads.added[name])
    return (max(0.0, share) if not problems else 0.0), problems


def plan_power(site: Site, host_types: Mapping[str, str], host_racks: Mapping[str, str | None],
               rack_domains: Mapping[str, str | None], fabrics: Iterable[FabricPlan]) -> PowerPlan:
    """The power tree's loads and the GPU power limits. ``host_types``: host -> node type; ``host_racks``: host ->
    its rack (None where unplaced: counted at the facility only); ``rack_domains``: rack -> its power domain."""
    fabrics = list(fabrics)
    loads = _loads(site, host_types, host_racks, rack_domains, fabrics)
    share, problems = _share(site, loads)
    limits = {t: w for t, nt in site.node_types.items() if (w := limit_w(nt, share)) is not None}
    worst = dict.fromkeys(loads.budgets, 0.0)
    for (rack, type_name), count in loads.per_rack_type.items():
        node_type = site.node_types[type_name]
        for name in loads.chain(rack):
            worst[name] += count * planned_kw(node_type, share) + switch_trays_kw(node_type, count)
    worst[FACILITY] += sum(f.power_kw for f in fabrics)
    domains = tuple(DomainLoad(name, None if name == FACILITY else loads.parents[name] or FACILITY,
                               round(loads.budgets[name], 3), round(worst[name], 3), loads.racks_in[name])
                    for name in loads.budgets)
    return PowerPlan(round(share, 6), limits, domains, tuple(problems))


class CapRefused(ValueError):
    """A power cap the site cannot take: the option at fault (``--domain``, ``--cap``) and why, in a sentence."""

    def __init__(self, option: str, text: str):
        super().__init__(f"{option}: {text}")
        self.option, self.text = option, text


@dataclass(frozen=True, slots=True)
class PowerCap:
    """A domain held to ``percent`` of its budget: the GPU limits of the hosts its subtree feeds."""
    domain: str
    percent: float
    share: float                        # t_d: the capped share, never above the planned one
    limits_w: dict[str, int]            # node type -> capped GPU power limit, for the range-declaring types it feeds
    hosts: dict[str, str]               # host -> node type: the GPU hosts with a range whose racks the domain feeds
    budget_kw: float
    allowed_kw: float                   # percent of the budget
    fixed_kw: float                     # every GPU of the domain at its minimum limit


def cap_power(site: Site, host_types: Mapping[str, str], host_racks: Mapping[str, str | None],
              rack_domains: Mapping[str, str | None], fabrics: Iterable[FabricPlan], domain: str,
              percent: float) -> PowerCap:
    """The limits that hold ``domain`` (``facility``: the whole site) to ``percent`` of its budget: its hosts at
    ``limit_w(type, t_d)``, ``t_d = min(planned share, (percent x budget - fixed) / added)``; hosts outside its
    subtree keep their planned limits. 100 gives back the planned limits. Raises CapRefused (an unknown domain, a
    percentage outside 1..100, a domain that feeds no GPU host with a range, a cap under the domain's draw at minimum
    limits)."""
    loads = _loads(site, host_types, host_racks, rack_domains, fabrics)
    if domain not in loads.budgets:
        raise CapRefused("--domain", f"{printable(repr(domain)[:80])} is not a power domain of the site "
                                     f"(site.power.domains): {', '.join(loads.budgets)}")
    if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not 1 <= percent <= 100:
        shown = f"{percent:g}" if isinstance(percent, (int, float)) else printable(repr(percent)[:40])
        raise CapRefused("--cap", f"{shown} is not a percentage from 1 to 100")
    planned, _ = _share(site, loads)
    fed = {host: t for host, t in host_types.items() if t in site.node_types
           and limit_w(site.node_types[t], planned) is not None and domain in loads.chain(host_racks.get(host))}
    if not fed:
        raise CapRefused("--domain", f"{'the facility' if domain == FACILITY else f'power domain {domain!r}'} feeds no "
                                     f"GPU host with a power-limit range (gpu.power_limit_w): nothing to cap")
    budget, fixed, added = loads.budgets[domain], loads.fixed[domain], loads.added[domain]
    allowed = percent / 100 * budget
    if fixed > allowed + 1e-9:
        what = "the facility" if domain == FACILITY else f"power domain {domain!r}"
        of = " of IT power (facility_kw / pue)" if domain == FACILITY else ""
        raise CapRefused("--cap", f"{what} needs {round(fixed, 3):g} kW with every GPU at its minimum power limit, more "
                                  f"than the {round(allowed, 3):g} kW a cap of {percent:g} % of its {round(budget, 3):g} kW"
                                  f"{of} allows")
    share = min(planned, (allowed - fixed) / added) if added > 0 else planned
    limits = {t: limit_w(site.node_types[t], share) for t in sorted(set(fed.values()))}
    return PowerCap(domain, percent, share, limits, fed, round(budget, 3), round(allowed, 3), round(fixed, 3))


def site_power_plan(index: SiteIndex) -> PowerPlan:
    """The power plan of a site as the plan places it (placement and fabric plans computed once per index)."""
    return plan_power(*_site_inputs(index))


def site_power_cap(index: SiteIndex, domain: str, percent: float) -> PowerCap:
    """``cap_power`` of the site as the plan places it."""
    return cap_power(*_site_inputs(index), domain, percent)


def _site_inputs(index: SiteIndex) -> tuple[Site, dict[str, str], dict[str, str | None], dict[str, str | None],
                                            list[FabricPlan]]:
    site = index.site
    placement = place(index, [])
    fabrics = [plan_fabric(index, i, [])[0] for i in range(len(site.fabrics))]
    host_types = {host: pool.type for pool in site.pools for host in pool.hosts}
    racks = {host: rack for host, (rack, _) in placement.hosts.items()}
    rack_domains = {name: site.racks[i].domain for name, i in index.racks.items()}
    return site, host_types, racks, rack_domains, fabrics


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
