"""Semantic checks of a site: one function per check, all run, all problems collected.

Each check is registered with ``@check`` and yields ``Problem``s naming the field.
``tests/test_checks_registered.py`` proves every function here is registered.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable, Iterator

from .addresses import allocate_networks
from .blocks import MAX_BLOCKS, block_level, nvlink_pools, topology_plugin
from .fabric import plan_fabric
from .groups import inventory_groups
from .hostlists import split_name
from .index import DEFAULT_PARTITION_KEY, SHARED_PARTITION_KEY, TENANT_PARTITION_KEYS, SiteIndex, tenant_partition_key
from .model import CONTROLLER, Kubernetes, LustreStorage, NfsStorage, Repository, Site
from .openpgp import NotAKey, key_fingerprints
from .placement import RackLimits, describe_load, item_load, place
from .power import FACILITY, site_power_plan
from .problems import Problem, field_path as fp

Check = Callable[[Site, SiteIndex], Iterator[Problem]]
CHECKS: list[Check] = []

EU_EEA = frozenset(
    "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE IS LI NO".split())
KNOWN_DRIVER_BRANCHES = frozenset({"535", "550", "560", "565", "570", "575", "580"})
# What each Debian release ships (main/contrib/non-free), for source: distribution.
DISTRIBUTION = {
    "12": {"nvidia_driver": "535", "cuda": "11.8", "slurm": "22.05"},
    "13": {"nvidia_driver": "550", "cuda": "12.4", "slurm": "24.11"},
}
OPEN_ONLY_GPUS = ("B200", "B300", "GB200", "GB300")  # Blackwell: open kernel modules only
KUBERNETES_VERSIONS = ("1.30", "1.31", "1.32", "1.33", "1.34")


def check(func: Check) -> Check:
    CHECKS.append(func)
    return func


def run_checks(site: Site) -> list[Problem]:
    index = SiteIndex.of(site)
    return [problem for func in CHECKS for problem in func(site, index)]


def _choices(names) -> str:
    names = list(names)
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    return shown or "(none declared)"


# --- names resolve ------------------------------------------------------------------


@check
def hosts_in_exactly_one_pool(site: Site, index: SiteIndex) -> Iterator[Problem]:
    for host, pools in index.host_pools.items():
        if len(pools) > 1:
            names = [site.pools[i].name for i in pools]
            yield Problem(fp("pools", pools[1], "hosts"), f"host {host!r} is already in pool {names[0]!r}; a host belongs to exactly one pool")


@check
def pool_names_unique(site: Site, index: SiteIndex) -> Iterator[Problem]:
    seen: set[str] = set()
    for i, pool in enumerate(site.pools):
        if pool.name in seen:
            yield Problem(fp("pools", i, "name"), f"pool {pool.name!r} is declared twice")
        seen.add(pool.name)


@check
def pool_node_types_exist(site: Site, index: SiteIndex) -> Iterator[Problem]:
    for i, pool in enumerate(site.pools):
        if pool.type not in site.node_types:
            yield Problem(fp("pools", i, "type"), f"unknown node type {pool.type!r}; declared node types: {_choices(site.node_types)}")


@check
def pool_racks_exist(site: Site, index: SiteIndex) -> Iterator[Problem]:
    for i, pool in enumerate(site.pools):
        missing = [r for r in pool.racks if r not in index.racks]
        if missing:
            yield Problem(fp("pools", i, "racks"), f"unknown rack(s) {_choices(missing)}; declared racks: {_choices(index.racks)}")


@check
def rack_names_unique(site: Site, index: SiteIndex) -> Iterator[Problem]:
    counts = Counter(name for entry in site.racks for name in entry.names)
    for i, entry in enumerate(site.racks):
        twice = [n for n in entry.names if counts[n] > 1]
        if twice:
            yield Problem(fp("racks", i, "names"), f"rack(s) {_choices(twice)} declared more than once")
            for n in twice:
                counts[n] = 1


@check
def pool_fabric_exists(site: Site, index: SiteIndex) -> Iterator[Problem]:
    names = [f.name for f in site.fabrics]
    for i, pool in enumerate(site.pools):
        if pool.fabric is not None and pool.fabric not in names:
            yield Problem(fp("pools", i, "fabric"), f"unknown fabric {pool.fabric!r}; declared fabrics: {_choices(names)}")


def _host_refs(site: Site, index: SiteIndex, path: str, hosts, what: str) -> Iterator[Problem]:
    for host in hosts:
        if host not in index.host_pools:
            yield Problem(path, f"{what} {host!r} is not a host of any pool")


@check
def slurm_hosts_exist(site: Site, index: SiteIndex) -> Iterator[Problem]:
    if site.slurm is None:
        return
    s = site.slurm
    yield from _host_refs(site, index, "slurm.controllers", s.controllers, "controller")
    if len(set(s.controllers)) != len(s.controllers):
        yield Problem("slurm.controllers", "the primary and backup controller must be different hosts")
    yield from _host_refs(site, index, "slurm.accounting.host", [s.accounting.host], "accounting host")
    yield from _host_refs(site, index, "slurm.login", s.login, "login host")


@check
def boot_server_is_a_host(site: Site, index: SiteIndex) -> Iterator[Problem]:
    if site.provisioning.images is not None:
        yield from _host_refs(site, index, "provisioning.images.server", [site.provisioning.images.server], "boot server")


@check
def pool_macs_name_its_hosts_once(site: Site, index: SiteIndex) -> Iterator[Problem]:
    owner: dict[str, str] = {}
    for i, pool in enumerate(site.pools):
        for host, mac in pool.macs.items():
            if host not in pool.hosts:
                yield Problem(fp("pools", i, "macs", host), f"host {host!r} is not a host of pool {pool.name!r}")
            if mac in owner:
                yield Problem(fp("pools", i, "macs", host), f"MAC {mac} is already host {owner[mac]!r}'s")
            owner.setdefault(mac, host)


@check
def slurm_partitions_resolve(site: Site, index: SiteIndex) -> Iterator[Problem]:
    if site.slurm is None:
        return
    names = Counter(p.name for p in site.slurm.partitions)
    for i, part in enumerate(site.slurm.partitions):
        for pool in part.pools:
            if pool not in index.pools:
                yield Problem(fp("slurm", "partitions", i, "pools"), f"unknown pool {pool!r}; declared pools: {_choices(index.pools)}")
        if names[part.name] > 1:
            yield Problem(fp("slurm", "partitions", i, "name"), f"partition {part.name!r} is declared more than once")
    defaults = [p.name for p in site.slurm.partitions if p.default]
    if len(defaults) > 1:
        yield Problem("slurm.partitions", f"only one partition may be the default; {', '.join(defaults)} all say default: true")


@check
def slurm_accounts_unique(site: Site, index: SiteIndex) -> Iterator[Problem]:
    seen: dict[str, str] = {}
    for i, tenant in enumerate(site.tenants):
        if tenant.slurm is None:
            continue
        account = tenant.slurm.account
        if account in seen:
            yield Problem(fp("tenants", i, "slurm", "account"), f"account {account!r} is already tenant {seen[account]!r}'s; each tenant needs its own")
        else:
            seen[account] = tenant.name
        if site.slurm is None:
            yield Problem(fp("tenants", i, "slurm"), "the site declares no slurm section")


@check
def tenant_names_unique(site: Site, index: SiteIndex) -> Iterator[Problem]:
    counts = Counter(t.name for t in site.tenants)
    for i, tenant in enumerate(site.tenants):
        if counts[tenant.name] > 1:
            yield Problem(fp("tenants", i, "name"), f"tenant {tenant.name!r} is declared more than once")
            counts[tenant.name] = 1


@check
def kubernetes_clusters_resolve(site: Site, index: SiteIndex) -> Iterator[Problem]:
    names = Counter(c.name for c in site.kubernetes)
    for i, cluster in enumerate(site.kubernetes):
        if names[cluster.name] > 1:
            yield Problem(fp("kubernetes", i, "name"), f"cluster {cluster.name!r} is declared more than once")
        yield from _host_refs(site, index, fp("kubernetes", i, "control_plane"), cluster.control_plane, "control-plane host")
        for pool in cluster.workers:
            if pool not in index.pools:
                yield Problem(fp("kubernetes", i, "workers"), f"unknown pool {pool!r}; declared pools: {_choices(index.pools)}")
        if cluster.version not in KUBERNETES_VERSIONS:
            yield Problem(fp("kubernetes", i, "version"), f"Kubernetes {cluster.version} is not supported; supported: {', '.join(KUBERNETES_VERSIONS)}")


@check
def pools_serve_one_scheduler(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """A pool's nodes are either Slurm's or a Kubernetes cluster's, never both."""
    slurm_pools = {p for part in (site.slurm.partitions if site.slurm else []) for p in part.pools}
    owner: dict[str, str] = {}
    for i, cluster in enumerate(site.kubernetes):
        for pool in cluster.workers:
            if pool in slurm_pools:
                yield Problem(fp("kubernetes", i, "workers"), f"pool {pool!r} already serves Slurm partitions; a pool serves one scheduler")
            elif pool in owner:
                yield Problem(fp("kubernetes", i, "workers"), f"pool {pool!r} already works for cluster {owner[pool]!r}")
            owner.setdefault(pool, cluster.name)


