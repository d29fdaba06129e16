"""SiteNetwork: the address plan as outputs, and the RDMA networks pods attach to in each cluster."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any
from collections.abc import Mapping

import pulumi

from ..plan import Plan
from ..plan.kubernetes import ClusterPlan, RailPodPool
from .charts import NETWORK_OPERATOR_IMAGE_TAG, NETWORK_OPERATOR_IMAGES
from .cluster import KubernetesCluster
from .objects import declare, manifest

MELLANOX = "mellanox.com/v1alpha1"
ATTACHMENT_NAMESPACE = "default"        # where the operator writes the NetworkAttachmentDefinitions


def address_outputs(plan: Plan) -> dict[str, Any]:
    """Per network its CIDR and blocks; per pool the first and last address on each network; per rail its subnet."""
    networks = {n.name: {"cidr": n.cidr, "vlan": n.vlan, "mtu": n.mtu, "blocks": dict(n.blocks)} for n in plan.networks.values()}
    pools: dict[str, dict[str, Any]] = {}
    for host in plan.hosts.values():
        entry = pools.setdefault(host.pool, {"hosts": 0, "first": host.name, "addresses": {}})
        entry["hosts"] += 1
        entry["last"] = host.name
        for network, address in host.addresses.items():
            ip = address.split("/")[0]
            span = entry["addresses"].setdefault(network, {"first": ip, "last": ip})
            if ipaddress.IPv4Address(ip) < ipaddress.IPv4Address(span["first"]):
                span["first"] = ip
            if ipaddress.IPv4Address(ip) > ipaddress.IPv4Address(span["last"]):
                span["last"] = ip
    rails = {f"{r.fabric}-rail{r.rail}": {"cidr": r.cidr, "interface": r.interface, "blocks": dict(r.blocks)}
             for f in plan.fabrics for r in f.rails}
    return {"networks": networks, "pools": pools, "rails": rails}


def _image(name: str) -> dict[str, str]:
    return {"image": name, "repository": NETWORK_OPERATOR_IMAGES, "version": NETWORK_OPERATOR_IMAGE_TAG}


def rail_resource(rail: RailPodPool, rdma: str) -> str:
    """The device-plugin resource name of a rail's RDMA devices."""
    return f"rdma_{'sriov' if rdma == 'sriov' else 'shared'}_{rail.fabric}_rail{rail.rail}".replace("-", "_")


def nic_cluster_policy(cluster: ClusterPlan) -> dict[str, Any]:
    """The Network Operator's singleton policy: RDMA devices per rail (shared or SR-IOV), Multus, IPoIB, whereabouts."""
    if cluster.rdma == "sriov":
        config = {"resourceList": [{"resourcePrefix": "nvidia.com", "resourceName": rail_resource(r, "sriov"),
                                    "selectors": {"vendors": ["15b3"], "isRdma": True, "pfNames": [r.interface]}}
                                   for r in cluster.rails]}
        devices = {"sriovDevicePlugin": {**_image("sriov-network-device-plugin"), "config": json.dumps(config, sort_keys=True)}}
    else:
        config = {"configList": [{"resourceName": rail_resource(r, "shared"), "rdmaHcaMax": 63,
                                  "selectors": {"ifNames": [r.interface]}} for r in cluster.rails]}
        devices = {"rdmaSharedDevicePlugin": {**_image("k8s-rdma-shared-dev-plugin"), "config": json.dumps(config, sort_keys=True)}}
    secondary = {"cniPlugins": _image("plugins"), "multus": _image("multus-cni"), "ipamPlugin": _image("whereabouts")}
    if any(r.fabric_kind == "infiniband" for r in cluster.rails) and cluster.rdma == "shared":
        secondary["ipoib"] = _image("ipoib-cni")
    return manifest(MELLANOX, "NicClusterPolicy", "nic-cluster-policy", spec={**devices, "secondaryNetwork": secondary})


def attachment_name(rail: RailPodPool) -> str:
    return f"{rail.fabric}-rail{rail.rail}"


def rail_network(rail: RailPodPool, rdma: str) -> dict[str, Any]:
    """The network pods on one rail attach to, with a whereabouts pool from the rail's pod pool.

    InfiniBand with shared RDMA: an IPoIB child of the rail interface (IPoIBNetwork). RoCE with
    shared RDMA: a macvlan on it (MacvlanNetwork). SR-IOV: the VF itself (HostDeviceNetwork).
    """
    ipam = json.dumps({"type": "whereabouts", "range": rail.pod_pool}, sort_keys=True)
    spec: dict[str, Any] = {"networkNamespace": ATTACHMENT_NAMESPACE, "ipam": ipam}
    if rdma == "sriov":
        kind = "HostDeviceNetwork"
        spec["resourceName"] = f"nvidia.com/{rail_resource(rail, 'sriov')}"
    elif rail.fabric_kind == "infiniband":
        kind = "IPoIBNetwork"
        spec["master"] = rail.interface
    else:
        kind = "MacvlanNetwork"
        spec.update(master=rail.interface, mode="bridge", mtu=9000)
    return manifest(MELLANOX, kind, attachment_name(rail), spec=spec)


@dataclass(frozen=True)
class SiteNetworkArgs:
    plan: Plan
    clusters: Mapping[str, ClusterPlan]
    kubernetes: Mapping[str, KubernetesCluster]


class SiteNetwork(pulumi.ComponentResource):
    """Address plan outputs; per cluster with the Network Operator: NicClusterPolicy and one network per rail."""

    def __init__(self, name: str, args: SiteNetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gigafactory:infra:SiteNetwork", name, None, opts)
        self.addresses = address_outputs(args.plan)
        self.attachments: dict[str, list[str]] = {}
        for cluster_name, cluster in args.clusters.items():
            k = args.kubernetes[cluster_name]
            if "network-operator" not in cluster.addons or not cluster.rails:
                continue
            opts_ = pulumi.ResourceOptions.merge(pulumi.ResourceOptions(parent=self), k.options("network-operator"))
            policy = declare(f"{cluster_name}-nic-cluster-policy", nic_cluster_policy(cluster), opts_)
            after = pulumi.ResourceOptions.merge(opts_, pulumi.ResourceOptions(depends_on=[policy]))
            for rail in cluster.rails:
                declare(f"{cluster_name}-{attachment_name(rail)}", rail_network(rail, cluster.rdma), after)
            self.attachments[cluster_name] = [f"{ATTACHMENT_NAMESPACE}/{attachment_name(r)}" for r in cluster.rails]
        self.register_outputs({**self.addresses, "attachments": self.attachments})
