"""Slurm's layout: node groups as hostlist ranges, partitions, controllers, topology."""

from __future__ import annotations

from ..site.blocks import MAX_BLOCK_LEVEL, nvlink_pools, topology_plugin
from ..site.hostlists import compress, compress_in_order, expand
from ..site.index import SiteIndex
from ..site.fabric import FabricPlan
from ..site.placement import Domain
from .model import HostPlan, NvlinkDomain, SlurmNodeGroup, SlurmPartition, SlurmPlan
from .tariffs import gpu_hour_prices

MEMORY_RESERVED = 0.05          # share of a node's memory kept back from jobs for the OS and daemons
PRIORITY_TRES_TOTAL = 1000      # PriorityWeightTRES: the whole cluster, fully allocated, counts this much (as Age does)
ENERGY_PLUGINS = {"ipmi": "acct_gather_energy/ipmi", "pm_counters": "acct_gather_energy/pm_counters"}
# Prolog/Epilog pairs, by name: what the site declares that needs one. Each is a script the slurm_compute role installs
# in both /etc/slurm/prolog.d and /etc/slurm/epilog.d; slurm.conf runs every file of those directories (its glob), so
# pairs compose. dcgm-energy: GPU energy per job from DCGM job statistics (energy.gpu: dcgm-job-stats). imex: each
# job's IMEX node list and daemon on NVLink trays (switch/nvidia_imex; docs/slurm.md, "IMEX").
JOB_SCRIPTS = {"dcgm-energy": lambda site: site.energy is not None and site.energy.gpu == "dcgm-job-stats",
               "imex": lambda site: bool(nvlink_pools(site))}
# Slurm's IMEX channel per job: slurmctld hands each job one, slurmstepd makes only that device in the job's steps.
IMEX_SWITCH = "switch/nvidia_imex"


def nvlink_domains(site, domains: tuple[Domain, ...], hosts: dict[str, HostPlan]) -> tuple[NvlinkDomain, ...]:
    """Slurm's NVLink domains (placement's, named for their rack as topology.conf's blocks are), with each tray's
    IMEX address: its management address."""
    pools = {pool.name for pool in nvlink_pools(site)}
    return tuple(NvlinkDomain(d.name, tuple((h, hosts[h].address()) for h in d.hosts)) for d in domains if d.pool in pools)


def gres_name(model: str) -> str:
    """Slurm's GRES type for a GPU model: ``H200`` -> ``h200``."""
    return model.lower().replace(" ", "-")


