"""Helm charts gigafactory installs, pinned, and where they come from.

Charts come from the site's own chart mirror (``repositories.charts``). A site
without one gets them from chart archives kept in the repository's ``charts/``
folder (``<name>-<version>.tgz``, fetched with ``helm pull`` on a connected
machine); never from the internet. The site check
``kubernetes_addons_have_chart_mirror`` warns about that fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

LOCAL_CHARTS = "charts"


@dataclass(frozen=True)
class Chart:
    chart: str
    version: str
    namespace: str
    release: str


CHARTS: dict[str, Chart] = {
    "gpu-operator": Chart("gpu-operator", "v25.3.1", "gpu-operator", "gpu-operator"),
    "network-operator": Chart("network-operator", "25.4.0", "nvidia-network-operator", "network-operator"),
    "nfd": Chart("node-feature-discovery", "0.17.3", "node-feature-discovery", "node-feature-discovery"),
    "kueue": Chart("kueue", "0.12.3", "kueue-system", "kueue"),
    "monitoring": Chart("kube-prometheus-stack", "72.9.1", "monitoring", "kube-prometheus-stack"),
    "opencost": Chart("opencost", "2.1.6", "opencost", "opencost"),
    "csi-nfs": Chart("csi-driver-nfs", "4.11.0", "kube-system", "csi-driver-nfs"),
    "csi-lustre": Chart("lustre-csi-driver", "0.1.8", "kube-system", "lustre-csi-driver"),
    # NVIDIA's DRA driver for GPUs, ComputeDomains only; upstream renamed it dra-driver-nvidia-gpu after 25.12
    "compute-domains": Chart("nvidia-dra-driver-gpu", "25.12.0", "nvidia-dra-driver-gpu", "nvidia-dra-driver-gpu"),
}

# Container images of the Network Operator's components follow its release.
NETWORK_OPERATOR_IMAGES = "nvcr.io/nvidia/mellanox"
NETWORK_OPERATOR_IMAGE_TAG = "network-operator-v25.4.0"


@dataclass(frozen=True)
class ChartSource:
    """A chart mirror URL, or the repository's local chart folder."""
    mirror: str | None
    local: Path

    def release_args(self, chart: Chart) -> dict[str, Any]:
        if self.mirror:
            return {"chart": chart.chart, "version": chart.version,
                    "repository_opts": k8s.helm.v3.RepositoryOptsArgs(repo=self.mirror)}
        return {"chart": str(self.local / f"{chart.chart}-{chart.version}.tgz"), "version": chart.version}


def chart_source(mirror: str | None, root: Path) -> ChartSource:
    return ChartSource(mirror.rstrip("/") if mirror else None, root / LOCAL_CHARTS)


def helm_release(name: str, key: str, source: ChartSource, values: dict[str, Any],
                 opts: pulumi.ResourceOptions) -> k8s.helm.v3.Release:
    """A pinned Helm release of ``CHARTS[key]`` from ``source``."""
    chart = CHARTS[key]
    return k8s.helm.v3.Release(
        name,
        name=chart.release,
        namespace=chart.namespace,
        create_namespace=True,
        atomic=True,
        values=values,
        **source.release_args(chart),
        opts=opts,
    )
