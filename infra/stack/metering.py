"""Metering on Kubernetes: what the add-ons' values gain so that GPU, CPU, memory, storage and energy use reach the
cluster's Prometheus attributed to tenants, and OpenCost prices it from the site's tariffs (docs/metering.md).

- DCGM exporter (GPU Operator): each GPU's metrics carry the pod holding it (kubelet's pod-resources API), from a
  metrics list the program declares as a ConfigMap, the energy counter included; a ServiceMonitor with monitoring.
- kube-state-metrics (kube-prometheus-stack): the tenant label of namespaces and the Kueue queue label of pods and
  Jobs kept on ``kube_*_labels``, beside the GPU requests it always exports.
- Kueue: its ServiceMonitor (queue metrics per ClusterQueue, one per tenant), with monitoring.
- OpenCost: custom prices from the plan's ``ClusterPricing`` (infra/plan/tariffs.py), reading the cluster's Prometheus.
"""

from __future__ import annotations

from typing import Any

from ..plan.model import ClusterPlan, ClusterPricing
from ..plan.tariffs import price_text
from .charts import CHARTS
from .objects import QUEUE_LABEL, TENANT_LABEL, manifest

DCGM_METRICS_CONFIG = "gigafactory-dcgm-metrics"   # ConfigMap in the GPU Operator's namespace
DCGM_METRICS_KEY = "dcgm-metrics.csv"               # the key the GPU Operator mounts as the exporter's collectors file
ENERGY_FIELD = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
# (DCGM field, Prometheus type, help): what metering and the operators read; the exporter exports nothing else.
DCGM_METRICS = (
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "Share of time the GPU was busy (%)."),
    ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", "Share of time the graphics engine was active (ratio)."),
    ("DCGM_FI_DEV_FB_USED", "gauge", "GPU memory in use (MiB)."),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "GPU power draw (W)."),
    (ENERGY_FIELD, "counter", "GPU energy since the driver loaded (mJ); its increase over a pod's life is the pod's GPU energy."),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (C)."),
    ("DCGM_FI_DEV_XID_ERRORS", "gauge", "Last XID error the GPU reported."),
)
PROMETHEUS_PORT = 9090


def dcgm_metrics_csv() -> str:
    """The DCGM exporter's collectors file: one ``field, type, help`` line per metric."""
    lines = ["# DCGM field, Prometheus metric type, help (declared by gigafactory: infra/stack/metering.py)"]
    lines += [f"{field}, {kind}, {text}" for field, kind, text in DCGM_METRICS]
    return "\n".join(lines) + "\n"


def dcgm_metrics_config() -> dict[str, Any]:
    """The ConfigMap the GPU Operator mounts into the DCGM exporter (it must live in the operator's namespace)."""
    return manifest("v1", "ConfigMap", DCGM_METRICS_CONFIG, CHARTS["gpu-operator"].namespace,
                    data={DCGM_METRICS_KEY: dcgm_metrics_csv()})


def dcgm_exporter_values(monitoring: bool) -> dict[str, Any]:
    """The GPU Operator's ``dcgmExporter``: pod attribution on, our metrics list, scraped where Prometheus runs.

    The operator sets or appends ``env`` on its own exporter container, so naming only the pod mapping keeps the
    rest. ``honorLabels`` stays the chart's (false): the exporter's ``namespace``/``pod`` labels, the GPU's tenant
    pod, are kept as ``exported_namespace``/``exported_pod`` beside the target's own, which is what the usage
    report's queries read (infra/usage/prometheus.py); a GPU no pod holds has no ``exported_namespace``: idle.
    """
    return {
        "enabled": True,
        "env": [{"name": "DCGM_EXPORTER_KUBERNETES", "value": "true"}],
        "config": {"name": DCGM_METRICS_CONFIG},
        "serviceMonitor": {"enabled": monitoring, "honorLabels": False},
    }


GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"      # GPU Feature Discovery's node label


