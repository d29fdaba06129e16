"""The plan: a pure, deterministic function of a validated site.

``build_plan(site)`` computes hosts, racks, addresses, the fabric, the Slurm
layout and the capacity summary once; every later layer reads this plan and
never re-derives an address or re-reads the YAML.
"""

from __future__ import annotations

from ..site import load_site
from ..site.index import SiteIndex
from ..site.model import Site
from ..site.problems import Problem, SiteInvalid
from ..site.addresses import allocate_networks
from ..site.fabric import FabricPlan, RailPlan, plan_fabric
from ..site.groups import group_name, inventory_groups
from .kubernetes import plan_clusters
from .model import Capacity, HostPlan, NetworkPlan, Plan, SlurmPlan
from .partitions import plan_partitions
from .remediation import plan_remediation
from ..site.placement import place
from ..site.power import FACILITY, PowerPlan, site_power_plan
from .slurm import plan_slurm

__all__ = ["Capacity", "FabricPlan", "HostPlan", "NetworkPlan", "Plan", "RailPlan", "SlurmPlan", "build_plan", "group_name", "inventory_groups",
           "site_and_plan"]


def site_and_plan(path: str) -> tuple[Site, Plan]:
    """The validated site of the file at ``path`` and its plan; raises SiteInvalid with every problem found."""
    site = load_site(path)
    return site, build_plan(site, path)


def build_plan(site: Site, source: str = "<site>") -> Plan:
    """The plan of a validated site (``load_site``'s checks already ran placement, addresses and power).

    Raises SiteInvalid if a site that skipped validation has no room for its hosts or their addresses.
    """
    index = SiteIndex.of(site)
    problems: list[Problem] = []
    placement = place(index, problems)
    placed = placement.hosts
    order = [h for pool in site.pools for h in pool.hosts]

    networks: dict[str, NetworkPlan] = {}
    addresses: dict[str, dict[str, str]] = {h: {} for h in order}
    for name, (net, assigned, blocks) in allocate_networks(site, problems).items():
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

    groups = inventory_groups(site, index, rails_of)
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
    slurm = plan_slurm(index, hosts, fabric_plans, placement.domains) if not problems else None
    clusters = plan_clusters(index, hosts, fabric_plans) if not problems else ()
    power = site_power_plan(index)
    capacity = _capacity(site, index, hosts, fabric_plans, power)
    if problems:
        raise SiteInvalid(source, problems)
    partitions = {f.name: parts for f in site.fabrics if (parts := plan_partitions(index, f))}
    return Plan(site.site.name, hosts, networks, fabric_plans, slurm, capacity, groups, clusters, ntp_servers(site),
                partitions=partitions, racks=placement.racks, domains=placement.domains,
                remediation=plan_remediation(site, slurm, clusters), power=power)


def ntp_servers(site: Site) -> tuple[str, ...]:
    """The site's time sources: as declared, else the Slurm controllers, else the first host."""
    if site.site.ntp_servers:
        return tuple(site.site.ntp_servers)
    if site.slurm is not None:
        return tuple(site.slurm.controllers)
    return (site.pools[0].hosts[0],)


def _capacity(site: Site, index: SiteIndex, hosts: dict[str, HostPlan], fabrics: tuple[FabricPlan, ...],
              power: PowerPlan) -> Capacity:
    """The site in figures; its IT load is the power plan's worst case (every GPU at its planned limit)."""
    it_kw = next(d.worst_kw for d in power.domains if d.name == FACILITY)
    facility_kw = round(it_kw * site.site.power.pue, 3)
    return Capacity(
        nodes=len(hosts),
        gpus=sum(site.node_types[h.node_type].gpus for h in hosts.values()),
        racks_used=len({h.rack for h in hosts.values() if h.rack}),
        racks_declared=len(index.racks),
        switches=sum(sum(f.switches.values()) for f in fabrics),
        it_kw=it_kw,
        facility_kw=facility_kw,
        facility_budget_kw=site.site.power.facility_kw,
        renewable_share=site.site.power.renewable_share,
    )
