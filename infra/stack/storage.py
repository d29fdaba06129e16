"""SiteStorage: per cluster, storage classes, the CSI drivers, static Lustre volumes and tenants' storage quotas."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from collections.abc import Mapping, Sequence

import pulumi

from ..plan import Plan
from ..plan.kubernetes import ClusterPlan
from ..site.model import LustreStorage, NfsStorage, Tenant
from .charts import ChartSource, helm_release
from .cluster import KubernetesCluster
from .objects import declare, manifest

NFS_DRIVER = "nfs.csi.k8s.io"
LUSTRE_DRIVER = "lustre-csi.hpe.com"
NO_PROVISIONER = "kubernetes.io/no-provisioner"
LOCAL_NVME = "local-nvme"

Storage = NfsStorage | LustreStorage


def quantity(tb: float) -> str:
    """Terabytes as a Kubernetes quantity (decimal units, as the site file counts)."""
    return f"{int(tb)}T" if float(tb).is_integer() else f"{round(tb * 1000)}G"


def nfs_class(system: NfsStorage, server: str) -> dict[str, Any]:
    return manifest("storage.k8s.io/v1", "StorageClass", system.name, provisioner=NFS_DRIVER,
                    parameters={"server": server, "share": system.export, "subDir": "${pvc.metadata.namespace}/${pvc.metadata.name}"},
                    reclaimPolicy="Retain", volumeBindingMode="Immediate", allowVolumeExpansion=True,
                    mountOptions=["nfsvers=4.2", "hard"])


def static_class(name: str, binding: str) -> dict[str, Any]:
    return manifest("storage.k8s.io/v1", "StorageClass", name, provisioner=NO_PROVISIONER,
                    reclaimPolicy="Retain", volumeBindingMode=binding)


def lustre_volume(system: LustreStorage, tenant: str, namespace: str, tb: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """A PersistentVolume on the tenant's directory of the file system, pre-bound to a claim in its namespace."""
    size = quantity(tb)
    pv = manifest("v1", "PersistentVolume", f"{system.name}-{namespace}", labels={"gigafactory/tenant": tenant}, spec={
        "capacity": {"storage": size},
        "accessModes": ["ReadWriteMany"],
        "persistentVolumeReclaimPolicy": "Retain",
        "storageClassName": system.name,
        "claimRef": {"namespace": namespace, "name": system.name},
        "csi": {"driver": LUSTRE_DRIVER, "fsType": "lustre", "volumeHandle": f"{system.mgs}:/{system.fsname}/{tenant}"},
    })
    pvc = manifest("v1", "PersistentVolumeClaim", system.name, namespace, spec={
        "accessModes": ["ReadWriteMany"],
        "storageClassName": system.name,
        "volumeName": pv["metadata"]["name"],
        "resources": {"requests": {"storage": size}},
    })
    return pv, pvc


def storage_quota(tenant: Tenant, namespace: str, systems: Mapping[str, Storage]) -> dict[str, Any] | None:
    """requests.storage per storage class, for each storage the tenant has an allotment on."""
    hard = {f"{name}.storageclass.storage.k8s.io/requests.storage": quantity(tb)
            for name, tb in sorted(tenant.storage_tb.items()) if name in systems}
    if not hard:
        return None
    return manifest("v1", "ResourceQuota", "storage", namespace, spec={"hard": hard})


@dataclass(frozen=True)
class SiteStorageArgs:
    plan: Plan
    storage: Sequence[Storage]
    tenants: Sequence[Tenant]
    clusters: Mapping[str, ClusterPlan]
    kubernetes: Mapping[str, KubernetesCluster]
    charts: ChartSource
    after: Sequence[pulumi.Resource] = ()       # the tenants' namespaces


class SiteStorage(pulumi.ComponentResource):
    """Per cluster: NFS home (CSI), Lustre datasets (static volumes), local NVMe, tenants' storage quotas."""

    def __init__(self, name: str, args: SiteStorageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gigafactory:infra:SiteStorage", name, None, opts)
        systems = {s.name: s for s in args.storage}
        nfs = [s for s in args.storage if isinstance(s, NfsStorage)]
        lustre = [s for s in args.storage if isinstance(s, LustreStorage)]
        self.classes: dict[str, list[str]] = {}
        for cluster_name, cluster in args.clusters.items():
            k = args.kubernetes[cluster_name]
            base = pulumi.ResourceOptions.merge(pulumi.ResourceOptions(parent=self), k.options())
            drivers = []
            if nfs:
                drivers.append(helm_release(f"{cluster_name}-csi-nfs", "csi-nfs", args.charts, {}, base))
            if lustre:
                drivers.append(helm_release(f"{cluster_name}-csi-lustre", "csi-lustre", args.charts, {}, base))
            classes = []
            for system in nfs:
                server = args.plan.hosts[system.server]
                address = server.address("storage" if "storage" in server.addresses else "management")
                classes.append(nfs_class(system, address))
            classes += [static_class(s.name, "Immediate") for s in lustre]
            if cluster.local_nvme:
                classes.append(static_class(LOCAL_NVME, "WaitForFirstConsumer"))
            for obj in classes:
                declare(f"{cluster_name}-class-{obj['metadata']['name']}", obj, base)
            self.classes[cluster_name] = [obj["metadata"]["name"] for obj in classes]

            in_namespaces = pulumi.ResourceOptions.merge(base, pulumi.ResourceOptions(depends_on=list(args.after)))
            for tenant in args.tenants:
                if tenant.kubernetes is None or tenant.kubernetes.cluster != cluster_name:
                    continue
                ns = tenant.kubernetes.namespace
                for system in lustre:
                    if system.name in tenant.storage_tb:
                        pv, pvc = lustre_volume(system, tenant.name, ns, tenant.storage_tb[system.name])
                        volume = declare(f"{cluster_name}-{system.name}-{ns}", pv,
                                         pulumi.ResourceOptions.merge(base, pulumi.ResourceOptions(depends_on=drivers)))
                        declare(f"{cluster_name}-{ns}-{system.name}", pvc,
                                pulumi.ResourceOptions.merge(in_namespaces, pulumi.ResourceOptions(depends_on=[volume])))
                quota = storage_quota(tenant, ns, systems)
                if quota is not None:
                    declare(f"{cluster_name}-{ns}-storage-quota", quota, in_namespaces)
        self.register_outputs({"classes": self.classes})