def kube_state_metrics_values() -> dict[str, Any]:
    """kube-state-metrics (a sub-chart of kube-prometheus-stack): the labels that attribute GPU requests.

    ``kube_pod_container_resource_requests{resource="nvidia_com_gpu"}`` gives each pod's GPUs; the namespace's
    tenant label (``kube_namespace_labels``) gives its tenant, the Kueue queue label of the pod (Kueue's pod
    integration) or of its Job (``kube_job_labels``, joined through ``kube_pod_owner``) its queue; the node's GPU
    product label (GPU Feature Discovery's, ``kube_node_labels``) the GPU model the usage report prices.
    """
    return {"metricLabelsAllowlist": [f"namespaces=[{TENANT_LABEL}]", f"pods=[{QUEUE_LABEL}]", f"jobs=[{QUEUE_LABEL}]",
                                      f"nodes=[{GPU_PRODUCT_LABEL}]"]}


def kueue_values(monitoring: bool) -> dict[str, Any]:
    """Kueue's Prometheus metrics: the chart's ServiceMonitor (it needs the monitoring add-on's CRDs)."""
    if not monitoring:
        return {"enablePrometheus": False}
    return {"enablePrometheus": True, "metrics": {"prometheusNamespace": CHARTS["monitoring"].namespace}}


def prometheus_service() -> tuple[str, str, int]:
    """(service, namespace, port) of the monitoring add-on's Prometheus.

    kube-prometheus-stack names its objects after the release when the release name holds the chart's name, as ours
    does, and its Prometheus service ``<release>-prometheus``.
    """
    chart = CHARTS["monitoring"]
    return f"{chart.release}-prometheus", chart.namespace, PROMETHEUS_PORT


def opencost_cost_model(cluster: ClusterPlan, pricing: ClusterPricing) -> dict[str, str]:
    """OpenCost's custom pricing (its ``default.json``): hourly prices in the billing currency, as strings.

    CPU per Kubernetes CPU-hour (one hardware thread, as the tariff), RAM per GiB-hour, GPU per GPU-hour, storage per
    GiB-hour of a volume (``storage_gib_hour``: TB-month / 931.32 GiB per TB / 730 h); ten significant digits.
    Spot prices equal the others (nothing here is spot); network egress is not a tariff, so it is free.
    OpenCost prices list prices: tenant classes' price factors and energy are applied by ``gigafactory usage``.
    GPU nodes are those GPU feature discovery labels ``nvidia.com/gpu.present=true``.
    """
    cpu, ram, gpu = price_text(pricing.cpu_hour), price_text(pricing.ram_gib_hour), price_text(pricing.gpu_hour)
    return {
        "description": f"gigafactory: billing.tariffs of cluster {cluster.name}",
        "currencyCode": pricing.currency,
        "CPU": cpu, "spotCPU": cpu,
        "RAM": ram, "spotRAM": ram,
        "GPU": gpu, "spotGPU": gpu,
        "storage": price_text(pricing.storage_gib_hour),
        "zoneNetworkEgress": "0", "regionNetworkEgress": "0", "internetNetworkEgress": "0",
        "gpuLabel": "nvidia.com/gpu.present", "gpuLabelValue": "true",
    }


def opencost_values(cluster: ClusterPlan) -> dict[str, Any]:
    """OpenCost's values: custom pricing from the tariffs, the cluster's Prometheus, scraped by it (a ServiceMonitor).

    The site checks make sure a cluster with opencost has monitoring and the site a billing section.
    """
    if cluster.pricing is None:
        raise ValueError(f"cluster {cluster.name!r} runs opencost but the plan has no prices: the site has no billing")
    service, namespace, port = prometheus_service()
    return {"opencost": {
        "exporter": {"defaultClusterId": cluster.name},
        "customPricing": {"enabled": True, "provider": "custom", "createConfigmap": True,
                          "costModel": opencost_cost_model(cluster, cluster.pricing)},
        "prometheus": {"external": {"enabled": False},
                       "internal": {"enabled": True, "serviceName": service, "namespaceName": namespace, "port": port}},
        "metrics": {"serviceMonitor": {"enabled": True}},
    }}
