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
from .node_configuration import AnsiblePhase, PhaseInputs, kubernetes_phase


def addon_values(cluster: ClusterPlan) -> dict[str, dict[str, Any]]:
    """Helm values per add-on: the host carries the NVIDIA driver and RDMA stack, the operators do the rest.

    Node Feature Discovery runs once: as its own add-on if asked for, else inside the GPU Operator,
    else inside the Network Operator.
    """
    addons = set(cluster.addons)
    nfd_own = "nfd" in addons
    return {
        "gpu-operator": {
            "driver": {"enabled": False},           # installed on the host by the gpu phase
            "toolkit": {"enabled": True},
            "dcgmExporter": {"enabled": True, "serviceMonitor": {"enabled": "monitoring" in addons}},
            "nfd": {"enabled": not nfd_own},
        },
        "network-operator": {
            "nfd": {"enabled": not nfd_own and "gpu-operator" not in addons},
            "sriovNetworkOperator": {"enabled": cluster.rdma == "sriov"},
        },
        "nfd": {},
        "kueue": {},
        "monitoring": {
            "prometheus": {"prometheusSpec": {"serviceMonitorSelectorNilUsesHelmValues": False}},
        },
    }


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
        phase = kubernetes_phase(c.group)
        extra_vars = {"kubernetes_cluster": c.name}
        digest = args.inputs.digest(phase, extra_vars)
        self.bootstrap = AnsiblePhase(
            f"{name}-kubeadm", phase,
            {"site_file": args.site_file, "root": str(args.root), "extra_vars": extra_vars},
            digest, pulumi.ResourceOptions(parent=self, depends_on=list(args.after)))
        self.kubeconfig = pulumi.Output.secret(self.bootstrap.kubeconfig)
        self.provider = k8s.Provider(name, kubeconfig=self.kubeconfig, enable_server_side_apply=True,
                                     opts=pulumi.ResourceOptions(parent=self))
        values = addon_values(c)
        self.addons = {}
        for addon in c.addons:
            self.addons[addon] = helm_release(f"{name}-{addon}", addon, args.charts, values[addon],
                                              pulumi.ResourceOptions(parent=self, provider=self.provider))
        self.register_outputs({
            "kubeconfig": self.kubeconfig,
            "api_endpoint": c.api_endpoint,
            "addons": {a: r.version for a, r in self.addons.items()},
        })

    def options(self, *after: str) -> pulumi.ResourceOptions:
        """Options for a resource in this cluster, created after the named add-ons (those that exist)."""
        return pulumi.ResourceOptions(provider=self.provider,
                                      depends_on=[self.addons[a] for a in after if a in self.addons])