def _weight(value: float) -> str:
    """A weight as slurm.conf takes it: six significant digits, no exponent (Slurm parses it as a double)."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text if text not in ("", "0") else f"{value:.6g}"


def billing_weights(tariffs, node_types) -> str | None:
    """TRESBillingWeights for a partition whose nodes are of ``node_types``: each TRES at its price per hour.

    A job's billing TRES is then its price per hour in the billing currency, so its billing TRES-minutes
    divided by 60 are its cost in currency units (before the tenant's class factor).
    """
    weights: list[str] = []
    if tariffs.cpu_hour:
        weights.append(f"CPU={_weight(tariffs.cpu_hour)}")
    if tariffs.memory_gb_hour:
        weights.append(f"Mem={_weight(tariffs.memory_gb_hour)}G")
    for model, price in gpu_hour_prices(tariffs, (nt.gpu.model for nt in node_types if nt.gpu and nt.gpu.count)).items():
        weights.append(f"GRES/gpu:{gres_name(model)}={_weight(price)}")
    return ",".join(weights) or None


def priority_weights(tariffs, groups, node_types_by_group) -> str | None:
    """PriorityWeightTRES in proportion to what each TRES of the whole cluster costs per hour (price × count).

    Slurm divides a job's TRES by the partition's total before weighting, so weighting price × total makes
    a job's TRES priority follow its price per hour; the whole cluster counts ``PRIORITY_TRES_TOTAL``.
    """
    costs: dict[str, float] = {}
    for group, nt in zip(groups, node_types_by_group, strict=True):
        nodes = len(expand(group.hostlist))
        costs["CPU"] = costs.get("CPU", 0) + tariffs.cpu_hour * group.cpus * nodes
        costs["Mem"] = costs.get("Mem", 0) + tariffs.memory_gb_hour * group.real_memory_mb / 1024 * nodes
        if nt.gpu and nt.gpu.count and tariffs.gpu_hour.get(nt.gpu.model):
            key = f"GRES/gpu:{gres_name(nt.gpu.model)}"
            costs[key] = costs.get(key, 0) + tariffs.gpu_hour[nt.gpu.model] * nt.gpu.count * nodes
    total = sum(costs.values())
    if not total:
        return None
    weights = {k: round(PRIORITY_TRES_TOTAL * v / total) for k, v in costs.items()}
    return ",".join(f"{k}={w}" for k, w in weights.items() if w) or None


def aggregation_level(domains: list[Domain], hosts: dict[str, HostPlan]) -> int:
    """The largest k such that Slurm's aggregated blocks of 2^k adjacent domains each stand in one scalable unit.

    Slurm 24.11 aggregates by file order (block i opens a group of level k when i is divisible by 2^k), so k grows
    while every such group's hosts share one fabric's scalable unit, up to the level that holds every domain (no
    higher level aggregates more) and 2^15. Domains off any fabric aggregate no further than themselves.
    """
    units = [{(hosts[h].fabric, hosts[h].scalable_unit) for h in d.hosts} for d in domains]
    level = 0
    while level < MAX_BLOCK_LEVEL and 2 ** level < len(domains):
        width = 2 ** (level + 1)
        groups = (set().union(*units[i:i + width]) for i in range(0, len(units), width))
        if not all(len(g) == 1 and None not in next(iter(g)) for g in groups):
            break
        level += 1
    return level


def plan_slurm(index: SiteIndex, hosts: dict[str, HostPlan], fabrics: tuple[FabricPlan, ...],
               domains: tuple[Domain, ...] = ()) -> SlurmPlan | None:
    site = index.site
    s = site.slurm
    if s is None:
        return None
    pools_used = list(dict.fromkeys(p for part in s.partitions for p in part.pools))
    groups = []
    compute: list[str] = []
    for pool in site.pools:
        if pool.name not in pools_used:
            continue
        nt = index.node_type(pool)
        compute.extend(pool.hosts)
        gres = f"gpu:{gres_name(nt.gpu.model)}:{nt.gpu.count}" if nt.gpu and nt.gpu.count else None
        features = tuple(dict.fromkeys(f for f in (pool.type, pool.name, gres_name(nt.gpu.model) if nt.gpus else None) if f))
        hostlist = compress(pool.hosts)
        groups.append(SlurmNodeGroup(
            hostlist=hostlist, addresses=compress_in_order(hosts[h].address() for h in expand(hostlist)), pool=pool.name, node_type=pool.type,
            cpus=nt.cpu.sockets * nt.cpu.cores_per_socket * nt.cpu.threads_per_core,
            sockets=nt.cpu.sockets, cores_per_socket=nt.cpu.cores_per_socket, threads_per_core=nt.cpu.threads_per_core,
            real_memory_mb=int(nt.memory_gb * 1024 * (1 - MEMORY_RESERVED)), gres=gres, features=features))
    tariffs = site.billing.tariffs if site.billing else None
    nvlink = {pool.name for pool in nvlink_pools(site)}
    partitions = tuple(
        SlurmPartition(p.name, compress(h for name in p.pools for h in index.pools[name].hosts),
                       p.default, p.max_time, p.max_nodes,
                       billing_weights(tariffs, [index.node_type(index.pools[name]) for name in p.pools]) if tariffs else None,
                       exclusive=bool(nvlink.intersection(p.pools)),
                       flexible_share=p.flexible.renewable_share if p.flexible else None,
                       flexible_class=p.flexible.class_ if p.flexible else None)
        for p in s.partitions)
    models = dict.fromkeys(gres_name(index.node_type(pool).gpu.model) for pool in site.pools
                           if pool.name in pools_used and index.node_type(pool).gpus)
    accounting_tres = ",".join(["gres/gpu", *(f"gres/gpu:{m}" for m in models)])
    energy = site.energy
    energy_gather = ENERGY_PLUGINS.get(energy.node) if energy else None
    topology: list[tuple[str, str]] = []
    plugin = topology_plugin(site, index)
    blocks: tuple[tuple[str, str], ...] = ()
    block_sizes: tuple[int, ...] = ()
    in_blocks = [d for d in domains if d.pool in pools_used] if plugin == "block" else []
    if in_blocks:                       # topology.conf's base blocks: each NVLink domain of the Slurm pools, as the racks stand
        blocks = tuple((d.name, compress(d.hosts)) for d in in_blocks)
        block_sizes = tuple(s.block_sizes) if s.block_sizes else tuple(
            len(in_blocks[0].hosts) * 2 ** k for k in range(aggregation_level(in_blocks, hosts) + 1))
    elif plugin == "tree":
        in_slurm = set(compute)
        leaves = []
        for fabric in fabrics:
            for n, unit in enumerate(fabric.scalable_units, start=1):
                members = [h for h in unit if h in in_slurm]
                if members:
                    name = f"{fabric.name}-su{n}"
                    leaves.append(name)
                    topology.append((name, f"Nodes={compress(members)}"))
        covered = {h for fabric in fabrics for unit in fabric.scalable_units for h in unit}
        rest = [h for h in compute if h not in covered]
        if rest:
            leaves.append("ethernet")
            topology.append(("ethernet", f"Nodes={compress(rest)}"))
        if len(leaves) > 1:
            topology.append(("spine", f"Switches={','.join(leaves)}"))
    job_scripts = tuple(name for name, declared in JOB_SCRIPTS.items() if declared(site))
    # PrologFlags. Alloc: the job scripts' prologs run when a job is allocated (docs/metering.md). Contain: every job
    # gets an extern step on each of its nodes for its whole allocation, and slurmctld (24.11, stepmgr.c
    # _internal_step_complete) adds to a job's ConsumedEnergy the energy of its extern step alone under Contain, and
    # without it that of its srun steps only: a batch step's reading never reaches the job's record, so a job that
    # runs its work in its batch script would have none, and concurrent srun steps on one node would count it twice.
    prolog_flags = (("Alloc",) if job_scripts else ()) + (("Contain",) if energy_gather else ())
    return SlurmPlan(
        cluster=s.cluster,
        controllers=tuple((h, hosts[h].address()) for h in s.controllers),
        accounting=(s.accounting.host, hosts[s.accounting.host].address()),
        login=tuple(s.login),
        nodes=tuple(groups),
        partitions=partitions,
        topology=tuple(topology),
        topology_plugin=plugin if blocks or topology else None,
        blocks=blocks,
        block_sizes=block_sizes,
        state_save_location=s.state_save_location,
        containers=s.containers,
        accounting_tres=accounting_tres,
        priority_weight_tres=priority_weights(tariffs, groups, [site.node_types[g.node_type] for g in groups]) if tariffs else None,
        energy_gather=energy_gather,
        energy_frequency_s=energy.node_frequency_s if energy_gather else None,
        budget_enforced=any(t.billing and t.billing.prepaid and t.slurm for t in site.tenants),
        job_scripts=job_scripts,
        prolog_flags=prolog_flags,
        switch_type=IMEX_SWITCH if nvlink else None,
        nvlink_domains=nvlink_domains(site, domains, hosts),
    )
