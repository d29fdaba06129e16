"""Lookups derived from a site model (host -> pool, rack names, ...), computed once."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

from .model import Fabric, NodeType, Pool, Site, Tenant

# InfiniBand P_Keys (15 bits; the top bit of a P_Key table entry says full or limited membership).
DEFAULT_PARTITION_KEY = 0x7FFF          # the default partition, by the InfiniBand specification
SHARED_PARTITION_KEY = 0x7FFE           # gigafactory's partition of the compute hosts no tenant has isolated
TENANT_PARTITION_KEYS = range(0x0001, 0x7FFE)   # what a tenant's partition may use: 0x0001-0x7ffd


def derived_partition_key(name: str) -> int:
    """A tenant's P_Key from its name alone (SHA-256 into 0x0001-0x7ffd): no other tenant's presence or order changes it."""
    digest = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
    return TENANT_PARTITION_KEYS.start + digest % len(TENANT_PARTITION_KEYS)


def tenant_partition_key(tenant: Tenant) -> int:
    """The P_Key the tenant declares, else the one derived from its name."""
    return int(tenant.partition_key, 16) if tenant.partition_key is not None else derived_partition_key(tenant.name)


@dataclass
class SiteIndex:
    site: Site
    host_pools: dict[str, list[int]] = field(default_factory=dict)
    fabric_plans: dict = field(default_factory=dict, repr=False)     # fabric index -> its plan (site/fabric.py), once
    placements: list = field(default_factory=list, repr=False)       # the placement and its problems (site/placement.py), once

    @classmethod
    def of(cls, site: Site) -> SiteIndex:
        """The index of ``site`` shared by whoever asks about the same Site object next: validation's checks, then
        the plan (placement, fabric plans and power computed once, not twice: about 0.3 s at 25,000 hosts). A Site is
        frozen, so its index stays true; only the last site's index is kept."""
        if _LAST and _LAST[0].site is site:
            return _LAST[0]
        index = cls(site)
        _LAST[:] = [index]
        return index

    def __post_init__(self) -> None:
        for i, pool in enumerate(self.site.pools):
            for host in pool.hosts:
                self.host_pools.setdefault(host, []).append(i)

    @cached_property
    def racks(self) -> dict[str, int]:
        """Rack name -> index of the ``racks`` entry that declares it."""
        out: dict[str, int] = {}
        for i, entry in enumerate(self.site.racks):
            for name in entry.names:
                out.setdefault(name, i)
        return out

    @cached_property
    def pools(self) -> dict[str, Pool]:
        return {p.name: p for p in self.site.pools}

    def pool_of(self, host: str) -> Pool | None:
        idx = self.host_pools.get(host)
        return self.site.pools[idx[0]] if idx else None

    def node_type(self, pool: Pool) -> NodeType | None:
        return self.site.node_types.get(pool.type)

    def pool_fabric(self, pool: Pool) -> Fabric | None:
        """The fabric a pool's HCAs attach to: named by the pool, else the site's only fabric."""
        node_type = self.node_type(pool)
        if node_type is None or node_type.hcas == 0:
            return None
        fabrics = {f.name: f for f in self.site.fabrics}
        if pool.fabric is not None:
            return fabrics.get(pool.fabric)
        return self.site.fabrics[0] if len(self.site.fabrics) == 1 else None

    @cached_property
    def compute_pools(self) -> frozenset[str]:
        """Pools that run workloads: GPU pools, Slurm partitions' pools, Kubernetes workers."""
        site = self.site
        names = {p.name for p in site.pools if (nt := self.node_type(p)) is not None and nt.gpus}
        if site.slurm is not None:
            names.update(p for part in site.slurm.partitions for p in part.pools)
        names.update(p for cluster in site.kubernetes for p in cluster.workers)
        return frozenset(names)

    def pool_gpus(self, pool_names: list[str]) -> int:
        total = 0
        for name in dict.fromkeys(pool_names):
            pool = self.pools.get(name)
            node_type = self.node_type(pool) if pool else None
            if pool and node_type:
                total += len(pool.hosts) * node_type.gpus
        return total


_LAST: list[SiteIndex] = []       # SiteIndex.of's memo: the last site's index (never more than one site kept)
