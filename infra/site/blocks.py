"""Slurm's block topology (24.11): which topology a Slurm cluster gets, and what its topology.conf may say.

The rules are those of Slurm 24.11.5's topology/block plugin (src/plugins/topology/block/block_record.c), so that
``validate`` refuses what would stop slurmctld: ``BlockSizes`` starts with the base block's node count and every
later size is the base times a power of two up to 2^15 ("Invalid BlockSizes value"); a block with fewer nodes
than the base is fatal ("children count lower than bblock_node_cnt"). One block is one NVLink domain.
"""

from __future__ import annotations

from .index import SiteIndex
from .model import Pool, Site

MAX_BLOCK_LEVEL = 15        # 24.11.5: an aggregated block is at most 2^15 base blocks (BlockSizes)
MAX_BLOCKS = 2 ** 15        # base blocks of one cluster: block_record_t.block_index is a uint16_t that also numbers the
                            # aggregated blocks (up to as many again), so more would wrap it


def slurm_pools(site: Site) -> list[Pool]:
    """The pools whose hosts are Slurm nodes (named by a partition), in the order the site declares them."""
    if site.slurm is None:
        return []
    named = {name for part in site.slurm.partitions for name in part.pools}
    return [pool for pool in site.pools if pool.name in named]


def nvlink_pools(site: Site) -> list[Pool]:
    """The Slurm pools whose node type is a tray of a rack-scale NVLink domain."""
    return [pool for pool in slurm_pools(site) if (nt := site.node_types.get(pool.type)) is not None and nt.nvlink is not None]


def topology_plugin(site: Site, index: SiteIndex) -> str | None:
    """``tree``, ``block`` or None: what ``slurm.topology`` asks for, ``auto`` resolved (block with an NVLink pool)."""
    if site.slurm is None or site.slurm.topology == "none":
        return None
    if site.slurm.topology == "auto":
        return "block" if nvlink_pools(site) else "tree"
    return site.slurm.topology


def block_level(size: int, base: int) -> int | None:
    """k where ``size`` = ``base`` x 2^k and k <= 15, as 24.11.5 reads a BlockSizes value; None if it would refuse it."""
    if size <= 0 or base <= 0 or size % base:
        return None
    quotient = size // base
    if quotient & (quotient - 1):
        return None
    level = quotient.bit_length() - 1
    return level if level <= MAX_BLOCK_LEVEL else None