@check
def tenant_clusters_resolve(site: Site, index: SiteIndex) -> Iterator[Problem]:
    clusters = [c.name for c in site.kubernetes]
    namespaces: set[tuple[str, str]] = set()
    for i, tenant in enumerate(site.tenants):
        k = tenant.kubernetes
        if k is None:
            continue
        if k.cluster not in clusters:
            yield Problem(fp("tenants", i, "kubernetes", "cluster"), f"unknown cluster {k.cluster!r}; declared clusters: {_choices(clusters)}")
        if (k.cluster, k.namespace) in namespaces:
            yield Problem(fp("tenants", i, "kubernetes", "namespace"), f"namespace {k.namespace!r} in cluster {k.cluster!r} already belongs to another tenant")
        namespaces.add((k.cluster, k.namespace))


# Namespaces a tenant may not take: Kubernetes' own (and any 'kube-' one) and those the add-ons install into.
RESERVED_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease", "gpu-operator",
                       "nvidia-network-operator", "node-feature-discovery", "kueue-system", "monitoring", "opencost",
                       "nvidia-dra-driver-gpu")
NODE_CIDR_PREFIX = 24           # kubeadm's default: each node gets a /24 of the pod network


@check
def tenant_namespaces_not_reserved(site: Site, index: SiteIndex) -> Iterator[Problem]:
    for i, tenant in enumerate(site.tenants):
        k = tenant.kubernetes
        if k is not None and (k.namespace in RESERVED_NAMESPACES or k.namespace.startswith("kube-")):
            yield Problem(fp("tenants", i, "kubernetes", "namespace"), f"namespace {k.namespace!r} belongs to Kubernetes or an add-on; "
                          "give the tenant its own")


