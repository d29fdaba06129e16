"""The Ansible inventory of a site: per host, per node type, per group (Slurm, Kubernetes), for every host.

``site_inventory`` is the one builder: the inventory plugin (playbooks/plugins/inventory/gigafactory_site.py) hands
its result to Ansible, NodeConfiguration hashes it, the image builder takes its variables; it is written out for
review as ``inventory.json`` (``inventory_view``). The Slurm files among its variables are rendered by ``files.py``.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from typing import Any

from ..plan import Plan, group_name
from ..site.model import Site
from .files import HEALTH_CHECK_PROGRAM, remediation_config, slurm_files
from .repositories import repository_keys


def host_vars(site: Site, plan: Plan, name: str) -> dict[str, Any]:
    """What Ansible knows of one host: its place in the plan (node-type facts are group vars)."""
    h = plan.hosts[name]
    out: dict[str, Any] = {
        "gf_pool": h.pool,
        "gf_rack": h.rack,
        "gf_rack_unit": h.rack_unit,
        "gf_addresses": h.addresses,
    }
    if site.testbed is None:
        out["ansible_host"] = h.address()   # a test bed's hosts are reached through the launcher's forwarded ports
    if h.fabric:
        out["gf_fabric"] = h.fabric
        out["gf_rails"] = list(h.rails)
    if h.scalable_unit:
        out["gf_scalable_unit"] = h.scalable_unit
    if site.node_types[h.node_type].nvlink is not None:
        # the host's IMEX service (nvidia_driver): Slurm's imex prolog starts it per job; Kubernetes' DRA driver
        # runs IMEX daemons of its own, which a running host service would keep from starting
        out["gf_imex_service"] = "masked" if any(h.pool in k.workers for k in site.kubernetes) else "disabled"
    return out


def node_type_vars(site: Site, name: str) -> dict[str, Any]:
    """Variables of the ``type_<name>`` group: what every node of the type must have."""
    nt = site.node_types[name]
    return {
        "gf_node_type": name,
        "gf_gpus": nt.gpus,
        "gf_gpu_model": nt.gpu.model if nt.gpu else None,
        "gf_nvswitch": bool(nt.gpu and nt.gpu.nvswitch),
        "gf_nvlink_domain": nt.nvlink is not None,
        "gf_hcas": nt.hcas,
        "gf_hca_model": nt.hca.model if nt.hca else None,
        "gf_cpus": nt.cpu.sockets * nt.cpu.cores_per_socket * nt.cpu.threads_per_core,
        "gf_arch": nt.cpu.arch,             # the image's architecture; the CUDA repository's (x86_64 or sbsa)
        "gf_memory_gb": nt.memory_gb,
        "gf_hugepages_2m": nt.hugepages_2m,
    } | ({"gf_hca_ports": list(nt.hca.ports)} if nt.hca and nt.hca.ports else {})   # the rails' HCA ports by PCI address


def power_vars(plan: Plan, name: str) -> dict[str, Any]:
    """Variables of the ``type_<name>`` group from the power plan (role gpu_power, the health gate): the planned GPU
    power limit of a node type that declares a range (``gf_gpu_power``: the role installs its unit; the watts are
    the configure part's, out of the image key); nothing for one without."""
    watts = plan.power.limits_w.get(name)
    return {} if watts is None else {"gf_gpu_power": True, "gf_gpu_power_limit_w": watts}


def group_vars(site: Site, plan: Plan) -> dict[str, Any]:
    """Variables every host shares: the site's identity, mirrors, networks and software choices."""
    return {
        "gf_site": plan.site,
        "gf_timezone": site.site.timezone,
        "gf_os_release": site.os.release,
        "gf_repositories": site.repositories.urls(),
        "gf_repository_keys": repository_keys(site.repositories),
        "gf_security_updates": site.os.security_updates,
        "gf_software": site.software.model_dump(mode="json"),
        "gf_networks": {n.name: {"cidr": n.cidr, "mtu": n.mtu, "vlan": n.vlan, "interface": n.interface} for n in plan.networks.values()},
        "gf_max_fail_percent": site.provisioning.max_fail_percent,
        "gf_ntp_servers": list(plan.ntp_servers),
        "gf_etc_hosts": [[h.address(), h.name] for h in plan.hosts.values()],
        "gf_fabrics": fabric_vars(site, plan),
        "gf_health_check_program": HEALTH_CHECK_PROGRAM,
    }


def budget_billing_minutes(site: Site, tenant) -> int | None:
    """A prepaid tenant's budget in Slurm billing-minutes: billing is currency per hour (TRESBillingWeights from
    the tariffs), so budget / class factor × 60, rounded down (Slurm never grants more than was paid)."""
    prepaid = tenant.billing.prepaid if tenant.billing else None
    if prepaid is None or site.billing is None:
        return None
    factor = next((c.price_factor for c in site.billing.classes if c.name == tenant.billing.class_), 1.0)
    if factor == 0:
        return None                     # a free class: nothing to spend
    return math.floor(round(prepaid.amount / factor * 60, 6))


def slurm_vars(site: Site, plan: Plan) -> dict[str, Any]:
    """Variables of the ``slurm`` group: the rendered Slurm files as data, the layout the roles act on, the tenants."""
    if plan.slurm is None:
        return {}
    s = plan.slurm
    return {
        "gf_slurm_files": {name.removeprefix("slurm/"): content
                           for name, content in slurm_files(plan, health_check_program=HEALTH_CHECK_PROGRAM).items()},
        "gf_slurm": {
            "cluster": s.cluster,
            "user": s.user,
            "controllers": [host for host, _ in s.controllers],
            "accounting_host": s.accounting[0],
            "login": list(s.login),
            "state_save_location": s.state_save_location,
            "containers": s.containers,
            "job_scripts": list(s.job_scripts),
        },
        "gf_slurm_tenants": [
            {"tenant": t.name, "account": t.slurm.account, "fairshare": t.slurm.fairshare,
             "gpus": t.slurm.gpus, "cpus": t.slurm.cpus, "nodes": t.slurm.nodes,
             "budget_billing_minutes": budget_billing_minutes(site, t)}
            for t in site.tenants if t.slurm is not None
        ],
    }


def kubernetes_vars(site: Site, plan: Plan) -> dict[str, dict[str, Any]]:
    """Per cluster group (``k8s_<cluster>``): ``gf_kubernetes``, what the kubernetes role bootstraps with kubeadm;
    where the site heals its fleet, ``gf_remediation`` (the service on the first control plane) and ``gf_diagnosis``
    (the workers' signal agent)."""
    out: dict[str, dict[str, Any]] = {}
    for c in plan.kubernetes:
        out[c.group] = {"gf_kubernetes": {
            "name": c.name,
            "version": c.version,
            "control_plane": list(c.control_plane),
            "api_endpoint": c.api_endpoint,
            "pod_cidr": c.pod_cidr,
            "service_cidr": c.service_cidr,
        }}
        if (remediation := remediation_config(plan, c)) is not None:
            out[c.group].update(gf_remediation=remediation, gf_diagnosis=diagnosis_vars(remediation))
    return out


def diagnosis_vars(remediation: dict[str, Any]) -> dict[str, Any]:
    """What a node's signal agent needs of the service's configuration: how to diagnose when it asks, and on
    Kubernetes the annotations it reads and writes."""
    out = {"level": remediation["diagnose_level"], "timeout_s": remediation["diagnose_timeout_s"],
           "reason_prefix": remediation["reason_prefix"], "periodic_s": remediation["periodic_diag_s"]}
    if "kubernetes" in remediation:
        out["annotations"] = remediation["kubernetes"]["annotations"]
    return out


def fabric_vars(site: Site, plan: Plan) -> dict[str, Any]:
    """Per fabric: what the rdma role configures (rails and their interfaces, IP over the fabric, SMs, partitions)."""
    declared = {f.name: f for f in site.fabrics}
    out: dict[str, Any] = {}
    for f in plan.fabrics:
        ip = declared[f.name].ipoib
        sm = declared[f.name].subnet_manager
        out[f.name] = {
            "kind": f.kind,
            "rate": f.rate,
            "link_gbits": declared[f.name].link_gbits,
            "rails": [{"rail": r.rail, "cidr": r.cidr, "interface": r.interface} for r in f.rails],
            "ip_mode": ip.mode if ip else None,
            "ip_mtu": ip.mtu if ip else None,
            "subnet_manager": sm.kind if sm else None,
            "subnet_managers": list(f.subnet_managers),
            "partitions": [{"name": p.name, "key": p.key, "tenant": p.tenant, "full": list(p.full), "limited": list(p.limited),
                            "default": p.default, "index0": p.index0} for p in plan.partitions.get(f.name, ())],
        }
    return out


# Where the base phase installs an execution host's Ansible (role execution_host) and where up runs its worker.
EXECUTION_VENV = "/opt/gigafactory/venv"
EXECUTION_PROJECT = "/opt/gigafactory/project"


def execution_vars(plan: Plan, packages: Mapping[str, str] | None) -> dict[str, Any]:
    """Variables of the ``execution`` group (hosts that run Ansible for others): ``gf_execution``, what the
    execution_host role installs there. ``packages`` (distribution -> version) are the controller's, which the apply
    layer reads of its own environment (infra.runner.execution.execution_packages): a render depends on the plan
    alone, so without them (``inventory.json``) the group's variables say where, not which versions."""
    if "execution" not in plan.groups:
        return {}
    return {"gf_execution": {"venv": EXECUTION_VENV, "project": EXECUTION_PROJECT,
                             **({"packages": dict(packages)} if packages is not None else {})}}


def boot_vars(site: Site, plan: Plan) -> dict[str, Any]:
    """Variables of the ``boot_server`` group: ``gf_boot``, what the boot_server role serves on the management
    network (docs/images.md, "Serving images"): the server's address, the network, DHCP or proxy DHCP, and each
    host with a declared MAC, its address and its node type (whose bundle its iPXE script names)."""
    images = site.provisioning.images
    if images is None or "boot_server" not in plan.groups:
        return {}
    macs = {host: mac for pool in site.pools for host, mac in pool.macs.items()}
    network = ipaddress.ip_network(plan.networks["management"].cidr, strict=False)
    return {"gf_boot": {
        "server": plan.hosts[images.server].address(),
        "network": str(network.network_address),
        "netmask": str(network.netmask),
        "proxy_dhcp": images.proxy_dhcp,
        "hosts": [{"name": name, "mac": macs[name], "address": h.address(), "node_type": h.node_type}
                  for name, h in plan.hosts.items() if name in macs],
    }}


def connection_vars(site: Site) -> dict[str, Any]:
    """How Ansible logs in to every host: the site's ``provisioning.user``."""
    return {"ansible_user": site.provisioning.user}


def site_inventory(site: Site, plan: Plan, packages: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The site's Ansible inventory as a static YAML inventory (``all``: vars, hosts, children): what the inventory
    plugin gives Ansible, what NodeConfiguration hashes (tests/test_cli_and_inventory.py compares the two). Applied,
    it carries the controller's ``packages`` for the execution hosts (infra.runner.execution.controller_inventory)."""
    children: dict[str, Any] = {}
    for group, members in plan.groups.items():
        children[group] = {"hosts": dict.fromkeys(members)}
    for name in site.node_types:
        if group_name("type", name) in children:
            children[group_name("type", name)]["vars"] = node_type_vars(site, name) | power_vars(plan, name)
    if "slurm" in children and plan.slurm is not None:
        children["slurm"]["vars"] = slurm_vars(site, plan)
    if "slurm_controller" in children and (remediation := remediation_config(plan)) is not None:
        children["slurm_controller"]["vars"] = {"gf_remediation": remediation}    # the remediation service's
        if "slurm_compute" in children:         # the nodes' signal agent: how to diagnose when the service asks
            children["slurm_compute"]["vars"] = {"gf_diagnosis": diagnosis_vars(remediation)}
    for group, variables in kubernetes_vars(site, plan).items():
        children[group]["vars"] = variables
    if "execution" in children:
        children["execution"]["vars"] = execution_vars(plan, packages)
    if "boot_server" in children:
        children["boot_server"]["vars"] = boot_vars(site, plan)
    return {"all": {
        "vars": {**group_vars(site, plan), **connection_vars(site)},
        "hosts": {name: host_vars(site, plan, name) for name in plan.hosts},
        "children": children,
    }}


def inventory_view(site: Site, plan: Plan) -> dict[str, Any]:
    """``site_inventory`` as reviewed in ``inventory.json`` (tests/golden): the plan's variables, without how Ansible
    logs in (``connection_vars``)."""
    everyone = site_inventory(site, plan)["all"]
    connection = connection_vars(site)
    return {"all": {**everyone, "vars": {k: v for k, v in everyone["vars"].items() if k not in connection}}}
