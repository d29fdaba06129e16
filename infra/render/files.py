"""Every generated file, rendered from the plan with Jinja2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from ..plan import Plan, group_name
from ..site.model import Site
from .repositories import repository_keys

HEALTH_CHECK_PROGRAM = "/usr/local/sbin/gigafactory-node-health"


def _environment() -> Environment:
    return Environment(loader=PackageLoader("infra.render", "templates"), undefined=StrictUndefined,
                       trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def render_file(plan: Plan, name: str, **extra: Any) -> str:
    """One of the files under ``templates/`` (without its ``.j2``), rendered from the plan."""
    template = _environment().get_template(f"{name}.j2")
    return template.render(site=plan.site, slurm=plan.slurm, hosts=list(plan.hosts.values()), **extra)


def slurm_files(plan: Plan, health_check_program: str | None = None) -> dict[str, str]:
    if plan.slurm is None:
        return {}
    files = {
        "slurm/slurm.conf": render_file(plan, "slurm.conf", health_check_program=health_check_program),
        "slurm/gres.conf": render_file(plan, "gres.conf"),
        "slurm/cgroup.conf": render_file(plan, "cgroup.conf"),
    }
    if plan.slurm.topology:
        files["slurm/topology.conf"] = render_file(plan, "topology.conf")
    return files


def render_all(site: Site, plan: Plan) -> dict[str, str]:
    """Relative path -> content of every generated file."""
    files = {"plan.json": to_json(plan_as_dict(plan)), "hosts": render_file(plan, "hosts")}
    # The health phase runs on every site (infra/orchestrate/phases.py) and installs the
    # node_health role's gate at HEALTH_CHECK_PROGRAM: slurmd runs it.
    files.update(slurm_files(plan, health_check_program=HEALTH_CHECK_PROGRAM))
    files["inventory.json"] = to_json(inventory_view(site, plan))
    return files


def to_json(data: Any, depth: int = 3) -> str:
    """JSON indented to ``depth`` levels, deeper values on one line each: a host per line.

    Readable in a diff, and fast at 100,000 GPUs (the C encoder does the inner levels).
    """
    def emit(value: Any, level: int) -> str:
        if level >= depth or not isinstance(value, dict) or not value:
            return json.dumps(value, separators=(", ", ": "))
        pad = " " * (level + 1)
        items = ",\n".join(f"{pad}{json.dumps(k)}: {emit(v, level + 1)}" for k, v in value.items())
        return "{\n" + items + "\n" + " " * level + "}"
    return emit(data, 0) + "\n"


def write_all(files: dict[str, str], out: Path) -> list[Path]:
    written = []
    for rel, content in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written


def plan_as_dict(plan: Plan) -> dict[str, Any]:
    """The plan as JSON-ready data (``gigafactory plan --json``)."""
    c = plan.capacity
    return {
        "site": plan.site,
        "capacity": {
            "nodes": c.nodes, "gpus": c.gpus, "racks_used": c.racks_used, "racks_declared": c.racks_declared,
            "switches": c.switches, "it_kw": c.it_kw, "facility_kw": c.facility_kw,
            "facility_budget_kw": c.facility_budget_kw, "headroom_kw": c.headroom_kw, "renewable_share": c.renewable_share,
        },
        "networks": {n.name: {"cidr": n.cidr, "vlan": n.vlan, "mtu": n.mtu, "blocks": n.blocks} for n in plan.networks.values()},
        "fabrics": [
            {"name": f.name, "kind": f.kind, "rate": f.rate, "tiers": f.tiers, "switches": f.switches, "cables": f.cables,
             "power_kw": f.power_kw, "subnet_managers": list(f.subnet_managers),
             "scalable_units": [_compress(u) for u in f.scalable_units],
             "rails": [{"rail": r.rail, "cidr": r.cidr, "interface": r.interface, "blocks": r.blocks} for r in f.rails]}
            for f in plan.fabrics
        ],
        "groups": {g: _compress(m) for g, m in plan.groups.items()},
        "hosts": {h.name: {"pool": h.pool, "node_type": h.node_type, "rack": h.rack, "rack_unit": h.rack_unit,
                           "addresses": h.addresses, "rails": list(h.rails), "scalable_unit": h.scalable_unit}
                  for h in plan.hosts.values()},
    }


def _compress(hosts) -> str:
    from ..site.hostlists import compress
    return compress(hosts)


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
    return out


def node_type_vars(site: Site, name: str) -> dict[str, Any]:
    """Variables of the ``type_<name>`` group: what every node of the type must have."""
    nt = site.node_types[name]
    return {
        "gf_node_type": name,
        "gf_gpus": nt.gpus,
        "gf_gpu_model": nt.gpu.model if nt.gpu else None,
        "gf_nvswitch": bool(nt.gpu and nt.gpu.nvswitch),
        "gf_nvlink_domain": bool(nt.gpu and nt.gpu.nvlink_domain),
        "gf_hcas": nt.hcas,
        "gf_hca_model": nt.hca.model if nt.hca else None,
        "gf_cpus": nt.cpu.sockets * nt.cpu.cores_per_socket * nt.cpu.threads_per_core,
        "gf_memory_gb": nt.memory_gb,
        "gf_hugepages_2m": nt.hugepages_2m,
    }


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
        "gf_ntp_servers": ntp_servers(site),
        "gf_etc_hosts": [[h.address(), h.name] for h in plan.hosts.values()],
        "gf_fabrics": fabric_vars(site, plan),
        "gf_health_check_program": HEALTH_CHECK_PROGRAM,
    }


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
            "controllers": [host for host, _ in s.controllers],
            "accounting_host": s.accounting[0],
            "login": list(s.login),
            "state_save_location": s.state_save_location,
            "containers": s.containers,
        },
        "gf_slurm_tenants": [
            {"tenant": t.name, "account": t.slurm.account, "fairshare": t.slurm.fairshare,
             "gpus": t.slurm.gpus, "cpus": t.slurm.cpus, "nodes": t.slurm.nodes}
            for t in site.tenants if t.slurm is not None
        ],
    }


def kubernetes_vars(site: Site, plan: Plan) -> dict[str, dict[str, Any]]:
    """Per cluster group (``k8s_<cluster>``): ``gf_kubernetes``, what the kubernetes role bootstraps with kubeadm."""
    from ..plan.kubernetes import plan_clusters
    return {c.group: {"gf_kubernetes": {
        "name": c.name,
        "version": c.version,
        "control_plane": list(c.control_plane),
        "api_endpoint": c.api_endpoint,
        "pod_cidr": c.pod_cidr,
        "service_cidr": c.service_cidr,
    }} for c in plan_clusters(site, plan)}


def partition_keys(site: Site) -> dict[str, str]:
    """InfiniBand partition keys: one per tenant with ``fabric_isolation``, from 0x0001 in tenant order."""
    isolated = [t.name for t in site.tenants if t.fabric_isolation]
    return {name: f"0x{i:04x}" for i, name in enumerate(isolated, start=1)}


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
            "rails": [{"rail": r.rail, "cidr": r.cidr, "interface": r.interface} for r in f.rails],
            "ip_mode": ip.mode if ip else None,
            "ip_mtu": ip.mtu if ip else None,
            "subnet_manager": sm.kind if sm else None,
            "subnet_managers": list(f.subnet_managers),
            "partitions": partition_keys(site) if f.kind == "infiniband" else {},
        }
    return out


def ntp_servers(site: Site) -> list[str]:
    """The site's time sources: as declared, else the Slurm controllers, else the first host."""
    if site.site.ntp_servers:
        return list(site.site.ntp_servers)
    if site.slurm is not None:
        return list(site.slurm.controllers)
    return [site.pools[0].hosts[0]]


def inventory_view(site: Site, plan: Plan) -> dict[str, Any]:
    """The plan as a static Ansible YAML inventory (for review and for comparison; Ansible reads the site file directly)."""
    children: dict[str, Any] = {}
    for group, members in plan.groups.items():
        children[group] = {"hosts": dict.fromkeys(members)}
    for name in site.node_types:
        if group_name("type", name) in children:
            children[group_name("type", name)]["vars"] = node_type_vars(site, name)
    if "slurm" in children and plan.slurm is not None:
        children["slurm"]["vars"] = slurm_vars(site, plan)
    for group, variables in kubernetes_vars(site, plan).items():
        children[group]["vars"] = variables
    return {"all": {
        "vars": group_vars(site, plan),
        "hosts": {name: host_vars(site, plan, name) for name in plan.hosts},
        "children": children,
    }}
