"""Every generated file, rendered from the plan with Jinja2 (the inventory variables: ``inventory.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from ..plan import Plan
from ..plan.model import GPU_RESOURCE, KUBERNETES_ADMIN_CONFIG, KUBERNETES_REMEDIATION_STATE, ClusterPlan
from ..site.healing import ACTIONS, GATE_PREFIX, HEAL_TAINT, KUBERNETES_ANNOTATIONS, STATES
from ..site.model import Site
from .escape import FILTERS, refuse_breaking

HEALTH_CHECK_PROGRAM = "/usr/local/sbin/gigafactory-node-health"
# Where slurmd finds the Prolog/Epilog pairs of the plan's job_scripts (slurm_compute's defaults name the same).
PROLOG_DIR = "/etc/slurm/prolog.d"
EPILOG_DIR = "/etc/slurm/epilog.d"
# The imex job script's map of NVLink domains (its IMEX_MAP default names the same, under /etc).
NVLINK_MAP = "slurm/gigafactory-nvlink.conf"


def _environment() -> Environment:
    # finalize: no printed string may break its line; the filters check words and GRES (escape.py).
    env = Environment(loader=PackageLoader("infra.render", "templates"), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, finalize=refuse_breaking)
    env.filters.update(FILTERS)
    return env


def render_file(plan: Plan, name: str, **extra: Any) -> str:
    """One of the files under ``templates/`` (without its ``.j2``), rendered from the plan."""
    template = _environment().get_template(f"{name}.j2")
    return template.render(site=plan.site, slurm=plan.slurm, hosts=list(plan.hosts.values()), **extra)


def slurm_files(plan: Plan, health_check_program: str | None = None) -> dict[str, str]:
    if plan.slurm is None:
        return {}
    files = {
        "slurm/slurm.conf": render_file(plan, "slurm.conf", health_check_program=health_check_program,
                                        prolog_dir=PROLOG_DIR, epilog_dir=EPILOG_DIR),
        "slurm/gres.conf": render_file(plan, "gres.conf"),
        "slurm/cgroup.conf": render_file(plan, "cgroup.conf"),
    }
    if plan.slurm.topology_plugin:
        files["slurm/topology.conf"] = render_file(plan, "topology.conf")
    if plan.slurm.nvlink_domains:
        files[NVLINK_MAP] = render_file(plan, "gigafactory-nvlink.conf")
    return files


def remediation_config(plan: Plan, cluster: ClusterPlan | None = None) -> dict[str, Any] | None:
    """The remediation service's configuration as it reads it (``remediation.json``, docs/healing.md): Slurm's (the
    controllers' ``gf_remediation``), or with ``cluster`` that Kubernetes cluster's (its first control plane's); the
    same rules. None where the site has none."""
    r = plan.remediation
    if r is None or (cluster is None and r.cluster is None):
        return None
    where: dict[str, Any] = {"cluster": r.cluster}
    if cluster is not None:
        where = {"cluster": cluster.name, "backend": "kubernetes", "kubernetes": {
            "control_plane": cluster.control_plane[0], "kubeconfig": KUBERNETES_ADMIN_CONFIG,
            "annotations": dict(KUBERNETES_ANNOTATIONS), "taint": HEAL_TAINT, "gpu_resource": GPU_RESOURCE}}
    return {
        "version": 1, **where, "user": "root" if cluster is not None else plan.slurm.user, "reason_prefix": r.reason_prefix, "gate_prefix": GATE_PREFIX,
        "actions": list(ACTIONS), "states": list(STATES), "interval_s": r.interval_s,
        "breaker": {"share": r.breaker_share, "window_s": r.breaker_window_s, "min_nodes": r.breaker_min_nodes},
        "diagnose_level": r.diagnose_level, "diagnose_timeout_s": r.diagnose_timeout_s,
        "reboot_timeout_s": r.reboot_timeout_s, "periodic_diag_s": r.periodic_diag_s,
        "state_dir": KUBERNETES_REMEDIATION_STATE if cluster is not None else r.state_dir, "metrics_file": r.metrics_file,
        "rules": [{"signal": rule.signal, "codes": list(rule.codes), "action": rule.action,
                   "escalate": None if rule.escalate is None else {
                       "count": rule.escalate.count, "window_s": rule.escalate.window_s, "action": rule.escalate.action}}
                  for rule in r.rules],
    }


def render_all(site: Site, plan: Plan) -> dict[str, str]:
    """Relative path -> content of every generated file."""
    files = {"plan.json": to_json(plan_as_dict(plan)), "hosts": render_file(plan, "hosts")}
    # The health phase runs on every site (infra/plan/phases.py) and installs the
    # node_health role's gate at HEALTH_CHECK_PROGRAM: slurmd runs it.
    files.update(slurm_files(plan, health_check_program=HEALTH_CHECK_PROGRAM))
    if (remediation := remediation_config(plan)) is not None:
        files["remediation.json"] = to_json(remediation, depth=2, lists=True)     # a rule per line
    # imported here, not at the top: the inventory variables carry the rendered Slurm files
    from .inventory import inventory_view
    files["inventory.json"] = to_json(inventory_view(site, plan))
    return files


def to_json(data: Any, depth: int = 3, lists: bool = False) -> str:
    """JSON indented to ``depth`` levels, deeper values on one line each: a host per line (``lists``: a list's
    entries too, one per line).

    Readable in a diff, and fast at 100,000 GPUs (the C encoder does the inner levels).
    """
    encode = json.JSONEncoder(separators=(", ", ": ")).encode     # json.dumps would build an encoder per value

    def emit(value: Any, level: int) -> str:
        pad = " " * (level + 1)
        if lists and level < depth and isinstance(value, list) and value:
            return "[\n" + ",\n".join(pad + emit(v, level + 1) for v in value) + "\n" + " " * level + "]"
        if level >= depth or not isinstance(value, dict) or not value:
            return encode(value)
        items = ",\n".join(f"{pad}{encode(k)}: {emit(v, level + 1)}" for k, v in value.items())
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
        "racks": {name: {"limits": _load(use.limits.kw, use.limits.units, use.limits.liquid_kw, use.limits.air_kw),
                         "used": _load(use.used.kw, use.used.units, use.used.liquid_kw, use.used.air_kw),
                         "domains": list(use.domains)} for name, use in plan.racks.items()},
        "domains": [{"name": d.name, "pool": d.pool, "rack": d.rack, "hosts": _compress(d.hosts)} for d in plan.domains],
        "power": None if plan.power is None else {
            "share": plan.power.share, "gpu_power_limits_w": plan.power.limits_w,
            "domains": [{"name": d.name, "parent": d.parent, "budget_kw": d.budget_kw, "worst_kw": d.worst_kw,
                         "headroom_kw": d.headroom_kw, "racks": d.racks} for d in plan.power.domains]},
        "groups": {g: _compress(m) for g, m in plan.groups.items()},
        "hosts": {h.name: {"pool": h.pool, "node_type": h.node_type, "rack": h.rack, "rack_unit": h.rack_unit,
                           "addresses": h.addresses, "rails": list(h.rails), "scalable_unit": h.scalable_unit}
                  for h in plan.hosts.values()},
    }


def _load(kw: float, units: int, liquid_kw: float, air_kw: float) -> dict[str, Any]:
    return {"kw": round(kw, 3), "units": units, "liquid_kw": round(liquid_kw, 3), "air_kw": round(air_kw, 3)}


def _compress(hosts) -> str:
    from ..site.hostlists import compress
    return compress(hosts)
