"""The Kubernetes view of the plan: per cluster, its hosts, GPU capacity and pod address pools.

Pure functions of the site and its planned hosts and fabrics, computed once by
``build_plan`` (``Plan.kubernetes``): render and the Pulumi layer read these values
and never do address arithmetic of their own.
"""

from __future__ import annotations

import ipaddress

from ..site.index import SiteIndex
from ..site.addresses import min_block
from ..site.fabric import FabricPlan, RailPlan
from .model import ClusterPlan, HostPlan, RailPodPool
from .tariffs import cluster_pricing


def pod_pool(rail: RailPlan) -> str:
    """The largest free part of a rail subnet, highest first: hosts' blocks and the gateway block stay out."""
    subnet = ipaddress.IPv4Network(rail.cidr)
    taken = [ipaddress.IPv4Network(b) for b in rail.blocks.values()]
    taken.append(ipaddress.IPv4Network((int(subnet.network_address), 32 - (min_block(subnet) - 1).bit_length())))
    free = [subnet]
    for block in taken:
        free = [part for net in free for part in (net.address_exclude(block) if block.subnet_of(net) else [net])]
    best = max(free, key=lambda n: (n.num_addresses, int(n.network_address)))
    return str(best)


def plan_clusters(index: SiteIndex, hosts: dict[str, HostPlan], fabric_plans: tuple[FabricPlan, ...]) -> tuple[ClusterPlan, ...]:
    """One ClusterPlan per ``kubernetes`` entry, in site order (``Plan.kubernetes``)."""
    out = []
    for cluster in index.site.kubernetes:
        pools = [index.pools[p] for p in cluster.workers]
        workers = sum(len(p.hosts) for p in pools)
        gpus = threads = memory = 0
        gpus_by_model: dict[str, int] = {}
        nvme = bool(pools)
        fabrics: list[str] = []
        for pool in pools:
            node_type = index.node_type(pool)
            n = len(pool.hosts)
            gpus += n * node_type.gpus
            if node_type.gpus:
                gpus_by_model[node_type.gpu.model] = gpus_by_model.get(node_type.gpu.model, 0) + n * node_type.gpus
            threads += n * node_type.cpu.sockets * node_type.cpu.cores_per_socket * node_type.cpu.threads_per_core
            memory += n * node_type.memory_gb
            nvme = nvme and node_type.local_nvme_tb > 0
            fabric = hosts[pool.hosts[0]].fabric
            if fabric and fabric not in fabrics:
                fabrics.append(fabric)
        pricing = None
        if index.site.billing is not None:
            storage_tb: dict[str, float] = {}
            for tenant in index.site.tenants:
                if tenant.kubernetes and tenant.kubernetes.cluster == cluster.name:
                    for system, tb in tenant.storage_tb.items():
                        storage_tb[system] = storage_tb.get(system, 0.0) + tb
            pricing = cluster_pricing(index.site.billing, gpus_by_model, storage_tb,
                                      {s.name: s.capacity_tb for s in index.site.storage})
        rails = tuple(
            RailPodPool(f.name, f.kind, r.rail, r.interface, r.cidr, pod_pool(r))
            for f in fabric_plans if f.name in fabrics for r in f.rails
        )
        out.append(ClusterPlan(
            name=cluster.name,
            version=cluster.version,
            group=f"k8s_{cluster.name}".replace("-", "_"),
            control_plane=tuple(cluster.control_plane),
            api_endpoint=hosts[cluster.control_plane[0]].address("management"),
            worker_pools=tuple(cluster.workers),
            workers=workers,
            gpus=gpus,
            cpus_per_gpu=threads // gpus if gpus else 0,
            memory_gb_per_gpu=memory // gpus if gpus else 0,
            local_nvme=nvme,
            pod_cidr=cluster.pod_cidr,
            service_cidr=cluster.service_cidr,
            addons=tuple(cluster.addons),
            rdma=cluster.rdma,
            rails=rails,
            pricing=pricing,
        ))
    return tuple(out)
