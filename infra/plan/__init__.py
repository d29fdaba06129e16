"""The plan: a pure, deterministic function of a validated site.

``build_plan(site)`` computes hosts, racks, addresses, the fabric, the Slurm
layout and the capacity summary once; every later layer reads this plan and
never re-derives an address or re-reads the YAML.
"""

from __future__ import annotations

from ..site.index import SiteIndex
from ..site.model import NfsStorage, Site
from ..site.problems import Problem, SiteInvalid, field_path as fp
from .addresses import allocate_networks
from .fabric import plan_fabric
from .kubernetes import plan_clusters
from .model import Capacity, FabricPlan, HostPlan, NetworkPlan, Plan, RailPlan, SlurmPlan
from .partitions import plan_partitions
from .placement import place_hosts
from .power import site_power_kw
from .slurm import plan_slurm

__all__ = ["Capacity", "FabricPlan", "HostPlan", "NetworkPlan", "Plan", "RailPlan", "SlurmPlan", "build_plan", "group_name", "inventory_groups"]


def group_name(*parts: str) -> str:
    """An Ansible-safe group name: ``("pool", "k8s-cp")`` -> ``pool_k8s_cp``."""
    return "_".join(parts).replace("-", "_")


def build_plan(site: Site, source: str = "<site>") -> Plan:
    """The plan of a validated site (``load_site``'s checks already ran placement, addresses and power).

    Raises SiteInvalid if a site that skipped validation has no room for its hosts or their addresses.
    """
    index = SiteIndex(site)
    problems: list[Problem] = []
    placed = place_hosts(index, problems)
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
    slurm = plan_slurm(index, hosts, fabric_plans) if not problems else None
    clusters = plan_clusters(index, hosts, fabric_plans) if not problems else ()
    capacity = _capacity(site, index, hosts, fabric_plans)
    if problems:
        raise SiteInvalid(source, problems)
    partitions = {f.name: parts for f in site.fabrics if (parts := plan_partitions(index, f))}
    return Plan(site.site.name, hosts, networks, fabric_plans, slurm, capacity, groups, clusters, ntp_servers(site),
                partitions=partitions)


def ntp_servers(site: Site) -> tuple[str, ...]:
    """The site's time sources: as declared, else the Slurm controllers, else the first host."""
    if site.site.ntp_servers:
        return tuple(site.site.ntp_servers)
    if site.slurm is not None:
        return tuple(site.slurm.controllers)
    return (site.pools[0].hosts[0],)


ROLE_GROUPS = ("gpu", "rdma", "subnet_manager", "boot_server", "slurm_controller", "slurm_dbd", "slurm_login",
               "slurm_compute", "slurm", "k8s_control_plane", "k8s_worker", "nfs_server", "execution")
"""The groups named for a role, which the playbooks take as host patterns: no host may be named like one, whether
or not the site has such hosts (a pattern naming an empty group would match the host of that name)."""


def inventory_groups(site: Site, index: SiteIndex, rails_of: dict, problems: list[Problem] | None = None) -> dict[str, tuple[str, ...]]:
    """Every Ansible group of the site and its hosts. Each group has one meaning (a role, or one pool, node type,
    fabric or cluster); a name that two meanings produce, or that is also a host's, is appended to ``problems``
    (their groups would merge, e.g. a cluster named 'worker' with every cluster's workers)."""
    groups: dict[str, list[str]] = {}
    seen: dict[str, set[str]] = {}
    meaning: dict[str, str] = {}

    def add(group: str, members, what: str = "", path: str = "") -> None:
        assert what or group in ROLE_GROUPS, group     # a role's group is one of ROLE_GROUPS
        what = what or f"role {group!r}"
        first = meaning.setdefault(group, what)
        if first != what and problems is not None:
            problems.append(Problem(path, f"{what} and {first} both give Ansible group {group!r}: their hosts would "
                                          f"merge into one group; rename {what}"))
        have, out = seen.setdefault(group, set()), groups.setdefault(group, [])
        for m in members:
            if m not in have:
                have.add(m)
                out.append(m)

    for i, pool in enumerate(site.pools):
        add(group_name("pool", pool.name), pool.hosts, f"pool {pool.name!r}", fp("pools", i, "name"))
        add(group_name("type", pool.type), pool.hosts, f"node type {pool.type!r}", fp("pools", i, "type"))
        if (node_type := index.node_type(pool)) is not None and node_type.gpus:
            add("gpu", pool.hosts)
    for host, (fabric, _) in rails_of.items():
        add(group_name("fabric", fabric), [host], f"fabric {fabric!r}", "fabrics")
        add("rdma", [host])
    for fabric in site.fabrics:
        if fabric.subnet_manager:
            add("subnet_manager", fabric.subnet_manager.hosts)
    if site.provisioning.images is not None:
        add("boot_server", [site.provisioning.images.server])
    if site.slurm is not None:
        s = site.slurm
        add("slurm_controller", s.controllers)
        add("slurm_dbd", [s.accounting.host])
        add("slurm_login", s.login)
        add("slurm_compute", [h for p in dict.fromkeys(p for part in s.partitions for p in part.pools)
                              for h in (index.pools[p].hosts if p in index.pools else ())])
        add("slurm", [h for g in ("slurm_controller", "slurm_dbd", "slurm_login", "slurm_compute") for h in groups.get(g, ())])
    for i, cluster in enumerate(site.kubernetes):
        workers = [h for p in cluster.workers for h in (index.pools[p].hosts if p in index.pools else ())]
        add("k8s_control_plane", cluster.control_plane)
        add("k8s_worker", workers)
        add(group_name("k8s", cluster.name), list(cluster.control_plane) + workers, f"cluster {cluster.name!r}",
            fp("kubernetes", i, "name"))
    for system in site.storage:
        if isinstance(system, NfsStorage):
            add("nfs_server", [system.server])
    # Hosts of the site that run Ansible for others (provisioning.execution; the controller is no host of the site).
    executors = [h for h in site.provisioning.execution.hosts if h in index.host_pools]
    if executors:
        add("execution", executors)
    if problems is not None:
        for host, pools in index.host_pools.items():
            if host in groups or host in ROLE_GROUPS:
                what = meaning.get(host, f"role {host!r}")
                problems.append(Problem(fp("pools", pools[0], "hosts"), f"host {host!r} has the name of Ansible group "
                                        f"{host!r} ({what}): a pattern naming one would match both; rename the host"))
    return {g: tuple(m) for g, m in groups.items()}


def _capacity(site: Site, index: SiteIndex, hosts: dict[str, HostPlan], fabrics: tuple[FabricPlan, ...]) -> Capacity:
    it_kw, facility_kw = site_power_kw(site, {h.name: h.node_type for h in hosts.values()}, fabrics)
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
