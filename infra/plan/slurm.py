"""Slurm's layout: node groups as hostlist ranges, partitions, controllers, topology."""

from __future__ import annotations

from ..site.hostlists import compress
from ..site.index import SiteIndex
from .model import FabricPlan, HostPlan, SlurmNodeGroup, SlurmPartition, SlurmPlan

MEMORY_RESERVED = 0.05          # share of a node's memory kept back from jobs for the OS and daemons


def gres_name(model: str) -> str:
    """Slurm's GRES type for a GPU model: ``H200`` -> ``h200``."""
    return model.lower().replace(" ", "-")


def plan_slurm(index: SiteIndex, hosts: dict[str, HostPlan], fabrics: tuple[FabricPlan, ...]) -> SlurmPlan | None:
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
        groups.append(SlurmNodeGroup(
            hostlist=compress(pool.hosts), pool=pool.name, node_type=pool.type,
            cpus=nt.cpu.sockets * nt.cpu.cores_per_socket * nt.cpu.threads_per_core,
            sockets=nt.cpu.sockets, cores_per_socket=nt.cpu.cores_per_socket, threads_per_core=nt.cpu.threads_per_core,
            real_memory_mb=int(nt.memory_gb * 1024 * (1 - MEMORY_RESERVED)), gres=gres, features=features))
    partitions = tuple(
        SlurmPartition(p.name, compress(h for name in p.pools for h in index.pools[name].hosts),
                       p.default, p.max_time, p.max_nodes)
        for p in s.partitions)
    topology: list[tuple[str, str]] = []
    if s.topology == "tree":
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
    return SlurmPlan(
        cluster=s.cluster,
        controllers=tuple((h, hosts[h].address()) for h in s.controllers),
        accounting=(s.accounting.host, hosts[s.accounting.host].address()),
        login=tuple(s.login),
        nodes=tuple(groups),
        partitions=partitions,
        topology=tuple(topology),
        state_save_location=s.state_save_location,
        containers=s.containers,
    )
