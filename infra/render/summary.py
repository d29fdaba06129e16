"""A readable summary of a plan, as rich tables."""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.table import Table

from ..plan import Plan
from ..site.hostlists import compress
from ..site.model import Site


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
