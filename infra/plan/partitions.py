"""InfiniBand partitions: who is a full member and who a limited one, per fabric, and what that lets talk.

Two ports communicate iff they share a partition in which at least one of them is a full member.
The design (docs/fabric-partitions.md):

- the default partition (0x7fff): the shared services (hosts in no compute pool: subnet managers,
  storage, Slurm controllers, accounting and login hosts, Kubernetes control planes) full, every
  other port limited: every node reaches the services and the subnet manager, no node another node;
- the shared compute partition (0x7ffe): every compute host no tenant has isolated, full;
- one partition per fabric-isolated tenant: its dedicated hosts full.

The services are limited members of the compute partitions as well: a node's traffic in its own
partition reaches them, but they join no two nodes. Each partition is at P_Key index 0 of its full
members (opensm's ``indx0``), where IPoIB and verbs applications take their P_Key by default: a
node's own partition, a service's the default one.
"""

from __future__ import annotations

from ..site.index import DEFAULT_PARTITION_KEY, SHARED_PARTITION_KEY, SiteIndex, tenant_partition_key
from ..site.model import Fabric
from ..site.fabric import fabric_hosts
from .model import PartitionPlan

DEFAULT_PARTITION = "Default"           # the name opensm's own documentation gives it
SHARED_PARTITION = "shared-compute"


def tenant_partition_name(tenant: str) -> str:
    return f"tenant-{tenant}"


def plan_partitions(index: SiteIndex, fabric: Fabric) -> tuple[PartitionPlan, ...]:
    """The partitions of one InfiniBand fabric, default first; none on RoCE (Ethernet has no P_Keys)."""
    if fabric.kind != "infiniband":
        return ()
    compute, services = fabric_hosts(index, fabric)
    on_fabric = set(compute)
    subnet_managers = [h for h in (fabric.subnet_manager.hosts if fabric.subnet_manager else []) if h not in services]
    isolated: dict[str, list[str]] = {}
    for tenant in index.site.tenants:
        if tenant.fabric_isolation:
            hosts = [h for pool in tenant.pools if pool in index.pools for h in index.pools[pool].hosts if h in on_fabric]
            if hosts:
                isolated[tenant.name] = hosts
    dedicated = {h for hosts in isolated.values() for h in hosts}
    shared = [h for h in compute if h not in dedicated]

    # opensm's SELF=full makes a subnet manager a full member wherever it runs (checks keep it off tenants' hosts).
    default_full = tuple(services) + tuple(subnet_managers)
    out = [PartitionPlan(DEFAULT_PARTITION, f"0x{DEFAULT_PARTITION_KEY:04x}", default_full,
                         tuple(h for h in compute if h not in subnet_managers), default=True, index0=True)]
    if shared:
        out.append(PartitionPlan(SHARED_PARTITION, f"0x{SHARED_PARTITION_KEY:04x}", tuple(shared), tuple(services), index0=True))
    for tenant in index.site.tenants:
        if tenant.name in isolated:
            out.append(PartitionPlan(tenant_partition_name(tenant.name), f"0x{tenant_partition_key(tenant):04x}",
                                     tuple(isolated[tenant.name]), tuple(services), tenant=tenant.name, index0=True))
    return tuple(out)


def reachable(partitions: tuple[PartitionPlan, ...]) -> dict[str, frozenset[str]]:
    """Host -> the other hosts it can exchange packets with over the fabric (the IB membership rule)."""
    peers: dict[str, set[str]] = {}
    for p in partitions:
        for host in p.full + p.limited:
            peers.setdefault(host, set())
        for host in p.full:
            for other in p.full + p.limited:
                if other != host:
                    peers[host].add(other)
                    peers[other].add(host)
    return {host: frozenset(others) for host, others in peers.items()}
