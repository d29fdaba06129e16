"""Address allocation: stable under growth.

A host's address is ``block(prefix) + number``, where ``prefix`` and ``number``
come from its name (``gpu0042`` -> ``gpu``, 42), in the tradition of xCAT's
regular-expression addressing. Each name prefix gets one block per network,
in the order the prefix first appears in the site file, sized to the next power
of two above its largest number (at least 256 addresses in networks of 4,096 or
more, else 16) and aligned to its size; the first block stays free for gateways
and switches, and blocks never overlap a reserved range. So adding hosts to a
pool, or adding a pool, never moves a host that already has an address, as long
as a prefix's numbers stay inside its block (``gpu`` below 256 in riga-1).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from .hostlists import split_name
from .model import Network, Site
from .problems import Problem, field_path as fp

SITE_NETWORKS = ("management", "bmc", "storage")


def min_block(network: ipaddress.IPv4Network) -> int:
    return 256 if network.num_addresses >= 4096 else 16


def allocate(network: ipaddress.IPv4Network, hosts: Iterable[str], reserved: Iterable[ipaddress.IPv4Network],
             path: str, problems: list[Problem]) -> tuple[dict[str, str], dict[str, str]]:
    """(host -> "address/prefixlen", prefix -> block CIDR) for ``hosts`` on ``network``."""
    by_prefix: dict[str, list[tuple[str, int]]] = {}
    for host in hosts:
        prefix, number = split_name(host)
        by_prefix.setdefault(prefix, []).append((host, number))
    reserved = [r for r in reserved]
    smallest = min_block(network)
    base = int(network.network_address)
    size = network.num_addresses
    cursor = smallest                        # block 0: gateways and switches
    out: dict[str, str] = {}
    blocks: dict[str, str] = {}
    for prefix, members in by_prefix.items():
        largest = max(number for _, number in members)
        block = max(smallest, 1 << largest.bit_length())
        while True:
            cursor = -(-cursor // block) * block         # align up
            if cursor + block > size:
                problems.append(Problem(path, f"{network} is too small: hosts named {prefix}* (up to number {largest}) "
                                              f"need a block of {block} addresses after {cursor} already laid out"))
                return out, blocks
            candidate = ipaddress.IPv4Network((base + cursor, 32 - (block.bit_length() - 1)))
            clash = next((r for r in reserved if r.overlaps(candidate)), None)
            if clash is None:
                break
            cursor = int(clash.broadcast_address) - base + 1
        blocks[prefix] = str(candidate)
        plen = network.prefixlen
        broadcast = base + size - 1
        for host, number in members:
            address = base + cursor + number
            if address == broadcast:
                problems.append(Problem(path, f"{host} would take the broadcast address of {network}"))
                continue
            out[host] = f"{address >> 24}.{address >> 16 & 255}.{address >> 8 & 255}.{address & 255}/{plen}"
        cursor += block
    return out, blocks


def allocate_networks(site: Site, problems: list[Problem]) -> dict[str, tuple[Network, dict[str, str], dict[str, str]]]:
    """Each declared site network (management, bmc, storage): (network, host -> address, prefix -> block)."""
    hosts = [h for pool in site.pools for h in pool.hosts]
    out = {}
    for name in SITE_NETWORKS:
        net = getattr(site.networks, name)
        if net is None:
            continue
        reserved = [ipaddress.IPv4Network(r) for r in net.reserved]
        assigned, blocks = allocate(ipaddress.IPv4Network(net.cidr), hosts, reserved, fp("networks", name, "cidr"), problems)
        out[name] = (net, assigned, blocks)
    return out


def split_rails(network: ipaddress.IPv4Network, rails: int) -> list[ipaddress.IPv4Network]:
    """One equal subnet per rail, carved from the fabric's IP block in rail order."""
    extra = (rails - 1).bit_length()
    return list(network.subnets(prefixlen_diff=extra))[:rails]
