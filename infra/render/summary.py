"""A readable summary of a plan, as rich tables."""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.table import Table

from ..plan import Plan
from ..site.hostlists import compress
from ..site.model import Rack, Site
from ..site.placement import RackUse

FULL_RACKS = 64      # up to this many racks the report lists each; past it, one row per kind of rack


def _power_limit(rack: Rack) -> str:
    """Where a rack's power limit comes from: its feed, or its power shelves when they give less."""
    if rack.power_shelves is None:
        return "feed"
    shelves = f"{rack.power_shelves.count} x {rack.power_shelves.kw:g} kW shelves"
    if rack.power_kw <= rack.power_shelves.count * rack.power_shelves.kw:
        return f"feed; {shelves}"
    return f"{shelves}; feed {rack.power_kw:g} kW"


def _of(used: float, limit: float) -> str:
    return f"{used:,.1f} of {limit:,g} kW"


def _kind(use: RackUse, rack: Rack) -> tuple:
    """What racks of one kind share: limits, planned load, how many domains, where the power limit comes from."""
    return (use.limits, round(use.used.kw, 3), use.used.units, round(use.used.liquid_kw, 3), len(use.domains),
            _power_limit(rack))


def rack_lines(site: Site, plan: Plan, full: int = FULL_RACKS) -> list[str]:
    """Each rack's NVLink domains and planned load against its limits (power, units, liquid, air), in site order; past
    ``full`` racks, one line per kind of rack: ``1,400 racks n[0001-1400]: 1 NVLink domain each, 141.3 of 150 kW ...``."""
    declared = {name: rack for rack in site.racks for name in rack.names}
    kinds: dict[tuple, list[str]] = {}
    for name, use in plan.racks.items():
        kinds.setdefault((name,) if len(plan.racks) <= full else _kind(use, declared[name]), []).append(name)
    out = []
    for names in kinds.values():
        use = plan.racks[names[0]]
        lim, used, n = use.limits, use.used, len(use.domains)
        if len(names) == 1:
            head = f"rack {names[0]}"
            domains = f"NVLink domain{'s' if n > 1 else ''} {', '.join(use.domains)}" if n else ""
        else:
            head = f"{len(names):,} racks {compress(names)}"
            domains = f"{n} NVLink domain{'s' if n > 1 else ''} each" if n else ""
        cooling = (f"liquid {_of(used.liquid_kw, lim.liquid_kw)}, " if lim.liquid_kw or used.liquid_kw else "") + \
            f"air {_of(used.air_kw, lim.air_kw)}"
        parts = [domains, f"{_of(used.kw, lim.kw)} ({_power_limit(declared[names[0]])})", f"{used.units} of {lim.units} U", cooling]
        out.append(f"{head}: " + ", ".join(p for p in parts if p))
    return out


def domain_lines(plan: Plan) -> list[str]:
    """NVLink domains per pool: how many, of how many trays, in which racks."""
    pools: dict[str, list] = {}
    for domain in plan.domains:
        pools.setdefault(domain.pool, []).append(domain)
    return [f"pool {pool}: {len(ds):,} NVLink domains of {len(ds[0].hosts)} trays in racks {compress(sorted({d.rack for d in ds}))}"
            for pool, ds in pools.items()]


def power_lines(plan: Plan) -> list[str]:
    """The power tree, the facility first: each domain's budget, planned worst case and headroom; the GPU power
    limits the plan chose (where node types declare a range)."""
    if plan.power is None:
        return []
    out = [f"{'  ' * _depth(plan, d.name)}{d.name}: {_of(d.worst_kw, d.budget_kw)}"
           f"{' (IT: contracted / PUE)' if d.parent is None else ''}, headroom {d.headroom_kw:,.1f} kW, "
           f"{d.racks:,} rack{'s' if d.racks != 1 else ''}" for d in plan.power.domains]
    out += [f"GPU power limit of {t}: {w} W (share {plan.power.share:.2f} of min..default)" for t, w in plan.power.limits_w.items()]
    return out


