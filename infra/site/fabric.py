"""The fabric: scalable units, rail subnets, and the fat tree's bill of materials."""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass

from .addresses import allocate, split_rails
from .index import SiteIndex
from .model import Fabric
from .problems import Problem, field_path as fp


@dataclass(frozen=True, slots=True)
class RailPlan:
    fabric: str
    rail: int
    cidr: str
    interface: str
    blocks: dict[str, str]


@dataclass(frozen=True, slots=True)
class FabricPlan:
    name: str
    kind: str
    rate: str
    rails: tuple[RailPlan, ...]
    scalable_units: tuple[tuple[str, ...], ...]   # hosts per SU, in order
    service_hosts: tuple[str, ...]
    tiers: int
    switches: dict[str, int]            # role (leaf, service-leaf, spine, core) -> count
    cables: dict[str, int]              # link kind -> count
    power_kw: float
    subnet_managers: tuple[str, ...]


def fabric_hosts(index: SiteIndex, fabric: Fabric) -> tuple[list[str], list[str]]:
    """(compute hosts, service hosts) attached to ``fabric``, in site order.

    Compute hosts fill the scalable units; service hosts (controllers, storage,
    subnet managers) hang off service leaves.
    """
    compute, service = [], []
    for pool in index.site.pools:
        if index.pool_fabric(pool) is fabric:
            (compute if pool.name in index.compute_pools else service).extend(pool.hosts)
    return compute, service


def plan_fabric(index: SiteIndex, i: int, problems: list[Problem]) -> tuple[FabricPlan, dict[str, list[str]], dict[str, int]]:
    """The fabric plan, each host's rail addresses, and each GPU host's SU number."""
    fabric = index.site.fabrics[i]
    gpu_hosts, service_hosts = fabric_hosts(index, fabric)
    su = fabric.scalable_unit
    units = tuple(tuple(gpu_hosts[k:k + su]) for k in range(0, len(gpu_hosts), su))
    su_of = {host: n + 1 for n, members in enumerate(units) for host in members}

    hcas = {}
    for pool in index.site.pools:
        if index.pool_fabric(pool) is fabric:
            count = min(index.node_type(pool).hcas, fabric.rails)
            for host in pool.hosts:
                hcas[host] = count

    rails: list[RailPlan] = []
    host_rails: dict[str, list[str]] = {h: [] for h in hcas}
    if fabric.ipoib is not None:
        block = ipaddress.IPv4Network(fabric.ipoib.cidr)
        for r, subnet in enumerate(split_rails(block, fabric.rails)):
            members = [h for h, n in hcas.items() if n > r]
            addresses, blocks = allocate(subnet, members, (), fp("fabrics", i, "ipoib", "cidr"), problems)
            for host in members:
                if host in addresses:
                    host_rails[host].append(addresses[host])
            interface = (fabric.interfaces[r] if fabric.interfaces and r < len(fabric.interfaces)
                         else f"ib{r}" if fabric.kind == "infiniband" else f"rail{r}")
            rails.append(RailPlan(fabric.name, r, str(subnet), interface, blocks))

    half = fabric.switch.ports // 2
    endpoints_gpu = len(gpu_hosts) * fabric.rails
    endpoints_service = sum(hcas[h] for h in service_hosts)
    if fabric.topology == "rail-optimized":
        if su > half:
            problems.append(Problem(fp("fabrics", i, "scalable_unit"), f"a scalable unit of {su} nodes needs {su} down ports per rail leaf, "
                                    f"but a {fabric.switch.ports}-port {fabric.switch.model} has {half} (half its ports go up)"))
        leaves = len(units) * fabric.rails
    else:
        leaves = math.ceil(endpoints_gpu / half) if endpoints_gpu else 0
    service_leaves = math.ceil(endpoints_service / half) if endpoints_service else 0
    total_leaves = leaves + service_leaves
    switches = {"leaf": leaves, "service-leaf": service_leaves}
    cables = {"node-leaf": endpoints_gpu + endpoints_service}
    if total_leaves <= 1:
        tiers = 1
    elif total_leaves <= fabric.switch.ports:
        tiers = 2
        switches["spine"] = math.ceil(total_leaves * half / fabric.switch.ports)
        cables["leaf-spine"] = total_leaves * half
    else:
        tiers = 3
        pods = math.ceil(total_leaves / half)
        spines = pods * half
        switches["spine"] = spines
        switches["core"] = math.ceil(spines * half / fabric.switch.ports)
        cables["leaf-spine"] = total_leaves * half
        cables["spine-core"] = spines * half
    count = sum(switches.values())
    sms = tuple(fabric.subnet_manager.hosts) if fabric.subnet_manager else ()
    plan = FabricPlan(fabric.name, fabric.kind, fabric.rate, tuple(rails), units, tuple(service_hosts), tiers,
                      switches, cables, round(count * fabric.switch.power_kw, 3), sms)
    return plan, host_rails, su_of
