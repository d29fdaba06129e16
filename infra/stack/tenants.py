"""Tenants: per tenant on a cluster, its namespace, GPU quota, defaults, isolation, access, Kueue queues and ComputeDomain."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from collections.abc import Mapping, Sequence

import pulumi

from ..plan.kubernetes import ClusterPlan
from ..site.model import Tenant
from .cluster import KubernetesCluster
from .objects import TENANT_LABEL, declare, manifest

GPU = "nvidia.com/gpu"
KUEUE = "kueue.x-k8s.io/v1beta1"
FLAVOR = "default-flavor"
COMPUTE_DOMAIN = "resource.nvidia.com/v1beta1"       # the DRA driver's CRD (compute-domains add-on)


def namespace(tenant: Tenant) -> dict[str, Any]:
    return manifest("v1", "Namespace", tenant.kubernetes.namespace, labels={TENANT_LABEL: tenant.name})


def gpu_quota(tenant: Tenant) -> dict[str, Any]:
    return manifest("v1", "ResourceQuota", "gpu", tenant.kubernetes.namespace,
                    spec={"hard": {f"requests.{GPU}": str(tenant.kubernetes.gpus)}})


def limit_range(tenant: Tenant) -> dict[str, Any]:
    """Defaults for containers that say nothing, so the quota and the scheduler see every pod's size."""
    return manifest("v1", "LimitRange", "defaults", tenant.kubernetes.namespace, spec={"limits": [{
        "type": "Container",
        "defaultRequest": {"cpu": "500m", "memory": "1Gi"},
        "default": {"cpu": "2", "memory": "8Gi"},
    }]})


def network_policy(tenant: Tenant) -> dict[str, Any]:
    """Deny by default; pods talk to pods of the same namespace, and to the cluster DNS."""
    same_namespace = [{"podSelector": {}}]
    dns = {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
           "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
    return manifest("networking.k8s.io/v1", "NetworkPolicy", "default-deny", tenant.kubernetes.namespace, spec={
        "podSelector": {},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": same_namespace}],
        "egress": [{"to": same_namespace}, dns],
    })


def role_binding(tenant: Tenant) -> dict[str, Any]:
    group = tenant.kubernetes.group or tenant.name
    return manifest("rbac.authorization.k8s.io/v1", "RoleBinding", "tenant-edit", tenant.kubernetes.namespace,
                    roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
                    subjects=[{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}])


def compute_domain(tenant: Tenant) -> dict[str, Any]:
    """The tenant's ComputeDomain: pods that claim its channel's ResourceClaimTemplate share one IMEX domain across the
    NVLink trays they land on. ``numNodes: 0``: the driver follows the pods (IMEX daemons by DNS name, its default)."""
    return manifest(COMPUTE_DOMAIN, "ComputeDomain", f"{tenant.name}-nvlink", tenant.kubernetes.namespace, spec={
        "numNodes": 0,
        "channel": {"resourceClaimTemplate": {"name": f"{tenant.name}-nvlink-channel"}},
    })


def resource_flavor() -> dict[str, Any]:
    return manifest(KUEUE, "ResourceFlavor", FLAVOR, spec={})


def cluster_queue(tenant: Tenant, cluster: ClusterPlan) -> dict[str, Any]:
    """Nominal quota: the tenant's GPUs, with the CPU and memory that come with them on the cluster's workers."""
    gpus = tenant.kubernetes.gpus
    resources = [
        {"name": "cpu", "nominalQuota": str(gpus * cluster.cpus_per_gpu)},
        {"name": "memory", "nominalQuota": f"{gpus * cluster.memory_gb_per_gpu}Gi"},
        {"name": GPU, "nominalQuota": str(gpus)},
    ]
    return manifest(KUEUE, "ClusterQueue", tenant.name, spec={
        "namespaceSelector": {"matchLabels": {TENANT_LABEL: tenant.name}},
        "resourceGroups": [{"coveredResources": [r["name"] for r in resources],
                            "flavors": [{"name": FLAVOR, "resources": resources}]}],
    })


def local_queue(tenant: Tenant) -> dict[str, Any]:
    return manifest(KUEUE, "LocalQueue", "default", tenant.kubernetes.namespace, spec={"clusterQueue": tenant.name})


@dataclass(frozen=True)
class TenantsArgs:
    tenants: Sequence[Tenant]
    clusters: Mapping[str, ClusterPlan]
    kubernetes: Mapping[str, KubernetesCluster]


class Tenants(pulumi.ComponentResource):
    """Every tenant with a ``kubernetes`` entry, in its cluster; Kueue queues where the cluster runs Kueue, a ComputeDomain
    where it runs the DRA driver (compute-domains)."""

    def __init__(self, name: str, args: TenantsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gigafactory:infra:Tenants", name, None, opts)
        self.namespaces: dict[str, pulumi.Resource] = {}
        flavors: dict[str, pulumi.Resource] = {}
        for tenant in args.tenants:
            if tenant.kubernetes is None:
                continue
            cname = tenant.kubernetes.cluster
            cluster, k = args.clusters[cname], args.kubernetes[cname]
            ns = tenant.kubernetes.namespace
            base = pulumi.ResourceOptions.merge(pulumi.ResourceOptions(parent=self), k.options())
            created = declare(f"{cname}-{ns}", namespace(tenant), base)
            self.namespaces[f"{cname}/{ns}"] = created
            inside = pulumi.ResourceOptions.merge(base, pulumi.ResourceOptions(depends_on=[created]))
            declare(f"{cname}-{ns}-gpu-quota", gpu_quota(tenant), inside)
            declare(f"{cname}-{ns}-limits", limit_range(tenant), inside)
            declare(f"{cname}-{ns}-default-deny", network_policy(tenant), inside)
            declare(f"{cname}-{ns}-edit", role_binding(tenant), inside)
            if "compute-domains" in cluster.addons:       # the CRD comes with the driver's release
                declare(f"{cname}-{ns}-nvlink", compute_domain(tenant),
                        pulumi.ResourceOptions.merge(inside, k.options("compute-domains")))
            if "kueue" not in cluster.addons:
                continue
            queued = pulumi.ResourceOptions.merge(pulumi.ResourceOptions(parent=self), k.options("kueue"))
            if cname not in flavors:
                flavors[cname] = declare(f"{cname}-{FLAVOR}", resource_flavor(), queued)
            queue = declare(f"{cname}-{tenant.name}-queue", cluster_queue(tenant, cluster),
                            pulumi.ResourceOptions.merge(queued, pulumi.ResourceOptions(depends_on=[flavors[cname]])))
            declare(f"{cname}-{ns}-local-queue", local_queue(tenant),
                    pulumi.ResourceOptions.merge(queued, pulumi.ResourceOptions(depends_on=[created, queue])))
        self.register_outputs({"namespaces": sorted(self.namespaces)})