@check
def tenant_groups_not_kubernetes_system(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """A tenant's RoleBinding names its own group: 'system:authenticated' would give every user of the cluster edit rights."""
    for i, tenant in enumerate(site.tenants):
        k = tenant.kubernetes
        if k is not None and k.group is not None and k.group.startswith("system:"):
            yield Problem(fp("tenants", i, "kubernetes", "group"), f"group {k.group!r} is one Kubernetes gives meaning to "
                          "('system:' groups hold every authenticated user, service account or node); name the tenant's own group")


@check
def kubernetes_cidrs_sized(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """The pod network has a /24 for every node; the service network is no larger than a /12."""
    for i, cluster in enumerate(site.kubernetes):
        nodes = len(set(cluster.control_plane)) + sum(len(index.pools[p].hosts) for p in cluster.workers if p in index.pools)
        pods = ipaddress.IPv4Network(cluster.pod_cidr)
        slots = 2 ** (NODE_CIDR_PREFIX - pods.prefixlen) if pods.prefixlen <= NODE_CIDR_PREFIX else 0
        if slots < nodes:
            yield Problem(fp("kubernetes", i, "pod_cidr"), f"{pods} holds {slots} node subnets of /{NODE_CIDR_PREFIX}, "
                          f"but cluster {cluster.name!r} has {nodes} nodes")
        if ipaddress.IPv4Network(cluster.service_cidr).prefixlen < 12:
            yield Problem(fp("kubernetes", i, "service_cidr"), f"{cluster.service_cidr} is larger than a /12, which Kubernetes refuses")


@check
def kubernetes_addons_fit_cluster(site: Site, index: SiteIndex) -> Iterator[Problem]:
    for i, cluster in enumerate(site.kubernetes):
        if "gpu-operator" in cluster.addons and index.pool_gpus([p for p in cluster.workers if p in index.pools]) == 0:
            yield Problem(fp("kubernetes", i, "addons"), f"the gpu-operator add-on needs GPU workers; cluster {cluster.name!r} has none")
        if cluster.rdma == "sriov" and "network-operator" not in cluster.addons:
            yield Problem(fp("kubernetes", i, "rdma"), "rdma: sriov is set up by the network-operator add-on; add it to addons")
        if "opencost" in cluster.addons and "monitoring" not in cluster.addons:
            yield Problem(fp("kubernetes", i, "addons"), f"the opencost add-on reads the cluster's Prometheus; add monitoring "
                          f"to the addons of cluster {cluster.name!r}")
        if "opencost" in cluster.addons and site.billing is None:
            yield Problem(fp("kubernetes", i, "addons"), "the opencost add-on prices from billing.tariffs; the site has no "
                          "billing section")


# NVIDIA's DRA driver (the compute-domains add-on) serves resource.k8s.io/v1, GA and on by default from Kubernetes 1.34
DRA_KUBERNETES = "1.34"


def _nvlink_workers(cluster: Kubernetes, index: SiteIndex) -> list[str]:
    """The cluster's worker pools whose node type is a tray of an NVLink domain."""
    return [p for p in cluster.workers if p in index.pools and (nt := index.node_type(index.pools[p])) and nt.nvlink]


@check
def kubernetes_nvlink_workers_have_compute_domains(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """NVLink-domain workers come with the compute-domains add-on and it with them: the host IMEX service is masked on
    those nodes, so the DRA driver's ComputeDomains are the only way a pod reaches another tray's GPUs."""
    for i, cluster in enumerate(site.kubernetes):
        nvlink, asked = _nvlink_workers(cluster, index), "compute-domains" in cluster.addons
        if nvlink and not asked:
            yield Problem(fp("kubernetes", i, "addons"), f"pool(s) {', '.join(nvlink)} of cluster {cluster.name!r} are "
                          "trays of NVLink domains; add compute-domains (NVIDIA's DRA driver runs their IMEX daemons, "
                          "the host's IMEX service is masked on Kubernetes workers)")
        if asked and not nvlink:
            yield Problem(fp("kubernetes", i, "addons"), f"the compute-domains add-on serves NVLink-domain trays; no worker "
                          f"pool of cluster {cluster.name!r} has a node type with nvlink, so no ComputeDomain could start")
        if asked and "gpu-operator" not in cluster.addons:
            yield Problem(fp("kubernetes", i, "addons"), "the compute-domains add-on leaves GPUs to the gpu-operator's "
                          "device plugin and places its kubelet plugin by the labels NFD gives GPU nodes; add gpu-operator "
                          f"to the addons of cluster {cluster.name!r}")


@check
def kubernetes_version_serves_dra(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """ComputeDomains are claimed through DRA's resource.k8s.io/v1, served by default from Kubernetes 1.34."""
    for i, cluster in enumerate(site.kubernetes):
        why = "the compute-domains add-on" if "compute-domains" in cluster.addons else \
            "NVLink-domain workers" if _nvlink_workers(cluster, index) else None
        older = tuple(map(int, cluster.version.split("."))) < tuple(map(int, DRA_KUBERNETES.split(".")))
        if why and older:
            yield Problem(fp("kubernetes", i, "version"), f"cluster {cluster.name!r} has {why}: ComputeDomains are "
                          f"claimed through DRA (resource.k8s.io/v1), GA and enabled by default from Kubernetes "
                          f"{DRA_KUBERNETES}; {cluster.version} is older")


@check
def kubernetes_control_plane_dedicated(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """A control-plane host serves one cluster and is no Slurm node."""
    slurm_pools = {p for part in (site.slurm.partitions if site.slurm else []) for p in part.pools}
    owner: dict[str, str] = {}
    for cluster in site.kubernetes:
        for pool in cluster.workers:
            for host in (index.pools[pool].hosts if pool in index.pools else []):
                owner.setdefault(host, cluster.name)
    for i, cluster in enumerate(site.kubernetes):
        for host in cluster.control_plane:
            pool = index.pool_of(host)
            if pool is not None and pool.name in slurm_pools:
                yield Problem(fp("kubernetes", i, "control_plane"), f"control-plane host {host!r} is in pool {pool.name!r}, which serves Slurm")
            elif owner.get(host, cluster.name) != cluster.name:
                yield Problem(fp("kubernetes", i, "control_plane"), f"control-plane host {host!r} already belongs to cluster {owner[host]!r}")
            owner.setdefault(host, cluster.name)


@check
def kubernetes_addons_have_chart_mirror(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """A warning: without a chart mirror, add-ons come from chart archives kept in the repository's charts/ folder."""
    if site.repositories.charts is not None:
        return
    for cluster in site.kubernetes:
        if cluster.addons:
            yield Problem("repositories.charts", f"cluster {cluster.name!r} asks for add-ons ({', '.join(cluster.addons)}) but the site "
                          "names no Helm chart mirror; set repositories.charts, or keep the pinned chart archives in charts/",
                          severity="warning")
            return


@check
def kubernetes_has_package_mirror(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """A warning: kubeadm and kubelet are not in Debian, so a cluster's bootstrap needs the site's Kubernetes mirror."""
    if site.repositories.kubernetes is not None or not site.kubernetes:
        return
    names = ", ".join(repr(c.name) for c in site.kubernetes)
    yield Problem("repositories.kubernetes", f"cluster(s) {names} declared but the site names no Kubernetes package mirror; "
                  "kubeadm, kubelet and kubectl are not in Debian, so the kubernetes phase stops before it touches a host "
                  "until repositories.kubernetes is set", severity="warning")


@check
def remediation_needs_slurm_or_kubernetes(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """The remediation service acts through Slurm or a Kubernetes cluster's API: a site with neither has no fleet."""
    if site.remediation is not None and site.remediation.enabled and site.slurm is None and not site.kubernetes:
        yield Problem("remediation", "the site declares no slurm section and no kubernetes cluster: the remediation "
                                     "service acts through one of them; remove remediation or write enabled: false")


@check
def slurm_containers_have_a_repository(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """A warning: enroot and pyxis are not in Debian; the Slurm phase stops until the site names their repository."""
    if site.slurm is not None and site.slurm.containers == "pyxis" and site.repositories.enroot is None:
        yield Problem("repositories.enroot", "slurm.containers is pyxis but the site names no enroot repository; enroot and "
                      "pyxis are not in Debian, so the slurm phase stops before it installs them until repositories.enroot "
                      "is set", severity="warning")


def _repositories_phases_need(site: Site) -> dict[str, tuple[str, str]]:
    """repositories.<name> -> (the phase that installs from it, what it installs), for the site's choices."""
    sw, needs = site.software, {}
    if site.kubernetes:
        needs["kubernetes"] = ("kubernetes", "kubeadm, kubelet and kubectl")
    if site.slurm is not None and site.slurm.containers == "pyxis":
        needs["enroot"] = ("slurm", "enroot and pyxis")
    if sw.slurm is not None and sw.slurm.source == "repository":
        needs["slurm"] = ("slurm", "Slurm")
    if sw.rdma == "doca-ofed":
        needs["doca"] = ("rdma", "DOCA-OFED")
    if sw.cuda is not None and sw.cuda.source == "repository":
        needs["cuda"] = ("gpu", "CUDA")
    if sw.nvidia_driver is not None and sw.nvidia_driver.source == "repository":
        needs["cuda"] = ("gpu", "the NVIDIA driver" + (" and CUDA" if "cuda" in needs else ""))
    return needs


@check
def site_repositories_name_their_keys(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """A warning: APT verifies every site repository with the key the site names; without one the phase stops."""
    for name, (phase, what) in _repositories_phases_need(site).items():
        repo = getattr(site.repositories, name)
        if repo is None or repo.signed_by is not None or repo.fingerprint is not None:
            continue
        yield Problem(f"repositories.{name}.signed_by", f"repositories.{name} names no signing key; APT verifies every site "
                      f"repository, so the {phase} phase stops before it installs {what} until repositories.{name}.signed_by "
                      f"(an OpenPGP key file beside the site file) or repositories.{name}.fingerprint is set", severity="warning")


@check
def repository_keys_match_fingerprints(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """A repository naming a key file and a fingerprint: the file holds a key (or subkey) with that fingerprint."""
    for name, repo in vars(site.repositories).items():
        if not isinstance(repo, Repository) or repo.signed_by is None or repo.fingerprint is None:
            continue
        try:
            found = key_fingerprints(repo.signed_by.read_bytes())
        except (OSError, NotAKey) as err:       # the type read it when the site loaded; it changed since
            yield Problem(f"repositories.{name}.signed_by", f"the key file can no longer be read as a public key ({err})")
            continue
        if repo.fingerprint not in found:
            yield Problem(f"repositories.{name}.fingerprint", f"the key file repositories.{name}.signed_by holds no key "
                          f"with fingerprint {repo.fingerprint}; it holds {', '.join(found)}")


@check
def storage_resolves(site: Site, index: SiteIndex) -> Iterator[Problem]:
    counts = Counter(s.name for s in site.storage)
    for i, system in enumerate(site.storage):
        if counts[system.name] > 1:
            yield Problem(fp("storage", i, "name"), f"storage {system.name!r} is declared more than once")
        if isinstance(system, NfsStorage) and system.server not in index.host_pools:
            yield Problem(fp("storage", i, "server"), f"NFS server {system.server!r} is not a host of any pool")
    names = list(counts)
    for i, tenant in enumerate(site.tenants):
        for name in tenant.storage_tb:
            if name not in counts:
                yield Problem(fp("tenants", i, "storage_tb", name), f"unknown storage {name!r}; declared storage: {_choices(names)}")


# --- names that map to one thing ---------------------------------------------------


@check
def host_names_plan_distinct_addresses(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """A host's address comes from its name's prefix and number, so ``gpu1`` and ``gpu0001`` would share one."""
    first: dict[tuple[str, int], str] = {}
    for i, pool in enumerate(site.pools):
        clashes: list[str] = []
        for host in pool.hosts:
            owner = first.setdefault(split_name(host), host)
            if owner != host:
                clashes.append(f"{host} ~ {owner}")
        if clashes:
            yield Problem(fp("pools", i, "hosts"), f"host names that differ only in their number's zero padding plan to the "
                          f"same address ({_choices(clashes)}): addresses come from a name's prefix and number; rename one of each pair")


@check
def inventory_group_names_distinct(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """Each Ansible group name has one meaning and is no host's name, computed by the code that makes the groups."""
    rails_of = {}
    for i, fabric in enumerate(site.fabrics):
        rails_of.update({host: (fabric.name, rails) for host, rails in plan_fabric(index, i, [])[1].items()})
    problems: list[Problem] = []
    inventory_groups(site, index, rails_of, problems)
    yield from problems


# Host names with a meaning of their own: Ansible's implicit local host and its two built-in groups, and the
# name provisioning.execution gives the machine running gigafactory up.
RESERVED_HOST_NAMES = ("localhost", "localhost4", "localhost6", "ip6-localhost", "ip6-loopback", "all", "ungrouped", CONTROLLER)


@check
def host_names_not_reserved(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """'localhost' would make delegate_to: localhost tasks run on a site host; 'controller' is the controller."""
    for host, pools in index.host_pools.items():
        if host in RESERVED_HOST_NAMES:
            yield Problem(fp("pools", pools[0], "hosts"), f"host name {host!r} already means something to Ansible or "
                          f"gigafactory (reserved: {', '.join(RESERVED_HOST_NAMES)}); rename the host")


# --- room, addresses and power: the computations the plan is built from (placement, addresses, fabric, power), run as checks


@check
def hosts_fit_their_racks(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """Every pool's hosts find power and space in its racks (pools naming unknown racks are reported elsewhere)."""
    problems: list[Problem] = []
    place(index, problems)
    unknown = {fp("pools", i, "racks") for i, pool in enumerate(site.pools) if any(r not in index.racks for r in pool.racks)}
    yield from (p for p in problems if p.path not in unknown)


@check
def networks_hold_their_hosts(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """The management, BMC and storage networks have an address block for every host name prefix."""
    problems: list[Problem] = []
    allocate_networks(site, problems)
    yield from problems


@check
def fabrics_fit_their_switches(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """Each fabric's rail subnets hold its hosts, and a scalable unit fits a leaf switch's down ports."""
    problems: list[Problem] = []
    for i in range(len(site.fabrics)):
        plan_fabric(index, i, problems)
    yield from problems


@check
def power_within_budgets(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """The facility (IT load x PUE within the contracted power) and every power domain hold their worst case, with
    every GPU at the lowest limit its node type allows; the plan then chooses the limits (site/power.py)."""
    yield from (Problem(path, text) for path, text in site_power_plan(index).problems)


@check
def power_domains_form_a_tree(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """Domain names unique and never the facility's, each parent a domain, every chain of parents ending at the
    facility."""
    domains = site.site.power.domains
    parents = {d.name: d.parent for d in domains}
    first: dict[str, int] = {}
    for i, d in enumerate(domains):
        if d.name == FACILITY:
            yield Problem(fp("site", "power", "domains", i, "name"), f"{FACILITY!r} is the whole site's budget "
                          "(facility_kw / pue, the root every top domain hangs from), not a name a domain may take")
        elif first.setdefault(d.name, i) != i:
            yield Problem(fp("site", "power", "domains", i, "name"), f"power domain {d.name!r} is declared twice "
                          f"(first as domains[{first[d.name]}])")
        elif d.parent is not None and d.parent not in parents:
            yield Problem(fp("site", "power", "domains", i, "parent"), f"{d.name!r} names parent {d.parent!r}, which is "
                          "no power domain; a top domain names none (the facility feeds it)")
        else:
            seen, at = {d.name}, d.parent
            while at is not None and at in parents and at not in seen:
                seen.add(at)
                at = parents[at]
            if at is not None and at in seen:
                yield Problem(fp("site", "power", "domains", i, "parent"), f"{d.name!r} is its own ancestor (through "
                              f"{at!r}): a power tree has no loop")


@check
def racks_name_power_domains(site: Site, index: SiteIndex) -> Iterator[Problem]:
    domains = {d.name for d in site.site.power.domains}
    for i, rack in enumerate(site.racks):
        if rack.domain is not None and rack.domain not in domains:
            yield Problem(fp("racks", i, "domain"), f"power domain {rack.domain!r} is not declared in site.power.domains"
                          f"{'; declared: ' + _choices(sorted(domains)) if domains else ' (none is)'}")


# --- networks -----------------------------------------------------------------------


def site_networks(site: Site) -> list[tuple[str, ipaddress.IPv4Network]]:
    """Every network the site declares, with the field path that declares it."""
    out = []
    for name in ("management", "bmc", "storage"):
        net = getattr(site.networks, name)
        if net is not None:
            out.append((fp("networks", name, "cidr"), ipaddress.IPv4Network(net.cidr)))
    for i, fabric in enumerate(site.fabrics):
        if fabric.ipoib is not None:
            out.append((fp("fabrics", i, "ipoib", "cidr"), ipaddress.IPv4Network(fabric.ipoib.cidr)))
    for i, cluster in enumerate(site.kubernetes):
        out.append((fp("kubernetes", i, "pod_cidr"), ipaddress.IPv4Network(cluster.pod_cidr)))
        out.append((fp("kubernetes", i, "service_cidr"), ipaddress.IPv4Network(cluster.service_cidr)))
    return out


@check
def networks_do_not_overlap(site: Site, index: SiteIndex) -> Iterator[Problem]:
    nets = site_networks(site)
    for a in range(len(nets)):
        for b in range(a + 1, len(nets)):
            (pa, na), (pb, nb) = nets[a], nets[b]
            if na.overlaps(nb):
                yield Problem(pb, f"{nb} overlaps {na} of {pa}; every site network must be disjoint")


@check
def reserved_ranges_inside_networks(site: Site, index: SiteIndex) -> Iterator[Problem]:
    for name in ("management", "bmc", "storage"):
        net = getattr(site.networks, name)
        if net is None:
            continue
        cidr = ipaddress.IPv4Network(net.cidr)
        for j, reserved in enumerate(net.reserved):
            if not ipaddress.IPv4Network(reserved).subnet_of(cidr):
                yield Problem(fp("networks", name, "reserved", j), f"{reserved} is not inside the network {cidr}")


@check
def external_addresses_reserved(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """Addresses of systems gigafactory does not manage (a Lustre MGS) lie in a reserved range."""
    storage = site.networks.storage
    for i, system in enumerate(site.storage):
        if not isinstance(system, LustreStorage):
            continue
        address = ipaddress.IPv4Address(system.mgs.split("@")[0])
        if storage is None:
            yield Problem(fp("storage", i, "mgs"), "a Lustre MGS needs a storage network (networks.storage)")
            continue
        reserved = [ipaddress.IPv4Network(r) for r in storage.reserved]
        if not any(address in r for r in reserved):
            ranges = ", ".join(map(str, reserved)) or "none declared"
            yield Problem(fp("storage", i, "mgs"), f"{address} must lie in a reserved range of networks.storage (reserved: {ranges}), "
                          "or gigafactory may hand it to a host")


# --- capacity -----------------------------------------------------------------------


@check
def tenant_gpu_quotas_fit(site: Site, index: SiteIndex) -> Iterator[Problem]:
    if site.slurm is not None:
        slurm_pools = [p for part in site.slurm.partitions for p in part.pools]
        available = index.pool_gpus(slurm_pools)
        total = 0
        for i, tenant in enumerate(site.tenants):
            if tenant.slurm and tenant.slurm.gpus:
                total += tenant.slurm.gpus
                if tenant.slurm.gpus > available:
                    yield Problem(fp("tenants", i, "slurm", "gpus"), f"{tenant.slurm.gpus} GPUs exceed the {available} GPUs of the Slurm partitions")
        if total > available:
            yield Problem("tenants", f"Slurm tenants' GPU quotas add up to {total}, more than the {available} GPUs of the Slurm partitions")
    for cluster in site.kubernetes:
        available = index.pool_gpus(cluster.workers)
        total = 0
        for i, tenant in enumerate(site.tenants):
            k = tenant.kubernetes
            if k and k.cluster == cluster.name:
                total += k.gpus
                if k.gpus > available:
                    yield Problem(fp("tenants", i, "kubernetes", "gpus"), f"{k.gpus} GPUs exceed the {available} GPUs of cluster {cluster.name!r}")
        if total > available:
            yield Problem("tenants", f"tenants of cluster {cluster.name!r} are promised {total} GPUs, more than its {available}")


@check
def tenant_storage_fits(site: Site, index: SiteIndex) -> Iterator[Problem]:
    for system in site.storage:
        total = sum(t.storage_tb.get(system.name, 0) for t in site.tenants)
        if total > system.capacity_tb:
            yield Problem("tenants", f"tenants are promised {total:g} TB of {system.name!r}, more than its {system.capacity_tb:g} TB")


@check
def node_types_fit_racks(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """One host (or one whole NVLink domain) fits each of its pool's racks: power, shelves, units, liquid and air."""
    for i, pool in enumerate(site.pools):
        node_type = index.node_type(pool)
        if node_type is None:
            continue
        _, load = item_load(node_type)
        for rack_name in pool.racks:
            if rack_name not in index.racks:
                continue
            limits = RackLimits.of(site.racks[index.racks[rack_name]])
            if not limits.holds(load):
                yield Problem(fp("pools", i, "racks"), f"rack {rack_name} (only {limits.short_of(load)}) cannot hold even one "
                              f"{describe_load(pool.type, node_type)}")
                break


# --- fabric -------------------------------------------------------------------------


@check
def gpu_nodes_have_an_hca_per_rail(site: Site, index: SiteIndex) -> Iterator[Problem]:
    for pool in site.pools:
        node_type = index.node_type(pool)
        if node_type is None or node_type.gpus == 0:
            continue
        fabric = index.pool_fabric(pool)
        if fabric is None and site.fabrics:
            fabric = site.fabrics[0] if pool.fabric is None and len(site.fabrics) == 1 else None
        if fabric is not None and fabric.topology == "rail-optimized" and node_type.hcas < fabric.rails:
            yield Problem(fp("node_types", pool.type, "hca", "count"), f"{node_type.hcas} HCA(s) on GPU node type {pool.type!r} "
                          f"(pool {pool.name!r}), but fabric {fabric.name!r} is rail-optimized with {fabric.rails} rails: one HCA per rail is needed")


@check
def subnet_managers_on_fabric(site: Site, index: SiteIndex) -> Iterator[Problem]:
    for i, fabric in enumerate(site.fabrics):
        sm = fabric.subnet_manager
        if fabric.kind == "infiniband" and sm is None:
            yield Problem(fp("fabrics", i, "subnet_manager"), "an InfiniBand fabric needs a subnet manager")
        if sm is None:
            continue
        for host in sm.hosts:
            pool = index.pool_of(host)
            if pool is None:
                yield Problem(fp("fabrics", i, "subnet_manager", "hosts"), f"subnet manager {host!r} is not a host of any pool")
            elif index.pool_fabric(pool) is not fabric:
                yield Problem(fp("fabrics", i, "subnet_manager", "hosts"), f"subnet manager {host!r} (pool {pool.name!r}) has no HCA on fabric {fabric.name!r}")


# --- policy -------------------------------------------------------------------------


@check
def jurisdiction_respected(site: Site, index: SiteIndex) -> Iterator[Problem]:
    if site.policy.jurisdiction == "eu" and site.site.country not in EU_EEA:
        yield Problem("site.country", f"{site.site.country!r} is not an EU/EEA member state, but policy.jurisdiction is 'eu'")


@check
def vendors_approved(site: Site, index: SiteIndex) -> Iterator[Problem]:
    approved = site.policy.approved_vendors
    if approved is None:
        return
    for name, node_type in site.node_types.items():
        if node_type.vendor not in approved:
            yield Problem(fp("node_types", name, "vendor"), f"vendor {node_type.vendor!r} is not approved; approved: {_choices(approved)}")
    for i, fabric in enumerate(site.fabrics):
        if fabric.switch.vendor not in approved:
            yield Problem(fp("fabrics", i, "switch", "vendor"), f"vendor {fabric.switch.vendor!r} is not approved; approved: {_choices(approved)}")


# --- software -----------------------------------------------------------------------


def _needs_repository(site: Site, path: str, what: str, repo: str) -> Iterator[Problem]:
    if getattr(site.repositories, repo) is None:
        yield Problem(path, f"{what} from the site's repository needs repositories.{repo}; set it, or use source: distribution")


@check
def software_available(site: Site, index: SiteIndex) -> Iterator[Problem]:
    ships = DISTRIBUTION[site.os.release]
    sw = site.software
    if sw.nvidia_driver is not None:
        drv = sw.nvidia_driver
        if drv.branch not in KNOWN_DRIVER_BRANCHES:
            yield Problem("software.nvidia_driver.branch",
                          f"no NVIDIA driver branch {drv.branch!r}; known branches: {', '.join(sorted(KNOWN_DRIVER_BRANCHES))}")
        if drv.source == "distribution" and drv.branch != ships["nvidia_driver"]:
            yield Problem("software.nvidia_driver.branch", f"Debian {site.os.release} ships driver branch {ships['nvidia_driver']}, not {drv.branch}; "
                          "use that branch or source: repository")
        if drv.source == "repository":
            yield from _needs_repository(site, "software.nvidia_driver.source", "the NVIDIA driver", "cuda")
        else:
            # Debian packages neither Fabric Manager (NVSwitch systems) nor IMEX (multi-node NVLink domains)
            for name, nt in site.node_types.items():
                needs = [what for what, wanted in (("Fabric Manager", nt.gpu and nt.gpu.nvswitch),
                                                   ("IMEX", nt.nvlink is not None)) if wanted]
                if needs:
                    yield Problem("software.nvidia_driver.source",
                                  f"node type {name!r} needs NVIDIA {' and '.join(needs)}, which Debian does not ship; "
                                  "use source: repository (NVIDIA's CUDA repository as mirrored by the site)")
        if drv.flavor == "proprietary":
            for name, nt in site.node_types.items():
                if nt.gpu and nt.gpu.model.upper() in OPEN_ONLY_GPUS:
                    yield Problem("software.nvidia_driver.flavor", f"{nt.gpu.model} GPUs ({name}) need the open kernel modules: flavor: open")
    if sw.cuda is not None:
        if sw.cuda.default is not None and sw.cuda.default not in sw.cuda.versions:
            yield Problem("software.cuda.default", f"{sw.cuda.default} is not among the installed versions {', '.join(sw.cuda.versions)}")
        if sw.cuda.source == "distribution" and sw.cuda.versions != [ships["cuda"]]:
            yield Problem("software.cuda", f"Debian {site.os.release} ships CUDA {ships['cuda']} only; use it or source: repository")
        if sw.cuda.source == "repository":
            yield from _needs_repository(site, "software.cuda", "CUDA", "cuda")
    if sw.rdma == "doca-ofed":
        yield from _needs_repository(site, "software.rdma", "DOCA-OFED", "doca")
    if sw.slurm is not None:
        if sw.slurm.source == "distribution" and sw.slurm.version != ships["slurm"]:
            yield Problem("software.slurm.version", f"Debian {site.os.release} ships Slurm {ships['slurm']}, not {sw.slurm.version}; "
                          "use it or source: repository")
        if sw.slurm.source == "repository":
            yield from _needs_repository(site, "software.slurm", "Slurm", "slurm")
    if site.slurm is not None and sw.slurm is None:
        yield Problem("software.slurm", "a site with a slurm section must say which Slurm version to install")


# --- fabric partitions (docs/fabric-partitions.md) -----------------------------------


@check
def isolated_tenants_have_dedicated_pools(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """fabric_isolation partitions whole hosts: the tenant must say which pools are its own."""
    for i, tenant in enumerate(site.tenants):
        if tenant.fabric_isolation and not tenant.pools:
            yield Problem(fp("tenants", i, "pools"), f"tenant {tenant.name!r} asks for fabric_isolation but has no dedicated pools; "
                          "list the pools whose hosts are its own (whole hosts) under pools")


@check
def tenant_pools_exist(site: Site, index: SiteIndex) -> Iterator[Problem]:
    for i, tenant in enumerate(site.tenants):
        for pool in tenant.pools:
            if pool not in index.pools:
                yield Problem(fp("tenants", i, "pools"), f"unknown pool {pool!r}; declared pools: {_choices(index.pools)}")


@check
def pools_dedicated_to_one_tenant(site: Site, index: SiteIndex) -> Iterator[Problem]:
    owner: dict[str, str] = {}
    for i, tenant in enumerate(site.tenants):
        for pool in tenant.pools:
            if owner.get(pool, tenant.name) != tenant.name:
                yield Problem(fp("tenants", i, "pools"), f"pool {pool!r} is already dedicated to tenant {owner[pool]!r}; "
                              "a pool is dedicated to at most one tenant")
            owner.setdefault(pool, tenant.name)


@check
def dedicated_pools_are_compute_pools(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """Hosts in no compute pool are the shared services (controllers, storage, subnet managers): nobody's own."""
    for i, tenant in enumerate(site.tenants):
        for pool in tenant.pools:
            if pool in index.pools and pool not in index.compute_pools:
                yield Problem(fp("tenants", i, "pools"), f"pool {pool!r} runs no workloads (no GPUs, no Slurm partition, no "
                              "Kubernetes workers): its hosts are shared services every tenant reaches, not a tenant's own")


@check
def isolated_tenant_pools_on_infiniband(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """Isolation is an InfiniBand partition: the tenant's hosts need an HCA on an InfiniBand fabric."""
    for i, tenant in enumerate(site.tenants):
        if not tenant.fabric_isolation:
            continue
        for pool in tenant.pools:
            if pool not in index.pools:
                continue
            fabric = index.pool_fabric(index.pools[pool])
            if fabric is None or fabric.kind != "infiniband":
                where = f"fabric {fabric.name!r} is {fabric.kind}" if fabric else "its hosts attach to no fabric"
                yield Problem(fp("tenants", i, "pools"), f"pool {pool!r} cannot be fabric-isolated: {where}; isolation is an "
                              "InfiniBand partition")


@check
def subnet_managers_not_dedicated(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """opensm makes its own port a full member of the default partition: on a tenant's host it would reach every node."""
    dedicated = {pool: tenant.name for tenant in site.tenants if tenant.fabric_isolation for pool in tenant.pools}
    for i, fabric in enumerate(site.fabrics):
        for host in (fabric.subnet_manager.hosts if fabric.subnet_manager else []):
            pool = index.pool_of(host)
            if pool is not None and pool.name in dedicated:
                yield Problem(fp("fabrics", i, "subnet_manager", "hosts"), f"subnet manager {host!r} is in pool {pool.name!r}, "
                              f"dedicated to fabric-isolated tenant {dedicated[pool.name]!r}; run it on a shared service host")


@check
def partition_keys_in_range(site: Site, index: SiteIndex) -> Iterator[Problem]:
    for i, tenant in enumerate(site.tenants):
        if tenant.partition_key is None:
            continue
        key = int(tenant.partition_key, 16)
        if key == DEFAULT_PARTITION_KEY:
            yield Problem(fp("tenants", i, "partition_key"), f"0x{key:04x} is the default partition's key; choose one in "
                          f"0x{TENANT_PARTITION_KEYS.start:04x}-0x{TENANT_PARTITION_KEYS.stop - 1:04x}")
        elif key == SHARED_PARTITION_KEY:
            yield Problem(fp("tenants", i, "partition_key"), f"0x{key:04x} is the shared compute partition's key; choose one in "
                          f"0x{TENANT_PARTITION_KEYS.start:04x}-0x{TENANT_PARTITION_KEYS.stop - 1:04x}")
        elif key not in TENANT_PARTITION_KEYS:
            yield Problem(fp("tenants", i, "partition_key"), f"{tenant.partition_key} is not a partition key a tenant may use "
                          f"(0x{TENANT_PARTITION_KEYS.start:04x}-0x{TENANT_PARTITION_KEYS.stop - 1:04x})")


@check
def partition_keys_unique(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """Isolated tenants' keys, declared or derived from their names, differ (a declared key is reserved even when not isolated)."""
    seen: dict[int, str] = {}
    for i, tenant in enumerate(site.tenants):
        if not tenant.fabric_isolation and tenant.partition_key is None:
            continue
        key = tenant_partition_key(tenant)
        if key in seen and seen[key] != tenant.name:
            how = "declared" if tenant.partition_key is not None else "derived from its name"
            yield Problem(fp("tenants", i, "partition_key"), f"tenant {tenant.name!r}'s partition key 0x{key:04x} ({how}) is "
                          f"already tenant {seen[key]!r}'s; declare partition_key for one of them")
        seen.setdefault(key, tenant.name)


@check
def execution_hosts_known(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """Each execution host is a host of the site or the controller, named once; a site host may not be called
    'controller'."""
    seen: set[str] = set()
    for i, host in enumerate(site.provisioning.execution.hosts):
        where = fp("provisioning", "execution", "hosts", i)
        if host in seen:
            yield Problem(where, f"execution host {host!r} is named twice")
        elif host == CONTROLLER and host in index.host_pools:
            yield Problem(where, f"{CONTROLLER!r} names both the controller and a host of the site; rename the host")
        elif host != CONTROLLER and host not in index.host_pools:
            yield Problem(where, f"execution host {host!r} is not a host of the site (nor {CONTROLLER!r}); "
                                 f"hosts: {_choices(index.host_pools)}")
        seen.add(host)


# --- billing and energy -------------------------------------------------------------


@check
def billing_tariffs_resolve(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """Every GPU tariff names a GPU model of a node type, every storage tariff a storage system."""
    if site.billing is None:
        return
    models = sorted({nt.gpu.model for nt in site.node_types.values() if nt.gpu and nt.gpu.count})
    for model in site.billing.tariffs.gpu_hour:
        if model not in models:
            yield Problem(fp("billing", "tariffs", "gpu_hour", model),
                          f"unknown GPU model {model!r}; GPU models of the node types: {_choices(models)}")
    storage = [s.name for s in site.storage]
    for name in site.billing.tariffs.storage_tb_month:
        if name not in storage:
            yield Problem(fp("billing", "tariffs", "storage_tb_month", name),
                          f"unknown storage system {name!r}; declared storage: {_choices(storage)}")
    for pool in site.pools:
        nt = site.node_types.get(pool.type)
        if nt and nt.gpu and nt.gpu.count and nt.gpu.model not in site.billing.tariffs.gpu_hour:
            yield Problem(fp("billing", "tariffs", "gpu_hour"),
                          f"pool {pool.name!r} has {nt.gpu.model} GPUs but no tariff names them: their hours are free",
                          "warning")


@check
def tenant_classes_resolve(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """A tenant's class is one of billing.classes; tenant billing needs a billing section; class names unique."""
    classes = [c.name for c in site.billing.classes] if site.billing else []
    for i, name in enumerate(classes):
        if name in classes[:i]:
            yield Problem(fp("billing", "classes", i, "name"), f"tenant class {name!r} is declared twice")
    for i, tenant in enumerate(site.tenants):
        if tenant.billing is None:
            continue
        if site.billing is None:
            yield Problem(fp("tenants", i, "billing"), "tenant billing needs a top-level billing section (currency, tariffs)")
        elif tenant.billing.class_ is not None and tenant.billing.class_ not in classes:
            yield Problem(fp("tenants", i, "billing", "class"),
                          f"unknown tenant class {tenant.billing.class_!r}; billing.classes: {_choices(classes)}")


@check
def flexible_partitions_resolve(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """A flexible partition's class is one of billing.classes, and its hours come from a file: energy.forecast or
    energy.supply (without either it would never open)."""
    classes = [c.name for c in site.billing.classes] if site.billing else []
    files = site.energy is not None and (site.energy.forecast is not None or site.energy.supply is not None)
    for i, part in enumerate(site.slurm.partitions if site.slurm else ()):
        if part.flexible is None:
            continue
        if part.flexible.class_ not in classes:
            yield Problem(fp("slurm", "partitions", i, "flexible", "class"),
                          f"unknown billing class {part.flexible.class_!r}; billing.classes: {_choices(classes)}")
        if not files:
            yield Problem(fp("slurm", "partitions", i, "flexible"), f"flexible partition {part.name!r} needs the "
                          "renewable supply's hours: declare energy.forecast or energy.supply")


@check
def prepaid_tenants_have_a_class(site: Site, index: SiteIndex) -> Iterator[Problem]:
    for i, tenant in enumerate(site.tenants):
        if tenant.billing and tenant.billing.prepaid is not None and tenant.billing.class_ is None:
            yield Problem(fp("tenants", i, "billing", "class"),
                          f"tenant {tenant.name!r} has a prepaid budget but no class: its price factor would be a guess")


@check
def money_in_billing_currency(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """Units explicit: a budget names its currency, and it is the currency the tariffs are in."""
    if site.billing is None:
        return
    for i, tenant in enumerate(site.tenants):
        prepaid = tenant.billing.prepaid if tenant.billing else None
        if prepaid is not None and prepaid.currency != site.billing.currency:
            yield Problem(fp("tenants", i, "billing", "prepaid", "currency"),
                          f"budget in {prepaid.currency} but tariffs are in {site.billing.currency} "
                          "(billing.currency); no exchange rate is assumed")


@check
def energy_pue_periods_unique(site: Site, index: SiteIndex) -> Iterator[Problem]:
    if site.energy is None:
        return
    periods = [p.period for p in site.energy.pue]
    for i, period in enumerate(periods):
        if period in periods[:i]:
            yield Problem(fp("energy", "pue", i, "period"), f"PUE for {period} is declared twice")


@check
def energy_facility_periods_unique(site: Site, index: SiteIndex) -> Iterator[Problem]:
    seen: set[str] = set()
    for i, entry in enumerate(site.energy.facility if site.energy else ()):
        if entry.period in seen:
            yield Problem(fp("energy", "facility", i, "period"), f"facility meters for {entry.period} are declared twice")
        seen.add(entry.period)


@check
def opencost_prices_match_tariffs(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """A warning: OpenCost holds one GPU and one storage price per cluster; where the cluster's GPU models (or the
    storage its tenants are allotted) have different tariffs, it prices them at their weighted mean."""
    if site.billing is None:
        return
    tariffs = site.billing.tariffs
    for i, cluster in enumerate(site.kubernetes):
        if "opencost" not in cluster.addons:
            continue
        models = sorted({nt.gpu.model for p in cluster.workers if p in index.pools
                         for nt in [index.node_type(index.pools[p])] if nt and nt.gpus})
        if len({tariffs.gpu_hour.get(m, 0.0) for m in models}) > 1:
            prices = ", ".join(f"{m} {tariffs.gpu_hour.get(m, 0.0):g}" for m in models)
            yield Problem(fp("kubernetes", i, "addons"), f"cluster {cluster.name!r} has GPU models at different tariffs "
                          f"({prices} {site.billing.currency}/h); OpenCost holds one GPU price per cluster and gets their "
                          "mean weighted by GPU count, so its per-namespace GPU costs are approximate (gigafactory usage "
                          "prices each model)", "warning")
        allotted = {s for t in site.tenants if t.kubernetes and t.kubernetes.cluster == cluster.name
                    for s, tb in t.storage_tb.items() if tb}
        systems = sorted(allotted or {s.name for s in site.storage})
        if len({tariffs.storage_tb_month.get(s, 0.0) for s in systems}) > 1:
            prices = ", ".join(f"{s} {tariffs.storage_tb_month.get(s, 0.0):g}" for s in systems)
            yield Problem(fp("kubernetes", i, "addons"), f"cluster {cluster.name!r} uses storage at different tariffs "
                          f"({prices} {site.billing.currency}/TB-month); OpenCost holds one storage price per cluster "
                          "and gets their mean weighted by the tenants' allotments (else the systems' capacity), so its "
                          "per-volume storage costs are "
                          "approximate (gigafactory usage prices each system)", "warning")


# --- Slurm's block topology (24.11.5's topology/block: infra/site/blocks.py) --------


@check
def slurm_block_topology_has_domains(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """topology: block needs NVLink domains to make blocks of (24.11 has no blocks of ordinary servers)."""
    if site.slurm is not None and site.slurm.topology == "block" and not nvlink_pools(site):
        yield Problem("slurm.topology", "block topology makes one Slurm block per NVLink domain, and no pool of the "
                      "Slurm partitions has a node type with nvlink; use tree (a switch per scalable unit), auto or none")


@check
def slurm_nvlink_domains_one_size(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """Every block of one cluster has the base's node count: Slurm 24.11 takes one BlockSizes base and stops on a block
    below it ("children count lower than bblock_node_cnt")."""
    if topology_plugin(site, index) != "block":
        return
    pools = nvlink_pools(site)
    first = pools[0] if pools else None
    for pool in pools[1:]:
        trays, base = index.node_type(pool).nvlink.trays, index.node_type(first).nvlink.trays
        if trays != base:
            yield Problem(fp("node_types", pool.type, "nvlink", "trays"),
                          f"the NVLink domains of pool {pool.name!r} are {trays} trays and those of pool {first.name!r} "
                          f"({first.type}) {base}: both are blocks of Slurm cluster {site.slurm.cluster!r}, whose "
                          "topology.conf has one base block size (BlockSizes); slurmctld 24.11 stops on a block smaller "
                          "than it. Give them one size, or keep one of the pools out of the Slurm partitions")


@check
def slurm_block_sizes_aggregate_domains(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """slurm.block_sizes: the domain's trays, then the trays x 2^k (k <= 15), as 24.11.5 parses BlockSizes."""
    if site.slurm is None or site.slurm.block_sizes is None:
        return
    if topology_plugin(site, index) != "block":
        yield Problem("slurm.block_sizes", "block sizes are for the block topology; this cluster's topology is "
                      f"{topology_plugin(site, index) or 'none'} (slurm.topology: {site.slurm.topology})")
        return
    pools = nvlink_pools(site)
    if not pools:                       # block topology without NVLink domains: slurm_block_topology_has_domains says so
        return
    base = index.node_type(pools[0]).nvlink.trays
    sizes = site.slurm.block_sizes
    if sizes[0] != base:
        yield Problem(fp("slurm", "block_sizes", 0), f"the first block size is the base block, one NVLink domain of "
                      f"{base} trays ({pools[0].type}), not {sizes[0]}: slurmctld 24.11 stops on a block with fewer "
                      "nodes than the base, and a base below the domain splits no domain")
        return
    for j, size in enumerate(sizes[1:], start=1):
        if block_level(size, base) is None:
            yield Problem(fp("slurm", "block_sizes", j), f"{size} is not {base} x 2^k (k from 0 to 15: "
                          f"{base * 2}, {base * 4}, {base * 8}, ...): slurmctld 24.11 stops on it "
                          "(\"Invalid BlockSizes value\"); adjacent domains aggregate in powers of two")


@check
def slurm_blocks_within_limit(site: Site, index: SiteIndex) -> Iterator[Problem]:
    """At most 2^15 blocks (NVLink domains) in one cluster: Slurm 24.11 numbers blocks in 16 bits."""
    if topology_plugin(site, index) != "block":
        return
    domains = sum(len(pool.hosts) // index.node_type(pool).nvlink.trays for pool in nvlink_pools(site))
    if domains > MAX_BLOCKS:
        yield Problem("slurm.partitions", f"the Slurm partitions hold {domains} NVLink domains, one block each; Slurm "
                      f"24.11 numbers a cluster's blocks (and their aggregations) in 16 bits: at most {MAX_BLOCKS} "
                      "blocks per cluster. Keep some NVLink pools out of the Slurm partitions")
