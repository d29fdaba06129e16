"""The site's Ansible groups (a role's, or one pool's, node type's, fabric's or cluster's) and their hosts: computed
once, for the plan and for the check that each group name has one meaning."""

from __future__ import annotations

from .index import SiteIndex
from .model import NfsStorage, Site
from .problems import Problem, field_path as fp


def group_name(*parts: str) -> str:
    """An Ansible-safe group name: ``("pool", "k8s-cp")`` -> ``pool_k8s_cp``."""
    return "_".join(parts).replace("-", "_")


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
