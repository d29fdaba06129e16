"""Per-tenant usage of a period: quantities from Slurm's records and the Kubernetes clusters' Prometheus, energy
flagged, priced from the tariffs.

Energy of a job, in order of what was measured:
- measured: the job's ConsumedEnergyRaw (Slurm sums its nodes' meters over the job) when it had its nodes whole;
- apportioned: the same meters when the job shared its nodes, times its share of them (GPUs on GPU nodes, CPUs
  elsewhere), since Slurm's node meters read the whole node;
- estimated: no meter reading, so the node type's power rating (power_kw) times that share times the hours.
A job's GPU energy from DCGM job statistics (every GPU of the job read, sacct.gpu_energy) is measured, and it
replaces as much of the job's figure above, never adds to it: node meters and power ratings cover the whole node,
its GPUs included. So the job counts max(node figure, GPU energy): the GPU energy measured, the rest of the node
figure (if any) under the node figure's flag.
A Kubernetes namespace's usage (prometheus.py) adds to its tenant's line: GPU energy is measured where the DCGM
exporter's counter has it for the namespace, else estimated as above (the GPU share on GPU nodes, the CPU share
elsewhere). What no job or pod used is the idle line (GPU-hours, CPU-hours and estimated energy of the unallocated
shares of the Slurm nodes and of the metered clusters' nodes), so tenants plus idle add up to the capacity of the
period.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..plan.slurm import gres_name
from ..site.index import SiteIndex
from ..site.model import NodeType, Site
from ..site.power import site_power_plan
from .periods import Period, parse_period, period_days
from .prometheus import KubernetesUsage, PrometheusFailed
from .sacct import Job, UsageInvalid

FLAGS = ("measured", "apportioned", "estimated")
IDLE = "(idle)"
UNMETERED = "(unmetered hosts)"
TOTAL = "(total)"


@dataclass
class TenantUsage:
    name: str
    account: str | None = None
    tenant_class: str | None = None
    price_factor: float = 1.0
    known: bool = True                                  # False: an account that no tenant of the site declares
    jobs: int = 0
    gpu_hours: dict[str, float] = field(default_factory=dict)       # by Slurm GRES type ('h200')
    gpu_hours_by_day: dict[str, list[float]] = field(default_factory=dict)     # the same per day (Report.days)
    cpu_hours: float = 0.0
    memory_gb_hours: float = 0.0
    storage_tb_months: dict[str, float] = field(default_factory=dict)
    energy_kwh: dict[str, float] = field(default_factory=lambda: dict.fromkeys(FLAGS, 0.0))
    gpu_dcgm_kwh: float = 0.0                           # of energy_kwh['measured']: GPUs' own, from DCGM
    facility_kwh: float = 0.0
    renewable_kwh: float = 0.0
    costs: dict[str, float] = field(default_factory=dict)
    total: float | None = None
    budget: float | None = None
    budget_share: float | None = None
    flexible_of: str | None = None                      # a line of a flexible partition's jobs: its tenant's line

    @property
    def it_kwh(self) -> float:
        return sum(self.energy_kwh.values())


@dataclass
class Report:
    site: str
    period: Period
    currency: str | None
    pue: float
    pue_source: str                                     # 'energy.pue' or 'site.site.power.pue'
    renewable_basis: str                                # 'hourly' (supply file), 'hourly, gaps declared', 'declared'
    tenants: list[TenantUsage]
    idle: TenantUsage | None
    total: TenantUsage | None
    kubernetes: list[str] = field(default_factory=list)     # clusters whose usage came from their Prometheus
    # the site's other hosts (control, storage, service, clusters not metered) at their power ratings: the EED's
    unmetered: TenantUsage | None = None                    # whole-site IT energy is total + unmetered
    unmetered_hosts: int = 0
    # node type -> its planned GPU power limit in watts (plan.power.limits_w): the ceiling the GPUs' energy was
    # drawn under; empty on a site without power-limit ranges
    gpu_power_limits_w: dict[str, int] = field(default_factory=dict)
    days: list[str] = field(default_factory=list)           # the period's days (dates), of gpu_hours_by_day


def pue_for(site: Site, period: Period) -> tuple[float, str]:
    """The PUE declared for a month (exact, else its year), else the design PUE; a year's own entry, else the design
    PUE, for a year (whose report weighs each month's PUE by its energy: ``month_pues``)."""
    entries = {e.period: e.pue for e in site.energy.pue} if site.energy else {}
    for name in (period.name, period.name[:4]):
        if name in entries:
            return entries[name], "energy.pue"
    return site.site.power.pue, "site.site.power.pue"


def month_pues(site: Site, period: Period) -> list[tuple[int, float, str]]:
    """Per month of ``period``: its first hour (from the period's start), its PUE and where that came from."""
    if period.months == 1:
        return [(0, *pue_for(site, period))]
    out = []
    for month in range(1, 13):
        part = parse_period(f"{period.name}-{month:02d}", period.timezone)
        out.append((round((part.start - period.start) / 3600), *pue_for(site, part)))
    return out


def _slurm_node_types(site: Site) -> tuple[dict[str, list[tuple[str, NodeType]]], dict[str, int]]:
    """Per partition its node types (name, type) in pool order; nodes per node type in Slurm."""
    pools = {p.name: p for p in site.pools}
    by_partition: dict[str, list[tuple[str, NodeType]]] = {}
    nodes: dict[str, int] = {}
    seen_pools: set[str] = set()
    for part in site.slurm.partitions if site.slurm else ():
        for pool_name in part.pools:
            pool = pools.get(pool_name)
            if pool is None or pool.type not in site.node_types:
                continue
            entry = (pool.type, site.node_types[pool.type])
            if entry not in by_partition.setdefault(part.name, []):
                by_partition[part.name].append(entry)
            if pool_name not in seen_pools:
                seen_pools.add(pool_name)
                nodes[pool.type] = nodes.get(pool.type, 0) + len(pool.hosts)
    return by_partition, nodes


def _node_type_of(job: Job, by_partition, all_types, line: str) -> tuple[str, NodeType]:
    candidates = by_partition.get(job.partition) or all_types
    if job.gpus:
        for name, nt in candidates:
            if nt.gpus and (job.gpu_model is None or gres_name(nt.gpu.model) == job.gpu_model):
                return name, nt
    elif candidates:
        return candidates[0]
    raise UsageInvalid(line, f"no Slurm node type of the site fits partition {job.partition!r} with "
                             f"{job.gpus} GPU(s) of type {job.gpu_model!r}")


def _shape(job: Job, by_partition, all_types) -> tuple[str, str | None, int, float, bool]:
    """Node type name, GPU model (GRES type) if the job is metered by GPUs, units per node (GPUs on GPU nodes, else
    CPUs), node power (kW), whether the node type has GPUs."""
    nt_name, nt = _node_type_of(job, by_partition, all_types, f"--sacct job of account {job.account!r}")
    if nt.gpus:
        return nt_name, (job.gpu_model or gres_name(nt.gpu.model)) if job.gpus else None, nt.gpus, nt.power_kw, True
    return nt_name, None, nt.cpu.sockets * nt.cpu.cores_per_socket * nt.cpu.threads_per_core, nt.power_kw, False


class _Hourly:
    """A tenant's kWh per hour of the period, spread evenly over each job's time (difference arrays: O(1) a job)."""

    def __init__(self, hours: int):
        self.direct = [0.0] * (hours + 1)
        self.diff = [0.0] * (hours + 1)
        self.hours = hours

    def add(self, a: float, b: float, kwh: float) -> None:
        if b <= a:
            self.direct[min(int(a / 3600), self.hours - 1)] += kwh
            return
        rate = kwh / (b - a)
        i0, i1 = int(a // 3600), min(int(b // 3600), self.hours)
        if i0 == i1 or (i1 == i0 + 1 and b == i1 * 3600):
            self.direct[i0] += kwh
            return
        self.direct[i0] += rate * ((i0 + 1) * 3600 - a)
        if i1 < self.hours:
            self.direct[i1] += rate * (b - i1 * 3600)
        self.diff[i0 + 1] += rate * 3600
        self.diff[i1] -= rate * 3600

    def add_hour(self, hour: int, kwh: float) -> None:
        self.direct[hour] += kwh

    def values(self) -> list[float]:
        out, running = [], 0.0
        for h in range(self.hours):
            running += self.diff[h]
            out.append(self.direct[h] + running)
        return out


@dataclass
class _Tally:
    """What the report counts while it reads the period's usage, and the window it counts in."""
    hours: int                          # hours of the period
    start: float                        # the period's start (epoch seconds)
    end: float                          # where counting ends: the period's end, or ``now`` if that comes first
    by_hour: bool                       # energy kept hour by hour (a year of several PUEs, a supply file)
    hourly: dict[str, _Hourly] = field(default_factory=dict)     # per tenant line: kWh per hour (when by_hour)
    used: dict[str, _Hourly] = field(default_factory=dict)       # per node type: unit-hours allocated, per hour
    used_total: dict[str, float] = field(default_factory=dict)   # the same, for Slurm's jobs, when not kept hour by hour
    gpu: dict[tuple[str, str], _Hourly] = field(default_factory=dict)   # per (tenant line, GPU model): GPU-hours per hour

    def spread(self, table: dict, name: str | tuple[str, str]) -> _Hourly:
        """``table``'s hour-by-hour figures of ``name`` (a tenant line or a node type), new ones if it has none."""
        spread = table.get(name)
        if spread is None:
            spread = table[name] = _Hourly(self.hours)
        return spread

    def hour_share(self) -> list[float]:
        """Of each hour of the period, the part inside [start, end)."""
        elapsed = _Hourly(self.hours)
        elapsed.add(0.0, self.end - self.start, (self.end - self.start) / 3600)
        return elapsed.values()


@dataclass
class _Renewable:
    """The renewable share applied to facility energy: hour by hour from the supply file (its gaps filled with the
    declared share), else the site's declared share."""
    declared: float
    shares: list[float] | None          # per hour, when a supply file gave them
    basis: str                          # 'hourly', 'hourly, gaps declared' or 'declared' (Report.renewable_basis)
    mean: float


def usage_report(site: Site, period: Period, jobs: Iterable[Job], supply_share: list[float | None] | None = None,
                 tenant: str | None = None, kubernetes: Iterable[KubernetesUsage] = (), now: float | None = None) -> Report:
    """Usage per tenant over ``period`` from ``jobs`` and the clusters' ``kubernetes`` usage; ``supply_share`` is
    the hourly renewable share, if known. ``now`` (epoch seconds) ends a period that is not over yet: running jobs
    and the idle capacity count up to it, not to the period's end."""
    rows, by_account = _tenant_lines(site, period, tenant)
    by_partition, node_counts = _slurm_node_types(site)
    hours = round(period.hours)
    pues = month_pues(site, period)
    tally = _Tally(hours, period.start, period.end if now is None else min(period.end, max(period.start, now)),
                   by_hour=supply_share is not None or len({pue for _, pue, _ in pues}) > 1)
    _add_jobs(jobs, rows, by_account, by_partition, tally, flexible_classes(site))
    metered = []
    for usage in kubernetes:
        _add_kubernetes(site, usage, rows, lambda name: tally.spread(tally.used, name), node_counts,
                        (lambda name: tally.spread(tally.hourly, name)) if tally.by_hour else None,
                        lambda name, model: tally.spread(tally.gpu, (name, model)))
        metered.append(usage.cluster)
    renewable = _renewable(site, supply_share)
    kwh_by_hour = {name: spread.values() for name, spread in tally.hourly.items()}
    hour_share = tally.hour_share()
    idle = None
    if (site.slurm is not None or metered) and tenant is None:
        idle = _idle_line(site, rows, node_counts, tally, hour_share, kwh_by_hour)
    others = _unmetered_hosts(site, metered) if tenant is None else {}
    unmetered = _unmetered_line(site, others, hour_share, kwh_by_hour)
    pue_by_hour = [pue for i, (first, pue, _) in enumerate(pues)
                   for _ in range(first, pues[i + 1][0] if i + 1 < len(pues) else hours)]
    all_rows = [*rows.values(), *(r for r in (idle, unmetered) if r is not None)]
    for row in all_rows:
        _add_facility_energy(row, kwh_by_hour.get(row.name, ()) if tally.by_hour else None, pue_by_hour, pues[0][1],
                             renewable)
        if site.billing is not None and row.name in rows:
            _price(row, site.billing)
    _budget_shares(rows)
    sources = list(dict.fromkeys(source for _, _, source in pues))
    shown = [r for r in rows.values() if r.name == tenant or r.flexible_of == tenant] if tenant is not None else list(rows.values())
    total = _sum(shown + ([idle] if idle else [])) if tenant is None else None
    days = _gpu_hours_by_day(site, period, tally, [*shown, *([idle] if idle else []), *([total] if total else [])],
                             node_counts, hour_share)
    return Report(site.site.name, period, site.billing.currency if site.billing else None,
                  _period_pue(pues, all_rows, pue_by_hour), " and ".join(sources), renewable.basis,
                  shown, idle, total, metered, unmetered, len(others), planned_limits_w(site), days)


def planned_limits_w(site: Site) -> dict[str, int]:
    """The plan's GPU power limit of each node type declaring a range (the power plan runs only where one does)."""
    if not any(nt.gpu and nt.gpu.power_limit_w for nt in site.node_types.values()):
        return {}
    return dict(site_power_plan(SiteIndex.of(site)).limits_w)


def _gpu_hours_by_day(site: Site, period: Period, tally: _Tally, lines: list[TenantUsage], node_counts: dict[str, int],
                      hour_share: list[float]) -> list[str]:
    """Each line's GPU-hours per model per day of the period (``gpu_hours_by_day``) from the tally's hour-by-hour
    GPU-hours; the idle line's: each hour's capacity of the model less the tenants' hours; the total's (last of
    ``lines``): their sum. Returns the days' dates."""
    days = period_days(period)
    bounds = [first for _, first in days[1:]] + [len(hour_share)]

    def by_day(hourly: list[float]) -> list[float]:
        out, first = [], 0
        for end in bounds:
            out.append(sum(hourly[first:end]))
            first = end
        return out

    hourly: dict[str, dict[str, list[float]]] = {}
    for (name, model), spread in tally.gpu.items():
        hourly.setdefault(name, {})[model] = spread.values()
    capacity: dict[str, list[float]] = {}
    for nt_name, count in node_counts.items():
        nt = site.node_types[nt_name]
        if nt.gpus:
            cap = capacity.setdefault(gres_name(nt.gpu.model), [0.0] * len(hour_share))
            for h, s in enumerate(hour_share):
                cap[h] += nt.gpus * count * s
    for line in lines:
        if line.name == IDLE:
            models = {m: [c - sum(v[m][h] for v in hourly.values() if m in v) for h, c in enumerate(cap)]
                      for m, cap in capacity.items()}
        elif line.name == TOTAL:                # the sum of the lines above it, as _sum makes the total
            models = {}
            for other in lines[:-1]:
                for m, v in other.gpu_hours_by_day.items():
                    models[m] = [a + b for a, b in zip(models.get(m, [0.0] * len(v)), v, strict=True)]
            line.gpu_hours_by_day = models
            continue
        else:
            models = hourly.get(line.name, {})
        line.gpu_hours_by_day = {m: by_day(v) for m, v in sorted(models.items()) if m in line.gpu_hours}
    return [date for date, _ in days]


def _tenant_lines(site: Site, period: Period, tenant: str | None) -> tuple[dict[str, TenantUsage], dict[str, TenantUsage]]:
    """A line per tenant of the site (its class, price factor, storage over the period and budget), by tenant name
    and by Slurm account; ``tenant`` (--tenant) must be one of them."""
    tenants_by_name = {t.name: t for t in site.tenants}
    if tenant is not None and tenant not in tenants_by_name:
        raise UsageInvalid("--tenant", f"unknown tenant {tenant!r}; tenants of {site.site.name}: "
                                       f"{', '.join(tenants_by_name) or '(none declared)'}")
    billing = site.billing
    factors = {c.name: c.price_factor for c in billing.classes} if billing else {}
    rows: dict[str, TenantUsage] = {}
    by_account: dict[str, TenantUsage] = {}
    for t in site.tenants:
        cls = t.billing.class_ if t.billing else None
        row = TenantUsage(t.name, t.slurm.account if t.slurm else None, cls, factors.get(cls, 1.0))
        row.storage_tb_months = {name: tb * period.months for name, tb in t.storage_tb.items()}
        if t.billing and t.billing.prepaid:
            row.budget = t.billing.prepaid.amount
        rows[t.name] = row
        if row.account:
            by_account[row.account] = row
    return rows, by_account


def flexible_classes(site: Site) -> dict[str, tuple[str, float]]:
    """Each flexible Slurm partition's billing class and its price factor (docs/power.md, "Flexible capacity")."""
    factors = {c.name: c.price_factor for c in site.billing.classes} if site.billing else {}
    return {p.name: (p.flexible.class_, factors.get(p.flexible.class_, 1.0))
            for p in (site.slurm.partitions if site.slurm else ()) if p.flexible is not None}


def _flexible_line(rows: dict[str, TenantUsage], row: TenantUsage, cls: str, factor: float) -> TenantUsage:
    """The line of ``row``'s jobs in a flexible partition of class ``cls``: ``<tenant> [<cls>]``, priced at the
    tenant's own factor times the class's (its class shown as both, once when they are the same); storage and budget
    stay on the tenant's line, whose budget share counts this line's cost too (``_budget_shares``)."""
    name = f"{row.name} [{cls}]"
    if name not in rows:
        both = cls if row.tenant_class in (None, cls) else f"{row.tenant_class}+{cls}"
        rows[name] = TenantUsage(name, row.account, both, row.price_factor * factor, known=row.known, flexible_of=row.name)
    return rows[name]


def _budget_shares(rows: dict[str, TenantUsage]) -> None:
    """Each prepaid tenant's share of its budget spent: its own line's cost and its flexible lines' (one budget)."""
    for row in rows.values():
        if row.budget and row.total is not None:
            spent = row.total + sum(r.total or 0.0 for r in rows.values() if r.flexible_of == row.name)
            row.budget_share = spent / row.budget


def _add_jobs(jobs: Iterable[Job], rows: dict[str, TenantUsage], by_account: dict[str, TenantUsage],
              by_partition: dict[str, list[tuple[str, NodeType]]], tally: _Tally,
              flexible: dict[str, tuple[str, float]] | None = None) -> None:
    """Each job's time inside the tally's window on its account's line (an account no tenant declares gets a line
    of its own; a job of a flexible partition its line of that class): GPU-, CPU- and memory-hours, energy measured,
    apportioned or estimated (the module's docstring); its allocated units, per node type, in ``tally``."""
    all_types = list(dict.fromkeys(e for entries in by_partition.values() for e in entries))
    p_start, p_end, by_hour = tally.start, tally.end, tally.by_hour
    # What each (partition, GPU type, GPU job?) runs on: node type, GPU model if metered by GPUs, units per node,
    # power, whether its nodes have GPUs (then GPUs are the unit of capacity, idle and energy).
    shapes: dict[tuple, tuple[str, str | None, int, float, bool]] = {}
    for job in jobs:
        end = p_end if job.end is None else job.end
        a, b = max(job.start, p_start), min(end, p_end)
        if b <= a:
            continue                                    # outside the period (or no time in it): nothing used
        row = by_account.get(job.account) or _account_line(rows, by_account, job.account)
        if flexible and job.partition in flexible:
            row = _flexible_line(rows, row, *flexible[job.partition])
        key = (job.partition, job.gpu_model, job.gpus > 0)
        shape = shapes.get(key)
        if shape is None:
            shape = shapes[key] = _shape(job, by_partition, all_types)
        nt_name, model, per_node, power_kw, gpu_node = shape
        h = (b - a) / 3600
        nodes = job.nodes if job.nodes > 0 else 1
        if model is not None:
            row.gpu_hours[model] = row.gpu_hours.get(model, 0.0) + job.gpus * h
            tally.spread(tally.gpu, (row.name, model)).add(a - p_start, b - p_start, job.gpus * h)
            units = job.gpus
        else:
            units = 0 if gpu_node else job.cpus         # no GPU held on a GPU node: no share of it, nor of its energy
        capacity = per_node * nodes
        if units > capacity:                            # more than its nodes hold (a part of a job of several GPU
            nodes = -(-units // per_node)               # types): as many nodes as its units fill
            capacity = per_node * nodes
        share = units / capacity if capacity and units < capacity else 1.0
        if units and not by_hour:
            tally.used_total[nt_name] = tally.used_total.get(nt_name, 0.0) + units * h
        elif units:
            tally.spread(tally.used, nt_name).add(a - p_start, b - p_start, units * h)
        row.jobs += not job.gpu_split or job.gpu_model == job.gpu_split[0][0]      # a job of several GPU types: once
        row.cpu_hours += job.cpus * h
        row.memory_gb_hours += job.mem_gb * h
        fraction = (b - a) / (end - job.start) if end > job.start else 1.0     # a straddling job's readings split by time
        if job.energy_j:                                # its energy (inline: a call a job costs a tenth of the report)
            kwh = job.energy_j / 3.6e6 * fraction * share
            flag = "measured" if share >= 0.999 else "apportioned"
        else:
            kwh = power_kw * nodes * share * h
            flag = "estimated"
        if job.gpu_energy_j:                            # DCGM's GPU energy replaces as much of it as it covers
            gpu_kwh = job.gpu_energy_j / 3.6e6 * fraction
            row.gpu_dcgm_kwh += gpu_kwh
            row.energy_kwh["measured"] += gpu_kwh
            row.energy_kwh[flag] += max(0.0, kwh - gpu_kwh)
            kwh = max(kwh, gpu_kwh)
        else:
            row.energy_kwh[flag] += kwh
        if by_hour:
            tally.spread(tally.hourly, row.name).add(a - p_start, b - p_start, kwh)


def _account_line(rows: dict[str, TenantUsage], by_account: dict[str, TenantUsage], account: str) -> TenantUsage:
    """The line of a Slurm account that no tenant declares: ``account:<name>``, added on its first job."""
    row = by_account[account] = rows.setdefault(f"account:{account}", TenantUsage(f"account:{account}", account,
                                                                                  known=False))
    return row


def _renewable(site: Site, supply_share: list[float | None] | None) -> _Renewable:
    declared = site.site.power.renewable_share
    shares = [declared if s is None else s for s in supply_share] if supply_share is not None else None
    if shares is None:
        basis = "declared"
    else:
        basis = "hourly" if all(s is not None for s in supply_share) else "hourly, gaps declared"
    return _Renewable(declared, shares, basis, sum(shares) / len(shares) if shares else declared)


def _idle_line(site: Site, rows: dict[str, TenantUsage], node_counts: dict[str, int], tally: _Tally,
               hour_share: list[float], kwh_by_hour: dict[str, list[float]]) -> TenantUsage:
    """The idle line: the capacity no job or pod used (``_idle``), less the tenants' CPU-hours; its kWh per hour
    into ``kwh_by_hour``."""
    idle = TenantUsage(IDLE, known=True)
    kwh_by_hour[IDLE] = _idle(site, idle, node_counts, tally.used, tally.used_total, hour_share)
    idle.cpu_hours -= sum(r.cpu_hours for r in rows.values())
    return idle


def _unmetered_line(site: Site, others: dict[str, str], hour_share: list[float],
                    kwh_by_hour: dict[str, list[float]]) -> TenantUsage | None:
    """The line of the hosts no meter covers (``others``: host -> node type) at their power ratings, if any; its
    kWh per hour into ``kwh_by_hour``."""
    if not others:
        return None
    unmetered = TenantUsage(UNMETERED, known=True)
    kw = sum(site.node_types[nt].power_kw for nt in others.values())
    kwh_by_hour[UNMETERED] = [kw * s for s in hour_share]
    unmetered.energy_kwh["estimated"] = sum(kwh_by_hour[UNMETERED])
    return unmetered


def _add_facility_energy(row: TenantUsage, kwh: Sequence[float] | None, pue_by_hour: list[float], pue: float,
                         renewable: _Renewable) -> None:
    """A line's facility energy (IT energy times the PUE) and its renewable part: hour by hour when ``kwh`` holds
    the line's kWh per hour, else from its whole IT energy at ``pue`` and the mean renewable share."""
    if kwh is not None:
        row.facility_kwh = sum(k * p for k, p in zip(kwh, pue_by_hour, strict=False))
        row.renewable_kwh = (sum(k * s * p for k, s, p in zip(kwh, renewable.shares, pue_by_hour, strict=False))
                             if renewable.shares is not None else row.facility_kwh * renewable.declared)
    else:
        row.facility_kwh = row.it_kwh * pue
        row.renewable_kwh = row.facility_kwh * renewable.mean


def _period_pue(pues: list[tuple[int, float, str]], rows: list[TenantUsage], pue_by_hour: list[float]) -> float:
    """The period's PUE: the one declared, else (months of several) the EU definition, facility over IT energy."""
    if len({pue for _, pue, _ in pues}) == 1:
        return pues[0][1]
    it, facility = sum(r.it_kwh for r in rows), sum(r.facility_kwh for r in rows)
    return facility / it if it else sum(pue_by_hour) / len(pue_by_hour)


def _unmetered_hosts(site: Site, metered: list[str]) -> dict[str, str]:
    """Host -> node type of the site's hosts that neither Slurm's partitions nor a metered cluster covers."""
    covered = {host for pool in site.pools if any(pool.name in part.pools for part in
                                                  (site.slurm.partitions if site.slurm else ())) for host in pool.hosts}
    for cluster in site.kubernetes:
        if cluster.name in metered:
            covered.update(_cluster_nodes(site, cluster))
    return {host: pool.type for pool in site.pools for host in pool.hosts
            if host not in covered and pool.type in site.node_types}


def _idle(site: Site, idle: TenantUsage, node_counts: dict[str, int], used: dict[str, _Hourly],
          used_total: dict[str, float], hour_share: list[float]) -> list[float]:
    """Fill ``idle`` with each node type's capacity over the hours counted (``hour_share``: of each hour, the part
    counted) less what was allocated, hour by hour (``used``) or in all (``used_total``): GPU-hours per model, energy
    at the power rating by the same unit; CPU-hours of the capacity, from which the caller takes the tenants'.
    Returns its kWh per hour (of the allocations kept hour by hour)."""
    hours = len(hour_share)
    kwh = [0.0] * hours
    for nt_name, count in node_counts.items():
        nt = site.node_types[nt_name]
        cpus = nt.cpu.sockets * nt.cpu.cores_per_socket * nt.cpu.threads_per_core
        units = nt.gpus if nt.gpus else cpus
        allocated = used[nt_name].values() if nt_name in used else [0.0] * hours
        free = [units * count * s - u for s, u in zip(hour_share, allocated, strict=True)]
        free_total = sum(free) - used_total.get(nt_name, 0.0)
        if nt.gpus:
            model = gres_name(nt.gpu.model)
            idle.gpu_hours[model] = idle.gpu_hours.get(model, 0.0) + free_total
        rate = nt.power_kw / units
        kwh = [k + f * rate for k, f in zip(kwh, free, strict=True)]
        idle.energy_kwh["estimated"] += free_total * rate
        idle.cpu_hours += cpus * count * sum(hour_share)
    return kwh


def _cluster_nodes(site: Site, cluster) -> dict[str, str]:
    """Host -> node type of a cluster's nodes: the hosts of its worker pools and its control plane."""
    index = SiteIndex.of(site)
    nodes = {host: pool.type for name in cluster.workers if (pool := index.pools.get(name)) for host in pool.hosts}
    for host in cluster.control_plane:
        pool = index.pool_of(host)
        if pool is not None:
            nodes.setdefault(host, pool.type)
    return {host: nt for host, nt in nodes.items() if nt in site.node_types}


def site_gpu_model(product: str, models: Iterable[str]) -> str | None:
    """The site's GPU model (its GRES name) that a node's ``nvidia.com/gpu.product`` label names, if one does:
    'NVIDIA-H200' -> 'h200', 'NVIDIA-H100-80GB-HBM3' -> 'h100' (the longest model the product starts with)."""
    name = gres_name(product).removeprefix("nvidia-")
    matches = [m for m in models if name == m or name.startswith(m + "-")]
    return max(matches, key=len) if matches else None


def _add_kubernetes(site: Site, usage: KubernetesUsage, rows: dict[str, TenantUsage], used_of, node_counts: dict[str, int],
                    spread_of, gpu_of=None) -> None:
    """Add a cluster's namespace usage to its tenants' lines (a namespace no tenant declares gets its own line), its
    nodes to the capacity and their allocated shares, hour by hour, to ``used_of(node type)``."""
    cluster = next((c for c in site.kubernetes if c.name == usage.cluster), None)
    if cluster is None:
        raise UsageInvalid("--prometheus", f"unknown Kubernetes cluster {usage.cluster!r}")

    def fail(message: str) -> PrometheusFailed:
        return PrometheusFailed(cluster.name, usage.url, message)

    nodes = _cluster_nodes(site, cluster)
    for nt_name in nodes.values():
        node_counts[nt_name] = node_counts.get(nt_name, 0) + 1
    worker_types = sorted({p.type for p in site.pools if p.name in cluster.workers and p.type in site.node_types})
    models = {gres_name(nt.gpu.model) for nt in site.node_types.values() if nt.gpus}
    tenants = {t.kubernetes.namespace: rows[t.name] for t in site.tenants
               if t.kubernetes and t.kubernetes.cluster == cluster.name}

    def row_of(namespace: str) -> TenantUsage:
        row = tenants.get(namespace)
        if row is None:
            name = f"namespace:{cluster.name}/{namespace}"
            row = tenants[namespace] = rows.setdefault(name, TenantUsage(name, known=False))
        return row

    def node_type(node: str) -> str:
        if node in nodes:
            return nodes[node]
        if len(worker_types) == 1:
            return worker_types[0]
        raise fail(f"node {node!r} is no host of cluster {cluster.name!r}, whose workers are of several node types "
                   f"({', '.join(worker_types)}): which one it is cannot be told")

    def model_of(node: str, hour: int, nt: NodeType) -> str:
        product = usage.gpu_products.get(node, {}).get(hour)
        if product is None:
            return gres_name(nt.gpu.model)
        model = site_gpu_model(product, models)
        if model is None:
            raise fail(f"node {node!r} reports GPUs {product!r} (kube_node_labels), a model no node type of the "
                       f"site declares ({', '.join(sorted(models)) or 'none'})")
        return model

    measured = {ns for ns, by_hour in usage.gpu_energy_kwh.items() if any(by_hour.values())}
    for namespace in measured:
        row = row_of(namespace)
        for hour, kwh in usage.gpu_energy_kwh[namespace].items():
            row.energy_kwh["measured"] += kwh
            if spread_of is not None:
                spread_of(row.name).add_hour(hour, kwh)
    keys = {*usage.gpu_hours, *usage.cpu_hours, *usage.memory_gib_hours}
    for namespace, node in sorted(keys):
        row = row_of(namespace)
        nt_name = node_type(node)
        nt = site.node_types[nt_name]
        cpus = nt.cpu.sockets * nt.cpu.cores_per_socket * nt.cpu.threads_per_core
        gpu = usage.gpu_hours.get((namespace, node), {})
        cpu = usage.cpu_hours.get((namespace, node), {})
        row.memory_gb_hours += sum(usage.memory_gib_hours.get((namespace, node), {}).values())
        row.cpu_hours += sum(cpu.values())
        for hour, gpu_h in gpu.items():
            if gpu_h and not nt.gpus:
                raise fail(f"namespace {namespace!r} requested GPUs on node {node!r}, whose node type {nt_name!r} "
                           "has none in the site file")
            if gpu_h:
                model = model_of(node, hour, nt)
                row.gpu_hours[model] = row.gpu_hours.get(model, 0.0) + gpu_h
                if gpu_of is not None:
                    gpu_of(row.name, model).add_hour(hour, gpu_h)
        # the node's share this namespace held: its GPUs on GPU nodes, its CPUs elsewhere
        share = gpu if nt.gpus else cpu
        units = nt.gpus if nt.gpus else cpus
        allocated = used_of(nt_name)
        for hour, unit_h in share.items():
            allocated.add_hour(hour, unit_h)
        if nt.gpus and namespace in measured:
            continue
        for hour, unit_h in share.items():
            kwh = nt.power_kw * unit_h / units
            row.energy_kwh["estimated"] += kwh
            if spread_of is not None and kwh:
                spread_of(row.name).add_hour(hour, kwh)


def _price(row: TenantUsage, billing) -> None:
    t = billing.tariffs
    gpu_price = {gres_name(model): price for model, price in t.gpu_hour.items()}
    f = row.price_factor
    row.costs = {
        "gpu": f * sum(hours * gpu_price.get(model, 0.0) for model, hours in row.gpu_hours.items()),
        "cpu": f * row.cpu_hours * t.cpu_hour,
        "memory": f * row.memory_gb_hours * t.memory_gb_hour,
        "storage": f * sum(tbm * t.storage_tb_month.get(name, 0.0) for name, tbm in row.storage_tb_months.items()),
        "energy": f * row.facility_kwh * t.energy_kwh,
    }
    row.total = sum(row.costs.values())


def _sum(rows: list[TenantUsage]) -> TenantUsage:
    total = TenantUsage(TOTAL)
    for r in rows:
        total.jobs += r.jobs
        for model, hours in r.gpu_hours.items():
            total.gpu_hours[model] = total.gpu_hours.get(model, 0.0) + hours
        for name, tbm in r.storage_tb_months.items():
            total.storage_tb_months[name] = total.storage_tb_months.get(name, 0.0) + tbm
        total.cpu_hours += r.cpu_hours
        total.memory_gb_hours += r.memory_gb_hours
        for flag in FLAGS:
            total.energy_kwh[flag] += r.energy_kwh[flag]
        total.gpu_dcgm_kwh += r.gpu_dcgm_kwh
        total.facility_kwh += r.facility_kwh
        total.renewable_kwh += r.renewable_kwh
        for line, amount in r.costs.items():
            total.costs[line] = total.costs.get(line, 0.0) + amount
        if r.total is not None:
            total.total = (total.total or 0.0) + r.total
    return total


NOT_IN_SITE_FILE = ("potable water input (m³)", "energy of IT equipment that is no host of the site file: network "
                    "switches, storage appliances (IT energy counts the site file's hosts)")


def _facility_meter(site: Site, period: Period, name: str) -> float | None:
    """``energy.facility``'s ``name`` for the period: its own entry, else (a year) the sum of its twelve months'."""
    entries = {e.period: getattr(e, name) for e in site.energy.facility} if site.energy else {}
    if entries.get(period.name) is not None:
        return entries[period.name]
    months = [entries.get(f"{period.name}-{m:02d}") for m in range(1, 13)] if period.months == 12 else [None]
    return sum(months) if all(v is not None for v in months) else None


def eed_inputs(report: Report, site: Site) -> dict[str, float | str | list[str] | None]:
    """What Delegated Regulation (EU) 2024/1364 asks of a data centre that this report and the site file can give,
    for its period: IT energy of every host of the site file (Slurm's accounting and the metered clusters for theirs,
    the others at their power ratings), total energy, PUE, renewable energy, energy reuse and water; and what they
    cannot (NOT_IN_SITE_FILE)."""
    lines = [r for r in (report.total, report.unmetered) if r is not None]
    it = sum(r.it_kwh for r in lines)
    facility = sum(r.facility_kwh for r in lines)
    renewable = sum(r.renewable_kwh for r in lines)
    reused = _facility_meter(site, report.period, "reused_kwh")
    water = _facility_meter(site, report.period, "water_m3")
    return {
        "period": report.period.name,
        "it_energy_kwh": it,
        "it_energy_metered_nodes_kwh": report.total.it_kwh if report.total else 0.0,
        "it_energy_other_hosts_kwh": report.unmetered.it_kwh if report.unmetered else 0.0,
        "other_hosts": report.unmetered_hosts,
        "total_energy_kwh": facility,
        "pue": report.pue,
        "pue_source": report.pue_source,
        "renewable_energy_kwh": renewable,
        "renewable_energy_factor": renewable / facility if facility else 0.0,
        "renewable_basis": report.renewable_basis,
        "reused_energy_kwh": reused,
        "energy_reuse_factor": reused / facility if reused is not None and facility else None,
        "water_input_m3": water,
        "water_usage_effectiveness_l_per_kwh": water * 1000 / it if water is not None and it else None,
        "kubernetes_from_prometheus": report.kubernetes,
        "metered_by": ["Slurm's accounting"] * (site.slurm is not None) + [f"the Prometheus of {c}" for c in report.kubernetes],
        "not_in_site_file": list(NOT_IN_SITE_FILE),
    }
