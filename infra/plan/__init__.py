"""The plan: a pure, deterministic function of a validated site.

``build_plan(site)`` computes hosts, racks, addresses, the fabric, the Slurm
layout and the capacity summary once; every later layer reads this plan and
never re-derives an address or re-reads the YAML.
"""

from __future__ import annotations

import ipaddress

from ..site.index import SiteIndex
from ..site.model import NfsStorage, Site
from ..site.problems import Problem, SiteInvalid, field_path as fp
from .addresses import allocate
from .fabric import plan_fabric
from .model import Capacity, FabricPlan, HostPlan, NetworkPlan, Plan, RailPlan, SlurmPlan
from .partitions import plan_partitions
from .placement import place_hosts
from .slurm import plan_slurm

__all__ = ["Capacity", "FabricPlan", "HostPlan", "NetworkPlan", "Plan", "RailPlan", "SlurmPlan", "build_plan", "group_name"]


def group_name(*parts: str) -> str:
    """An Ansible-safe group name: ``("pool", "k8s-cp")`` -> ``pool_k8s_cp``."""
    return "_".join(parts).replace("-", "_")


def build_plan(site: Site, source: str = "<site>") -> Plan:
    """The site's plan; raises SiteInvalid with every problem the plan finds (room, addresses, power)."""
    index = SiteIndex(site)
    problems: list[Problem] = []
    placed = place_hosts(index, problems)
    order = [h for pool in site.pools for h in pool.hosts]

    networks: dict[str, NetworkPlan] = {}
    addresses: dict[str, dict[str, str]] = {h: {} for h in order}
    for name in ("management", "bmc", "storage"):
        net = getattr(site.networks, name)
        if net is None:
            continue
        cidr = ipaddress.IPv4Network(net.cidr)
        reserved = [ipaddress.IPv4Network(r) for r in net.reserved]
        assigned, blocks = allocate(cidr, order, reserved, fp("networks", name, "cidr"), problems)
        for host, address in assigned.items():
            addresses[host][name] = address
        networks[name] = NetworkPlan(name, net.cidr, net.vlan, net.mtu, net.interface, blocks)

    fabrics: list[FabricPlan] = []
    rails_of: dict[str, tuple[str, list[str]]] = {}
    su_of: dict[str, int] = {}
    for i, fabric in enumerate(site.fabrics):
        plan, host_rails, units = plan_fabric(index, i, problems)
        fabrics.append(plan)
        for host, rails in host_rails.items():
            rails_of[host] = (fabric.name, rails)
        su_of.update(units)

    groups = _groups(site, index, rails_of)
    host_groups: dict[str, list[str]] = {h: [] for h in order}
    for group, members in groups.items():
        for host in members:
            host_groups[host].append(group)

    hosts: dict[str, HostPlan] = {}
    for pool in site.pools:
        for host in pool.hosts:
            rack, unit = placed.get(host, ("", 0))
            fabric_name, rails = rails_of.get(host, (None, []))
            hosts[host] = HostPlan(host, pool.name, pool.type, rack, unit, tuple(host_groups[host]),
                                   addresses[host], tuple(rails), fabric_name, su_of.get(host))

    fabric_plans = tuple(fabrics)
    slurm = plan_slurm(index, hosts, fabric_plans) if not problems else None
    capacity = _capacity(site, index, hosts, fabric_plans)
    if capacity.facility_kw > capacity.facility_budget_kw:
        problems.append(Problem("site.power.facility_kw", f"the site needs {capacity.facility_kw:g} kW (IT load {capacity.it_kw:g} kW "
                                f"x PUE {site.site.power.pue:g}), more than the contracted {capacity.facility_budget_kw:g} kW"))
    if problems:
        raise SiteInvalid(source, problems)
    partitions = {f.name: parts for f in site.fabrics if (parts := plan_partitions(index, f))}
    return Plan(site.site.name, hosts, networks, fabric_plans, slurm, capacity, groups, partitions=partitions)


def _groups(site: Site, index: SiteIndex, rails_of: dict) -> dict[str, tuple[str, ...]]:
    groups: dict[str, list[str]] = {}
    seen: dict[str, set[str]] = {}

    def add(group: str, members) -> None:
        have, out = seen.setdefault(group, set()), groups.setdefault(group, [])
        for m in members:
            if m not in have:
                have.add(m)
                out.append(m)

    for pool in site.pools:
        add(group_name("pool", pool.name), pool.hosts)
        add(group_name("type", pool.type), pool.hosts)
        if index.node_type(pool).gpus:
            add("gpu", pool.hosts)
    for host, (fabric, _) in rails_of.items():
        add(group_name("fabric", fabric), [host])
        add("rdma", [host])
    for fabric in site.fabrics:
        if fabric.subnet_manager:
            add("subnet_manager", fabric.subnet_manager.hosts)
    if site.slurm is not None:
        s = site.slurm
        add("slurm_controller", s.controllers)
        add("slurm_dbd", [s.accounting.host])
        add("slurm_login", s.login)
        add("slurm_compute", [h for p in dict.fromkeys(p for part in s.partitions for p in part.pools) for h in index.pools[p].hosts])
        add("slurm", [h for g in ("slurm_controller", "slurm_dbd", "slurm_login", "slurm_compute") for h in groups.get(g, ())])
    for cluster in site.kubernetes:
        workers = [h for p in cluster.workers for h in index.pools[p].hosts]
        add("k8s_control_plane", cluster.control_plane)
        add("k8s_worker", workers)
        add(group_name("k8s", cluster.name), list(cluster.control_plane) + workers)
    for system in site.storage:
        if isinstance(system, NfsStorage):
            add("nfs_server", [system.server])
    return {g: tuple(m) for g, m in groups.items()}


def _capacity(site: Site, index: SiteIndex, hosts: dict[str, HostPlan], fabrics: tuple[FabricPlan, ...]) -> Capacity:
    node_kw = sum(site.node_types[h.node_type].power_kw for h in hosts.values())
    switch_kw = sum(f.power_kw for f in fabrics)
    it_kw = round(node_kw + switch_kw, 3)
    return Capacity(
        nodes=len(hosts),
        gpus=sum(site.node_types[h.node_type].gpus for h in hosts.values()),
        racks_used=len({h.rack for h in hosts.values() if h.rack}),
        racks_declared=len(index.racks),
        switches=sum(sum(f.switches.values()) for f in fabrics),
        it_kw=it_kw,
        facility_kw=round(it_kw * site.site.power.pue, 3),
        facility_budget_kw=site.site.power.facility_kw,
        renewable_share=site.site.power.renewable_share,
    )
