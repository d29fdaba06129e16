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
    """The fabric plan, each host's rail addresses, and each GPU host's SU number; its problems added to ``problems``.

    Computed once per index (three checks and the plan ask: at 25,000 hosts each rail's addresses take a while).
    """
    if i not in index.fabric_plans:
        found: list[Problem] = []
        index.fabric_plans[i] = (*_plan_fabric(index, i, found), tuple(found))
    plan, host_rails, su_of, found = index.fabric_plans[i]
    problems.extend(found)
    return plan, host_rails, su_of


def _plan_fabric(index: SiteIndex, i: int, problems: list[Problem]) -> tuple[FabricPlan, dict[str, list[str]], dict[str, int]]:
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

    endpoints_gpu = sum(hcas[h] for h in gpu_hosts)            # a tray's rails: its node type's HCAs on this fabric
    endpoints_service = sum(hcas[h] for h in service_hosts)
    if fabric.topology == "rail-optimized":
        half = fabric.switch.ports // 2
        if su > half:
            problems.append(Problem(fp("fabrics", i, "scalable_unit"), f"a scalable unit of {su} nodes needs {su} down ports per rail leaf, "
                                    f"but a {fabric.switch.ports}-port {fabric.switch.model} has {half} (half its ports go up)"))
        leaves = sum(max(hcas[h] for h in unit) for unit in units)   # one leaf per rail per scalable unit
    else:
        leaves = _leaves(endpoints_gpu, fabric.switch.ports)
    tiers, switches, cables = fat_tree(leaves, _leaves(endpoints_service, fabric.switch.ports), fabric.switch.ports)
    cables = {"node-leaf": endpoints_gpu + endpoints_service, **cables}
    count = sum(switches.values())
    sms = tuple(fabric.subnet_manager.hosts) if fabric.subnet_manager else ()
    plan = FabricPlan(fabric.name, fabric.kind, fabric.rate, tuple(rails), units, tuple(service_hosts), tiers,
                      switches, cables, round(count * fabric.switch.power_kw, 3), sms)
    return plan, host_rails, su_of


def _leaves(endpoints: int, ports: int) -> int:
    return math.ceil(endpoints / (ports // 2)) if endpoints else 0


def fat_tree(leaves: int, service_leaves: int, ports: int) -> tuple[int, dict[str, int], dict[str, int]]:
    """(tiers, switches per role, cables per link kind) of a non-blocking fat tree of ``ports``-port switches above
    ``leaves`` compute and ``service_leaves`` service leaves, each switch below the top with half its ports down.

    Two tiers while one spine layer reaches every leaf. Past that, blocks: a pod is ``ports / 2`` leaves under
    ``ports / 2`` spines; while the blocks outnumber what one top switch reaches (``ports``), ``ports / 2`` blocks
    form the next block under as many switches as one block has up-links. The top tier (core) uses every port down.
    Three tiers join ``ports³ / 4`` ports, four ``ports⁴ / 8``.
    """
    half = ports // 2
    total = leaves + service_leaves
    switches = {"leaf": leaves, "service-leaf": service_leaves}
    if total <= 1:
        return 1, switches, {}
    if total <= ports:
        switches["spine"] = math.ceil(total * half / ports)
        return 2, switches, {"leaf-spine": total * half}
    levels: list[int] = []               # switches per tier above the leaves, below the top
    blocks, uplinks = total, half        # blocks of this tier (leaves first) and each one's up-links
    while blocks > ports:
        blocks = math.ceil(blocks / half)
        levels.append(blocks * uplinks)
        uplinks *= half
    names = ["spine"] + (["super-spine"] if len(levels) == 2 else [f"tier-{n}" for n in range(3, len(levels) + 2)])
    cables = {"leaf-spine": total * half}
    below = "spine"
    for name, count in zip(names, levels, strict=True):
        switches[name] = count
        if name != "spine":
            cables[f"{below}-{name}"] = switches[below] * half
            below = name
    switches["core"] = math.ceil(blocks * uplinks / ports)
    cables[f"{below}-core"] = switches[below] * half
    return len(levels) + 2, switches, cables
