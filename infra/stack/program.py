"""The Pulumi program: read the stack's site file, validate and plan it, then declare every component.

Nothing is declared unless the site validates: a SiteInvalid becomes one Pulumi
error listing every problem with its field, not a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi

from ..project import ansible_root
from ..plan import Plan, build_plan
from ..site import Site, SiteInvalid, load_site
from ..site.checks import run_checks
from .charts import chart_source
from .cluster import KubernetesCluster, KubernetesClusterArgs
from .network import SiteNetwork, SiteNetworkArgs
from .node_configuration import NodeConfiguration, NodeConfigurationArgs, PhaseInputError, PhaseInputs
from .storage import SiteStorage, SiteStorageArgs
from .tenants import Tenants, TenantsArgs

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "gigafactory"


def site_file(value: str, root: Path = ROOT) -> Path:
    """The stack's ``gigafactory:site`` as a path; relative paths are relative to the repository root."""
    path = Path(value)
    return path if path.is_absolute() else root / path


def rejection(err: SiteInvalid) -> str:
    lines = [f"{err.source}: the site file has {len(err.problems)} problem(s); nothing was declared."]
    lines += [f"  {problem}" for problem in err.problems]
    return "\n".join(lines)


def load(path: Path) -> tuple[Site, Plan]:
    """The site and its plan; a site that does not validate or plan raises pulumi.RunError (no traceback)."""
    try:
        site = load_site(path)
        return site, build_plan(site, str(path))
    except SiteInvalid as err:
        raise pulumi.RunError(rejection(err)) from None


def declare_site(site: Site, plan: Plan, site_rel: str, root: Path = ROOT, playbooks: Path | None = None) -> dict[str, Any]:
    """Every component of the site; returns the stack outputs. ``playbooks``: where playbooks/ is (default ``root``)."""
    try:
        inputs = PhaseInputs.of(site, plan, root, site_rel, playbooks)
    except PhaseInputError as err:
        raise pulumi.RunError(f"{err}; nothing was declared") from None
    charts = chart_source(site.repositories.charts.url if site.repositories.charts else None, root)
    clusters = {c.name: c for c in plan.kubernetes}
    nodes = NodeConfiguration("nodes", NodeConfigurationArgs(inputs))
    kubernetes = {
        name: KubernetesCluster(name, KubernetesClusterArgs(cluster, plan, charts, site_rel, root, inputs,
                                                            nodes.before_clusters()))
        for name, cluster in clusters.items()
    }
    nodes.after_clusters([k.bootstrap for k in kubernetes.values()])
    network = SiteNetwork("network", SiteNetworkArgs(plan, clusters, kubernetes))
    tenants = Tenants("tenants", TenantsArgs(site.tenants, clusters, kubernetes))
    storage = SiteStorage("storage", SiteStorageArgs(plan, site.storage, site.tenants, clusters, kubernetes, charts,
                                                     list(tenants.namespaces.values())))
    return {
        "site": plan.site,
        "capacity": {"nodes": plan.capacity.nodes, "gpus": plan.capacity.gpus},
        "networks": network.addresses["networks"],
        "pools": network.addresses["pools"],
        "rails": network.addresses["rails"],
        "attachments": network.attachments,
        "storageClasses": storage.classes,
        "kubeconfigs": {name: k.kubeconfig for name, k in kubernetes.items()},
        "phases": {name: p.inputs_hash for name, p in nodes.phases.items()},
    }


def main() -> None:
    value = pulumi.Config(CONFIG).require("site")
    path = site_file(value)
    site, plan = load(path)
    for problem in run_checks(site):
        if problem.severity == "warning":
            pulumi.log.warn(f"{value}: {problem}")
    rel = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
    for key, output in declare_site(site, plan, rel, ROOT, ansible_root()).items():
        pulumi.export(key, output)
