"""Kubernetes usage from a cluster's Prometheus: kube-state-metrics and NVIDIA's DCGM exporter, hour by hour.

Range queries over the HTTP API (``/api/v1/query_range``), one point per hour of the period, so that the report can
match renewables hour by hour as it does for Slurm's jobs (the queries are documented in docs/metering.md):

- gauges (the GPUs, CPUs and memory that running pods request, per namespace and node) are integrated over time with
  a subquery at a fixed step, each point standing for its step: ``sum_over_time(X[1h:60s]) * 60 / 3600``. Subquery
  points lie on multiples of the step; the hour's query is evaluated one second before the hour ends, so its points
  are the hour's own, the first at its start, whether the range is closed (Prometheus 2) or left-open (3);
- the DCGM exporter's energy counter (mJ since the driver loaded, one series per GPU and pod holding it) with
  ``increase`` over each hour, evaluated at the hour's end: it counts counter resets and never reads a counter's
  absolute value.
"""

from __future__ import annotations

import http.client
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ..site.model import Site
from ..site.types import Url
from .periods import Period
from .sacct import UsageInvalid

STEP_S = 60                         # the gauges' integration step
HOUR_S = 3600
TIMEOUT_S = 120.0                   # per query
MAX_ANSWER_BYTES = 256 << 20
GIB = float(1 << 30)
MJ_PER_KWH = 3.6e9

# A pod counts while it is Running; its requests are deduplicated across scrapes of kube-state-metrics.
RUNNING = 'max by (namespace, pod) (kube_pod_status_phase{phase="Running"} == 1)'


def _requests(resource: str) -> str:
    return (f'sum by (namespace, node) (max by (namespace, pod, container, node) '
            f'(kube_pod_container_resource_requests{{resource="{resource}"}}) * on (namespace, pod) group_left () {RUNNING})')


def _integrated(expr: str, scale: str = "") -> str:
    return f"sum_over_time(({expr})[{HOUR_S}s:{STEP_S}s]) * {STEP_S} / {HOUR_S}{scale}"


# The DCGM exporter labels a GPU's series with the pod holding it (namespace, pod, container); scraped through the
# GPU Operator's ServiceMonitor (honorLabels: false, its default) the target's own namespace label wins and the pod's
# is kept as exported_namespace. A GPU no pod holds has none.
DCGM_NAMESPACE = "exported_namespace"
GPU_PRODUCT = "label_nvidia_com_gpu_product"      # kube_node_labels, with nvidia.com/gpu.product allowlisted

# name -> (PromQL, evaluated at the hour's end minus this many seconds)
QUERIES: dict[str, tuple[str, int]] = {
    "gpu_hours": (_integrated(_requests("nvidia_com_gpu")), 1),
    "cpu_hours": (_integrated(_requests("cpu")), 1),
    "memory_gib_hours": (_integrated(_requests("memory"), f" / {int(GIB)}"), 1),
    "gpu_energy_kwh": (f"sum by ({DCGM_NAMESPACE}) (increase(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
                       f'{{{DCGM_NAMESPACE}!=""}}[{HOUR_S}s])) / {MJ_PER_KWH:.0f}', 0),
    "gpu_products": (f"max by (node, {GPU_PRODUCT}) (max_over_time(kube_node_labels"
                     f'{{{GPU_PRODUCT}!=""}}[{HOUR_S}s]))', 1),
}
LABELS = {"gpu_hours": ("namespace", "node"), "cpu_hours": ("namespace", "node"),
          "memory_gib_hours": ("namespace", "node"), "gpu_energy_kwh": (DCGM_NAMESPACE,),
          "gpu_products": ("node", GPU_PRODUCT)}

Hourly = dict[int, float]           # hour of the period (0 = the first) -> amount


class PrometheusFailed(UsageInvalid):
    """A cluster's Prometheus could not be queried, or answered something that is not a range query's answer."""

    def __init__(self, cluster: str, url: str, message: str):
        super().__init__(f"prometheus of {cluster} ({url})", message)


