"""Kubernetes objects written as plain manifests (camelCase dicts), declared as Pulumi resources.

Components build manifests with small pure functions, then ``declare`` them: built-in
kinds become typed pulumi-kubernetes resources, anything else a CustomResource.
"""

from __future__ import annotations

import re
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

TENANT_LABEL = "gigafactory/tenant"          # on each tenant's namespace: Kueue's and the meters' way to the tenant
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"     # on a workload (Job, Pod) Kueue admits: its LocalQueue

BUILT_IN = {
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "ResourceQuota"): k8s.core.v1.ResourceQuota,
    ("v1", "LimitRange"): k8s.core.v1.LimitRange,
    ("v1", "PersistentVolume"): k8s.core.v1.PersistentVolume,
    ("v1", "PersistentVolumeClaim"): k8s.core.v1.PersistentVolumeClaim,
    ("networking.k8s.io/v1", "NetworkPolicy"): k8s.networking.v1.NetworkPolicy,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): k8s.rbac.v1.RoleBinding,
    ("storage.k8s.io/v1", "StorageClass"): k8s.storage.v1.StorageClass,
}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def manifest(api_version: str, kind: str, name: str, namespace: str | None = None,
             labels: dict[str, str] | None = None, **body: Any) -> dict[str, Any]:
    """A manifest with gigafactory's label on it."""
    metadata: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/managed-by": "gigafactory", **(labels or {})}}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, **body}


def declare(resource_name: str, obj: dict[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    """``obj`` as a Pulumi resource on the provider named in ``opts``."""
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
    cls = BUILT_IN.get((obj["apiVersion"], obj["kind"]))
    if cls is None:
        return k8s.apiextensions.CustomResource(resource_name, api_version=obj["apiVersion"], kind=obj["kind"],
                                                opts=opts, **body)
    return cls(resource_name, opts=opts, **{_snake(k): v for k, v in body.items()})
