"""KubernetesCluster: kubeadm on the cluster's bare-metal hosts, its provider, and its add-ons."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Sequence

import pulumi
import pulumi_kubernetes as k8s

from ..plan import Plan
from ..plan.kubernetes import ClusterPlan
from .charts import ChartSource, helm_release
from .metering import dcgm_exporter_values, dcgm_metrics_config, kube_state_metrics_values, kueue_values, opencost_values
from .node_configuration import CLUSTER_PHASE, AnsiblePhase, PhaseInputs
from .objects import declare


def compute_domain_values() -> dict[str, Any]:
    """NVIDIA's DRA driver for ComputeDomains alone: the GPU Operator's device plugin keeps the GPUs (the chart refuses
    both), the driver is the host's, and the resource API is named so that the chart need not probe the cluster."""
    return {
        "resources": {"computeDomains": {"enabled": True}, "gpus": {"enabled": False}},
        "nvidiaDriverRoot": "/",
        "resourceApiVersion": "resource.k8s.io/v1",
    }


def addon_values(cluster: ClusterPlan) -> dict[str, dict[str, Any]]:
    """Helm values per add-on of the cluster: the host carries the NVIDIA driver and RDMA stack, the operators do the rest.

    Node Feature Discovery runs once: as its own add-on if asked for, else inside the GPU Operator,
    else inside the Network Operator. Metering (infra/stack/metering.py): the DCGM exporter maps GPUs to pods and
    exports their energy, kube-state-metrics keeps the tenant and queue labels, Kueue is scraped, OpenCost prices.
    """
    addons = set(cluster.addons)
    nfd_own = "nfd" in addons
    monitoring = "monitoring" in addons
    values = {
        "gpu-operator": lambda: {
            "driver": {"enabled": False},           # installed on the host by the gpu phase
            "toolkit": {"enabled": True},
            "dcgmExporter": dcgm_exporter_values(monitoring),
            "nfd": {"enabled": not nfd_own},
        },
        "network-operator": lambda: {
            "nfd": {"enabled": not nfd_own and "gpu-operator" not in addons},
            "sriovNetworkOperator": {"enabled": cluster.rdma == "sriov"},
        },
        "nfd": dict,
        "kueue": lambda: kueue_values(monitoring),
        "monitoring": lambda: {
            "prometheus": {"prometheusSpec": {"serviceMonitorSelectorNilUsesHelmValues": False}},
            "kube-state-metrics": kube_state_metrics_values(),
        },
        "opencost": lambda: opencost_values(cluster),
        "compute-domains": compute_domain_values,
    }
    return {addon: values[addon]() for addon in cluster.addons}


# An add-on whose chart declares a ServiceMonitor installs after the one that brings its CRD; the DRA driver after the
# GPU Operator (its device plugin and the NFD labels the driver's kubelet plugin is placed by) and a standalone NFD.
AFTER = {"kueue": ("monitoring",), "opencost": ("monitoring",), "compute-domains": ("gpu-operator", "nfd")}


def install_order(addons: Sequence[str]) -> list[str]:
    """The cluster's add-ons, each after those of ``AFTER`` it names that the cluster has."""
    order: list[str] = []

    def visit(addon: str) -> None:
        if addon not in order:
            for first in AFTER.get(addon, ()):
                if first in addons:
                    visit(first)
            order.append(addon)

    for addon in addons:
        visit(addon)
    return order


@dataclass(frozen=True)
class KubernetesClusterArgs:
    cluster: ClusterPlan
    plan: Plan
    charts: ChartSource
    site_file: str
    root: Path
    inputs: PhaseInputs                 # what the bootstrap reads, hashed
    after: Sequence[pulumi.Resource] = field(default_factory=tuple)   # node phases the bootstrap waits for


class KubernetesCluster(pulumi.ComponentResource):
    """kubeadm through the ``kubernetes`` role, the kubeconfig (secret), a provider on it, pinned add-ons."""

    kubeconfig: pulumi.Output[str]
    provider: k8s.Provider
    addons: dict[str, k8s.helm.v3.Release]

    def __init__(self, name: str, args: KubernetesClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gigafactory:infra:KubernetesCluster", name, None, opts)
        c = args.cluster
        extra_vars = {"kubernetes_cluster": c.name}
        digest = args.inputs.digest(CLUSTER_PHASE, extra_vars, limit=c.group)     # the cluster's hosts only
        self.bootstrap = AnsiblePhase(
            f"{name}-kubeadm", CLUSTER_PHASE,
            {"site_file": args.site_file, "root": str(args.root), "extra_vars": extra_vars},
            digest, pulumi.ResourceOptions(parent=self, depends_on=list(args.after)), limit=c.group)
        self.kubeconfig = pulumi.Output.secret(self.bootstrap.kubeconfig)
        self.provider = k8s.Provider(name, kubeconfig=self.kubeconfig, enable_server_side_apply=True,
                                     opts=pulumi.ResourceOptions(parent=self))
        values = addon_values(c)
        self.addons = {}
        for addon in install_order(c.addons):
            after = [self.addons[a] for a in AFTER.get(addon, ()) if a in self.addons]
            self.addons[addon] = helm_release(f"{name}-{addon}", addon, args.charts, values[addon],
                                              pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=after))
        if "gpu-operator" in self.addons:       # in the namespace the operator's release creates
            declare(f"{name}-dcgm-metrics", dcgm_metrics_config(),
                    pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=[self.addons["gpu-operator"]]))
        self.register_outputs({
            "kubeconfig": self.kubeconfig,
            "api_endpoint": c.api_endpoint,
            "addons": {a: r.version for a, r in self.addons.items()},
        })

    def options(self, *after: str) -> pulumi.ResourceOptions:
        """Options for a resource in this cluster, created after the named add-ons (those that exist)."""
        return pulumi.ResourceOptions(provider=self.provider,
                                      depends_on=[self.addons[a] for a in after if a in self.addons])