@dataclass
class KubernetesUsage:
    """One cluster's usage over a period, per hour: what ``usage_report`` adds to the tenants' lines."""
    cluster: str
    url: str
    hours: int
    gpu_hours: dict[tuple[str, str], Hourly] = field(default_factory=dict)       # (namespace, node)
    cpu_hours: dict[tuple[str, str], Hourly] = field(default_factory=dict)
    memory_gib_hours: dict[tuple[str, str], Hourly] = field(default_factory=dict)
    gpu_energy_kwh: dict[str, Hourly] = field(default_factory=dict)               # namespace, measured by DCGM
    gpu_products: dict[str, dict[int, str]] = field(default_factory=dict)         # node -> hour -> GPU product


Urlopen = Callable[..., Any]


class Prometheus:
    """Range queries against one Prometheus's HTTP API (POST, no proxy: it is on the site's network)."""

    def __init__(self, cluster: str, url: str, timeout: float = TIMEOUT_S, urlopen: Urlopen | None = None):
        self.cluster, self.url, self.timeout = cluster, url, timeout
        self._open = urlopen or urllib.request.build_opener(urllib.request.ProxyHandler({})).open

    def fail(self, message: str) -> PrometheusFailed:
        return PrometheusFailed(self.cluster, self.url, message)

    def range_query(self, name: str, query: str, start: float, end: float, step: int) -> list[dict[str, Any]]:
        """The matrix ``query`` gives at ``start``, ``start + step`` ... ``end``; raises PrometheusFailed naming
        ``name`` if Prometheus cannot be reached or answers anything else."""
        body = urllib.parse.urlencode({"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                       "step": str(step)}).encode()
        request = urllib.request.Request(self.url.rstrip("/") + "/api/v1/query_range", data=body, method="POST",
                                         headers={"Content-Type": "application/x-www-form-urlencoded",
                                                  "Accept": "application/json"})
        where = f"query {name}"
        try:
            with self._open(request, timeout=self.timeout) as answer:
                raw = answer.read(MAX_ANSWER_BYTES + 1)
        except urllib.error.HTTPError as err:
            raise self.fail(f"{where}: HTTP {err.code} {err.reason}{_error_detail(err)}") from None
        except urllib.error.URLError as err:
            if isinstance(err.reason, TimeoutError):
                raise self.fail(f"{where}: no answer within {self.timeout:g} s") from None
            raise self.fail(f"{where}: unreachable: {_reason(err.reason)}") from None
        except TimeoutError:
            raise self.fail(f"{where}: no answer within {self.timeout:g} s") from None
        except (OSError, http.client.HTTPException, ValueError) as err:
            raise self.fail(f"{where}: unreachable: {_reason(err)}") from None
        if len(raw) > MAX_ANSWER_BYTES:
            raise self.fail(f"{where}: the answer exceeds {MAX_ANSWER_BYTES >> 20} MiB")
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            raise self.fail(f"{where}: the answer is not JSON: {_excerpt(raw)}") from None
        if not isinstance(data, dict) or data.get("status") != "success":
            error = data.get("error") if isinstance(data, dict) else None
            raise self.fail(f"{where}: Prometheus answered {_excerpt(error) if error else 'no success status'}")
        matrix = data.get("data")
        if not isinstance(matrix, dict) or matrix.get("resultType") != "matrix" or not isinstance(matrix.get("result"), list):
            raise self.fail(f"{where}: the answer is not a matrix (data.resultType and data.result)")
        return matrix["result"]


def _reason(reason: object) -> str:
    text = str(reason).strip() or type(reason).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _excerpt(value: object) -> str:
    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    text = " ".join(text.split())
    return repr(text if len(text) <= 200 else text[:197] + "...")


def _error_detail(err: urllib.error.HTTPError) -> str:
    """Prometheus's own error text from an error answer's JSON body, if it has one."""
    try:
        error = json.loads(err.read(65536)).get("error")
    except (OSError, ValueError, AttributeError, http.client.HTTPException):
        return ""
    return f": {_excerpt(error)}" if error else ""


def _hourly(client: Prometheus, name: str, period: Period, hours: int) -> list[tuple[tuple[str, ...], Hourly | dict[int, str]]]:
    """Per series of query ``name``, its label values (LABELS[name]) and its values by hour of ``period``."""
    query, before = QUERIES[name]
    labels = LABELS[name]
    first = period.start + HOUR_S - before
    result = client.range_query(name, query, first, period.start + hours * HOUR_S - before, HOUR_S)
    out = []
    for i, series in enumerate(result):
        where = f"query {name}, series {i + 1}"
        metric = series.get("metric") if isinstance(series, dict) else None
        values = series.get("values") if isinstance(series, dict) else None
        if not isinstance(metric, dict) or not isinstance(values, list):
            raise client.fail(f"{where}: not a series (metric and values)")
        key = tuple(metric.get(label) for label in labels)
        if not all(isinstance(k, str) and k for k in key):
            raise client.fail(f"{where}: lacks the label(s) {', '.join(labels)}: {_excerpt(json.dumps(metric))}")
        by_hour: dict[int, float] = {}
        for point in values:
            if not (isinstance(point, list) and len(point) == 2 and isinstance(point[0], (int, float))
                    and isinstance(point[1], str)):
                raise client.fail(f"{where}: {_excerpt(json.dumps(point))} is not a point [time, \"value\"]")
            hour = (point[0] - first) / HOUR_S
            try:
                value = float(point[1])
            except ValueError:
                value = math.nan
            if not (0 <= hour < hours and abs(hour - round(hour)) < 1e-6):
                raise client.fail(f"{where}: a point at {point[0]!r}, which is no hour's end of the period")
            if not math.isfinite(value) or value < 0:
                raise client.fail(f"{where}: {point[1]!r} at {point[0]!r} is not a finite, non-negative number")
            by_hour[round(hour)] = value
        out.append((key, by_hour))
    return out


def kubernetes_usage(client: Prometheus, period: Period) -> KubernetesUsage:
    """The cluster's usage over ``period`` from its Prometheus; raises PrometheusFailed naming the failing query."""
    hours = round(period.hours)
    usage = KubernetesUsage(client.cluster, client.url, hours)
    for name in ("gpu_hours", "cpu_hours", "memory_gib_hours"):
        target = getattr(usage, name)
        for key, by_hour in _hourly(client, name, period, hours):
            if key in target:
                raise client.fail(f"query {name}: two series for namespace {key[0]!r} on node {key[1]!r}")
            target[key] = by_hour
    for (namespace,), by_hour in _hourly(client, "gpu_energy_kwh", period, hours):
        if namespace in usage.gpu_energy_kwh:
            raise client.fail(f"query gpu_energy_kwh: two series for namespace {namespace!r}")
        usage.gpu_energy_kwh[namespace] = by_hour
    for (node, product), by_hour in _hourly(client, "gpu_products", period, hours):
        products = usage.gpu_products.setdefault(node, {})
        for hour in by_hour:
            if products.setdefault(hour, product) != product:
                raise client.fail(f"query gpu_products: node {node!r} has GPUs {products[hour]!r} and {product!r} "
                                  f"in hour {hour} of the period")
    return usage


def prometheus_urls(site: Site, overrides: list[str]) -> dict[str, str]:
    """Per Kubernetes cluster to meter, its Prometheus: the site's ``kubernetes[].prometheus``, overridden by
    ``--prometheus [CLUSTER=]URL`` (CLUSTER may be left out when the site has one cluster)."""
    names = [c.name for c in site.kubernetes]
    urls = {c.name: c.prometheus for c in site.kubernetes if c.prometheus}
    for value in overrides:
        cluster, sep, url = value.partition("=")
        if not sep or value.startswith(("http://", "https://")):
            cluster, url = "", value
        if not cluster:
            if len(names) != 1:
                raise UsageInvalid("--prometheus", f"the site has {len(names)} Kubernetes clusters"
                                   + (f" ({', '.join(names)}): write --prometheus CLUSTER=URL" if names else ""))
            cluster = names[0]
        if cluster not in names:
            raise UsageInvalid("--prometheus", f"unknown Kubernetes cluster {cluster!r}; clusters of "
                                               f"{site.site.name}: {', '.join(names) or '(none declared)'}")
        try:
            urls[cluster] = TypeAdapter(Url).validate_python(url)
        except ValidationError as err:
            reason = err.errors()[0]["msg"].removeprefix("Value error, ")
            raise UsageInvalid("--prometheus", reason.replace(repr(url), "the URL", 1)) from None   # never echo credentials
    return urls