def _depth(plan: Plan, name: str) -> int:
    parents = {d.name: d.parent for d in plan.power.domains}
    depth, at, seen = 0, parents.get(name), {name}
    while at is not None and at not in seen:
        seen.add(at)
        depth, at = depth + 1, parents.get(at)
    return depth


def print_summary(site: Site, plan: Plan, console: Console | None = None) -> None:
    console = console or Console()
    c = plan.capacity
    power = Table(title=f"{plan.site}: capacity and power", show_header=False)
    power.add_column(style="bold")
    power.add_column(justify="right")
    for label, value in (
        ("nodes", f"{c.nodes:,}"), ("GPUs", f"{c.gpus:,}"), ("racks used / declared", f"{c.racks_used} / {c.racks_declared}"),
        ("fabric switches", f"{c.switches:,}"), ("IT load", f"{c.it_kw:,.1f} kW"),
        ("facility (IT x PUE)", f"{c.facility_kw:,.1f} kW of {c.facility_budget_kw:,.0f} kW"),
        ("headroom", f"{c.headroom_kw:,.1f} kW"), ("renewable share", f"{c.renewable_share:.0%}"),
    ):
        power.add_row(label, value)
    console.print(power)

    pools = Table(title="pools")
    for col in ("pool", "type", "hosts", "count", "GPUs", "racks", "management"):
        pools.add_column(col)
    for pool in site.pools:
        hosts = [plan.hosts[h] for h in pool.hosts]
        racks = compress(sorted({h.rack for h in hosts}))
        gpus = len(hosts) * site.node_types[pool.type].gpus
        first, last = hosts[0].address(), hosts[-1].address()
        pools.add_row(pool.name, pool.type, compress(pool.hosts), str(len(hosts)), f"{gpus:,}", racks, f"{first} .. {last}")
    console.print(pools)

    console.print(f"[bold]racks[/bold] ({len(plan.racks):,}{'' if len(plan.racks) <= FULL_RACKS else ', by kind'}): "
                  "NVLink domains, planned load of each limit", highlight=False)
    for line in rack_lines(site, plan):
        console.print("  " + line, highlight=False, markup=False, soft_wrap=True)
    for line in domain_lines(plan):
        console.print("  " + line, highlight=False, markup=False, soft_wrap=True)

    console.print("[bold]power tree[/bold]: planned worst case of each budget", highlight=False)
    for line in power_lines(plan):
        console.print("  " + line, highlight=False, markup=False, soft_wrap=True)

    for fabric in plan.fabrics:
        t = Table(title=f"fabric {fabric.name} ({fabric.kind} {fabric.rate}, {fabric.tiers}-tier, {len(fabric.rails)} rails)")
        t.add_column("bill of materials")
        t.add_column("count", justify="right")
        for role, n in fabric.switches.items():
            if n:
                t.add_row(f"{role} switches", f"{n:,}")
        for kind, n in fabric.cables.items():
            t.add_row(f"{kind} cables", f"{n:,}")
        t.add_row("scalable units", str(len(fabric.scalable_units)))
        t.add_row("switch power", f"{fabric.power_kw:,.1f} kW")
        console.print(t)

    if plan.slurm:
        s = plan.slurm
        t = Table(title=f"Slurm cluster {s.cluster}")
        for col in ("partition", "nodes", "default", "max time"):
            t.add_column(col)
        for p in s.partitions:
            t.add_row(p.name, p.nodes, "yes" if p.default else "", p.max_time)
        console.print(t)
        console.print(f"controllers: {', '.join(h for h, _ in s.controllers)}; accounting: {s.accounting[0]}")
    groups = Counter({g: len(m) for g, m in plan.groups.items()})
    console.print("groups: " + ", ".join(f"{g} ({n})" for g, n in groups.items()))
