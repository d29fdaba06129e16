"""gigafactory usage reads Kubernetes namespaces' usage from the cluster's Prometheus and adds it to the tenants' lines.

The proof runs a real Prometheus (Debian 12's 2.42, from a cached chroot) in a private network namespace, on a TSDB
that ``promtool tsdb create-blocks-from openmetrics`` backfilled with synthetic kube-state-metrics and DCGM exporter
series of a month; the figures the report prints are computed here from those series. Unit tests feed the client
malformed answers and point it at a port nobody answers on.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, bin_path, run
from metering_data import with_billing

from infra import cli
from infra.usage.prometheus import prometheus_urls
from infra.image.chroot import DEV_LINKS, DEV_NODES
from infra.site.load import validate_data
from infra.usage import UsageInvalid, parse_period, read_sacct, usage_report
from infra.usage.prometheus import QUERIES, KubernetesUsage, Prometheus, PrometheusFailed, kubernetes_usage
from infra.usage.report import site_gpu_model

PERIOD = "2025-02"
STEP = 60                           # the synthetic scrapes' interval, the queries' integration step
GIB = 1 << 30
SACCT = ["JobIDRaw|Account|Partition|Start|End|AllocTRES|ConsumedEnergyRaw",
         "1|acme-ai|batch|2025-02-05T10:00:00|2025-02-05T12:00:00|cpu=224,gres/gpu:h200=8,gres/gpu=8,mem=1945G,node=1|0"]


# --- synthetic series ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Container:
    name: str
    gpus: int
    cpu: float
    memory: int                     # bytes


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    node: str
    containers: tuple[Container, ...]
    start: int                      # first scrape that sees it
    end: int                        # first scrape that no longer does
    running: int                    # first scrape that sees it Running (Pending before)
    scrapes: int = 1                # kube-state-metrics instances scraping it (duplicates)


def pods_of(p) -> list[Pod]:
    """A month of pods: straddling the period's start and end, a Pending start, two containers, a duplicate scrape,
    a tenant with DCGM energy, a system namespace no tenant declares."""
    h, day = 3600, 86400
    s, e = int(p.start), int(p.end)
    return [
        Pod("acme-ai", "train-a", "gpu0097", (Container("main", 8, 96, 512 * GIB),), s - 2 * h, s + 5 * h, s - 2 * h, 2),
        Pod("acme-ai", "infer-b", "gpu0098", (Container("main", 2, 6, 48 * GIB), Container("proxy", 0, 1.5, 12 * GIB + 12345)),
            s + 2 * day + 10 * h + 7 * 60, s + 2 * day + 13 * h + 41 * 60, s + 2 * day + 10 * h + 27 * 60),
        Pod("acme-ai", "tail-d", "gpu0100", (Container("main", 1, 4, 16 * GIB),), e - h, e + h, e - h),
        Pod("gov-lv", "llm-c", "gpu0099", (Container("main", 4, 32, 256 * GIB),), s + 9 * day, s + 10 * day + 6 * h, s + 9 * day),
        Pod("kube-system", "coredns", "k8s-cp01", (Container("coredns", 0, 0.1, 70 << 20),), s, s + 2 * day, s),
    ]


def dcgm_series(pods: list[Pod]) -> list[tuple[dict, list[tuple[int, float]]]]:
    """The DCGM exporter's energy counter (mJ since the driver loaded) of each GPU of gov-lv's pod, one scrape a
    minute from its start to its end inclusive, power varying minute by minute, GPU 1's counter reset once (the
    driver reloaded); and an unallocated GPU's series, which carries no pod and counts for no one."""
    pod = next(p for p in pods if p.namespace == "gov-lv")
    out = []
    for gpu in range(pod.containers[0].gpus):
        value, points = 5e9 + gpu * 1e6, []
        for i, t in enumerate(range(pod.start, pod.end + 1, STEP)):
            if i:
                value += (300 + (i * 37 + gpu * 101) % 400) * STEP * 1000.0
            if gpu == 1 and i == 700:
                value = 250 * STEP * 1000.0
            points.append((t, value))
        out.append(({"gpu": str(gpu), "UUID": f"GPU-{gpu:04d}", "Hostname": pod.node, "modelName": "NVIDIA H200",
                     "namespace": "gpu-operator", "pod": "nvidia-dcgm-exporter-x2k9p", "exported_namespace": pod.namespace,
                     "exported_pod": pod.name, "exported_container": "main"}, points))
    out.append(({"gpu": "0", "UUID": "GPU-9999", "Hostname": "gpu0101", "modelName": "NVIDIA H200",
                 "namespace": "gpu-operator", "pod": "nvidia-dcgm-exporter-q8w2z"},
                [(t, 7e9 + 600_000.0 * (t - pod.start)) for t in range(pod.start, pod.end + 1, STEP)]))
    return out


def openmetrics(pods: list[Pod], p) -> str:
    """The series as OpenMetrics text (each family contiguous, each series in time order) for promtool."""
    families: dict[str, list[tuple[dict, list[tuple[int, float]]]]] = {
        "kube_pod_container_resource_requests": [], "kube_pod_status_phase": [], "kube_node_labels": [],
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": dcgm_series(pods)}
    for pod in pods:
        times = range(pod.start, pod.end, STEP)
        for instance in range(pod.scrapes):
            scrape = {"job": "kube-state-metrics", "instance": f"10.112.0.{10 + instance}:8080"}
            ident = {"namespace": pod.namespace, "pod": pod.name, "uid": f"uid-{pod.name}", **scrape}
            for c in pod.containers:
                for resource, unit, amount in (("nvidia_com_gpu", "integer", c.gpus), ("cpu", "core", c.cpu),
                                               ("memory", "byte", c.memory)):
                    if amount:
                        families["kube_pod_container_resource_requests"].append((
                            {**ident, "container": c.name, "node": pod.node, "resource": resource, "unit": unit},
                            [(t, amount) for t in times]))
            for phase in ("Pending", "Running"):
                families["kube_pod_status_phase"].append((
                    {**ident, "phase": phase}, [(t, int((t >= pod.running) == (phase == "Running"))) for t in times]))
    # gpu0097 carries GPU Feature Discovery's product label (allowlisted in kube-state-metrics) around its pod;
    # gpu0098 has the series without it; the other nodes have none: their model is the site's
    labelled = range(int(p.start) - 3 * 3600, int(p.start) + 6 * 3600, 300)
    families["kube_node_labels"] += [
        ({"node": "gpu0097", "label_nvidia_com_gpu_product": "NVIDIA-H200", "job": "kube-state-metrics"}, [(t, 1) for t in labelled]),
        ({"node": "gpu0098", "job": "kube-state-metrics"}, [(t, 1) for t in labelled])]
    lines = []
    for name, series in families.items():
        lines.append(f"# TYPE {name} {'unknown' if name.startswith('DCGM') else 'gauge'}")
        for labels, points in series:
            text = ",".join(f'{k}="{v}"' for k, v in labels.items())
            lines += [f"{name}{{{text}}} {v} {t}" for t, v in points]
    return "\n".join([*lines, "# EOF"]) + "\n"


def expected(pods: list[Pod], p) -> dict[str, dict[str, float]]:
    """Per namespace what the series imply over the period: each scrape of a Running pod stands for its minute;
    a counter's increase is the sum of its rises, a reset counting the value it restarted to."""
    out: dict[str, dict[str, float]] = {}
    for pod in pods:
        row = out.setdefault(pod.namespace, {"gpu_hours": 0.0, "cpu_hours": 0.0, "memory_gib_hours": 0.0, "gpu_kwh": 0.0})
        minutes = sum(1 for t in range(pod.start, pod.end, STEP) if p.start <= t < p.end and t >= pod.running)
        for c in pod.containers:
            row["gpu_hours"] += c.gpus * minutes * STEP / 3600
            row["cpu_hours"] += c.cpu * minutes * STEP / 3600
            row["memory_gib_hours"] += c.memory / GIB * minutes * STEP / 3600
    for labels, points in dcgm_series(pods):
        if "exported_namespace" in labels:
            rises = sum(b - a if b >= a else b for (_, a), (_, b) in itertools.pairwise(points))
            out[labels["exported_namespace"]]["gpu_kwh"] += rises / 3.6e9
    return out


# --- the real Prometheus ------------------------------------------------------------------------------------------

NAMESPACE_SCRIPT = textwrap.dedent("""\
    set -eu
    R={root}
    W={work}
    ip link set lo up
    {overlay}
    mount -t proc proc "$R/proc"
    mount -t tmpfs -o mode=0755,nosuid,noexec,size=64k gigafactory-dev "$R/dev"
    {dev}
    mkdir -p "$R/srv/usage"
    mount --bind "$W/data" "$R/srv/usage"
    chroot "$R" /usr/bin/promtool tsdb create-blocks-from openmetrics /srv/usage/series.om /srv/usage/tsdb > "$W/promtool.log" 2>&1
    # no staleness markers in backfilled blocks: a lookback shorter than the scrape interval stands in for the
    # markers a live scrape writes when a pod goes (with the default 5 minutes, a pod would outlive itself)
    chroot "$R" /usr/bin/prometheus --config.file=/dev/null --storage.tsdb.path=/srv/usage/tsdb \\
        --storage.tsdb.retention.time=100y --web.listen-address=127.0.0.1:9090 --query.lookback-delta=30s \\
        > "$W/prometheus.log" 2>&1 &
    end=$((SECONDS + 120))
    until {python} -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:9090/-/ready", timeout=5)' 2>/dev/null; do
      [ $SECONDS -lt $end ] || {{ echo "prometheus did not become ready" >&2; exit 1; }}; sleep 0.5
    done
    {commands}
    """)


def prometheus_chroot() -> Path:
    from chroots import cached_chroot
    return cached_chroot("prometheus", "bookworm", ["prometheus"])


def run_with_prometheus(work: Path, series: str, commands: list[str]) -> subprocess.CompletedProcess:
    """Backfill ``series`` and serve it with the real Prometheus on 127.0.0.1:9090 in fresh network, mount and PID
    namespaces (on an overlay of the cached chroot, which stays unchanged), then run ``commands`` there."""
    from chroots import overlay_setup
    (work / "data").mkdir(parents=True)
    (work / "data" / "series.om").write_text(series)
    layers = work / "layers"
    script = NAMESPACE_SCRIPT.format(
        root=layers / "merged", work=work, overlay=overlay_setup(prometheus_chroot(), layers), python=sys.executable,
        dev="\n".join([*(f'mknod -m 0666 "$R/dev/{n}" c {a} {b}' for n, (a, b) in DEV_NODES.items()),
                       *(f'ln -s {target} "$R/dev/{n}"' for n, target in DEV_LINKS.items())]),
        commands="\n".join(f"timeout 300 {c}" for c in commands))
    return subprocess.run(["unshare", "--net", "--mount", "--pid", "--fork", "--kill-child", "bash", "-c", script],
                          capture_output=True, text=True, timeout=900)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("debootstrap") or not shutil.which("unshare"),
                    reason="needs root, debootstrap and unshare")
def test_usage_adds_each_namespace_from_a_real_prometheus_to_its_tenant(riga, tmp_path):
    data = with_billing(riga)
    slurm_only = validate_data(data)
    data["kubernetes"][0]["prometheus"] = "http://127.0.0.1:9090"
    (tmp_path / "site.yml").write_text(yaml.safe_dump(data))
    (tmp_path / "sacct.txt").write_text("\n".join(SACCT) + "\n")
    period = parse_period(PERIOD, "Europe/Riga")
    pods = pods_of(period)
    usage = f"{bin_path('gigafactory')} usage {tmp_path / 'site.yml'} --period {PERIOD} --sacct {tmp_path / 'sacct.txt'}"
    (tmp_path / "products.py").write_text(textwrap.dedent(f"""\
        import json
        from infra.usage import parse_period
        from infra.usage.prometheus import Prometheus, kubernetes_usage
        u = kubernetes_usage(Prometheus("riga-infer", "http://127.0.0.1:9090"), parse_period("{PERIOD}", "Europe/Riga"))
        print(json.dumps({{node: sorted(set(h.values())) + sorted(h) for node, h in u.gpu_products.items()}}))
        """))
    result = run_with_prometheus(tmp_path / "ns", openmetrics(pods, period), [
        f"sh -c '{usage} --format json > {tmp_path}/report.json 2> {tmp_path}/report.err; echo $? > {tmp_path}/report.rc'",
        f"sh -c '{usage} --prometheus riga-infer=http://127.0.0.1:9090/elsewhere > {tmp_path}/bad.out 2> {tmp_path}/bad.err; "
        f"echo $? > {tmp_path}/bad.rc'",
        f"sh -c '{usage} --format table > {tmp_path}/report.txt'",
        f"env PYTHONPATH={ROOT} {sys.executable} {tmp_path}/products.py > {tmp_path}/products.json"])
    logs = "".join((tmp_path / "ns" / name).read_text()[-3000:] for name in ("promtool.log", "prometheus.log")
                   if (tmp_path / "ns" / name).exists())
    assert result.returncode == 0, result.stderr[-3000:] + logs
    assert (tmp_path / "report.rc").read_text().strip() == "0", (tmp_path / "report.err").read_text() + logs

    report = json.loads((tmp_path / "report.json").read_text())
    rows = {r["tenant"]: r for r in report["tenants"]}
    slurm = {r.name: r for r in usage_report(slurm_only, period, read_sacct(SACCT, "Europe/Riga")).tenants}
    want = expected(pods, period)
    assert report["kubernetes_from_prometheus"] == ["riga-infer"]
    assert set(rows) == {"acme-ai", "univ-latvia", "gov-lv", "namespace:riga-infer/kube-system"}

    # acme-ai: its namespace's requests add to its Slurm job's lines; energy estimated from the H200 nodes' rating
    acme, k8s = rows["acme-ai"], want["acme-ai"]
    assert acme["jobs"] == 1 and slurm["acme-ai"].gpu_hours == {"h200": 16.0}
    assert acme["gpu_hours"] == {"h200": pytest.approx(16.0 + k8s["gpu_hours"], abs=1e-5)}
    assert acme["cpu_hours"] == pytest.approx(slurm["acme-ai"].cpu_hours + k8s["cpu_hours"], abs=1e-5)
    assert acme["memory_gb_hours"] == pytest.approx(slurm["acme-ai"].memory_gb_hours + k8s["memory_gib_hours"], abs=1e-5)
    assert acme["it_energy_kwh"]["estimated"] == pytest.approx(
        slurm["acme-ai"].energy_kwh["estimated"] + 10.2 * k8s["gpu_hours"] / 8, abs=1e-5)
    assert acme["it_energy_kwh"]["measured"] == 0
    assert acme["costs"]["gpu"] == pytest.approx(2.5 * (16.0 + k8s["gpu_hours"]), abs=0.01)
    # gov-lv: Kubernetes only; its GPUs' energy measured by DCGM (reset counted, the unallocated GPU not)
    gov = rows["gov-lv"]
    assert gov["gpu_hours"] == {"h200": pytest.approx(want["gov-lv"]["gpu_hours"], abs=1e-5)}
    assert gov["cpu_hours"] == pytest.approx(want["gov-lv"]["cpu_hours"], abs=1e-5)
    assert gov["it_energy_kwh"] == {"measured": pytest.approx(want["gov-lv"]["gpu_kwh"], abs=1e-5),
                                    "apportioned": 0, "estimated": 0}
    # a namespace no tenant declares gets its own line; on a CPU node its energy is its CPU share of the rating
    system = rows["namespace:riga-infer/kube-system"]
    assert system["declared_tenant"] is False and system["gpu_hours"] == {}
    assert system["cpu_hours"] == pytest.approx(want["kube-system"]["cpu_hours"], abs=1e-5)
    assert system["it_energy_kwh"]["estimated"] == pytest.approx(0.8 * want["kube-system"]["cpu_hours"] / 128, abs=1e-5)
    # tenants and idle add up to the capacity of the Slurm nodes and the cluster's nodes
    assert report["total"]["gpu_hours"] == {"h200": pytest.approx((96 + 32) * 8 * period.hours, abs=1e-3)}
    assert report["total"]["cpu_hours"] == pytest.approx((128 * 224 + 3 * 128) * period.hours, abs=1e-3)

    # the node label was read: gpu0097's product in the hours it was labelled, gpu0098's absent label ignored
    assert json.loads((tmp_path / "products.json").read_text()) == {"gpu0097": ["NVIDIA-H200", 0, 1, 2, 3, 4, 5]}
    assert "Kubernetes from Prometheus: riga-infer" in (tmp_path / "report.txt").read_text()
    # a Prometheus that answers something else than its API: exit 2, what failed named, no traceback
    bad = (tmp_path / "bad.err").read_text()
    assert (tmp_path / "bad.rc").read_text().strip() == "2" and (tmp_path / "bad.out").read_text() == ""
    assert bad.startswith("gigafactory usage: prometheus of riga-infer (http://127.0.0.1:9090/elsewhere): query gpu_hours: "
                          "HTTP 404"), bad
    assert "Traceback" not in bad


# --- the client on its own ----------------------------------------------------------------------------------------


class Answer:
    def __init__(self, body: bytes):
        self.body = body

    def read(self, limit: int = -1) -> bytes:
        return self.body if limit < 0 else self.body[:limit]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def answering(body: bytes | str, calls: list | None = None):
    def urlopen(request, timeout):
        if calls is not None:
            calls.append((request, timeout))
        return Answer(body.encode() if isinstance(body, str) else body)
    return urlopen


def matrix(*series) -> str:
    return json.dumps({"status": "success", "data": {"resultType": "matrix", "result": list(series)}})


NOVEMBER = parse_period("2026-11", "Europe/Riga")
FIRST = NOVEMBER.start + 3600 - 1          # the gauges' first point: one second before the first hour's end


def test_the_client_posts_range_queries_one_point_an_hour():
    calls: list = []
    client = Prometheus("riga-infer", "http://prom.riga-1.internal:9090/prom/", urlopen=answering(matrix(), calls))
    usage = kubernetes_usage(client, NOVEMBER)
    assert usage.hours == 720 and usage.gpu_hours == {} and usage.url == "http://prom.riga-1.internal:9090/prom/"
    sent = [dict(part.split("=", 1) for part in request.data.decode().split("&")) for request, _ in calls]
    assert [request.full_url for request, _ in calls] == ["http://prom.riga-1.internal:9090/prom/api/v1/query_range"] * 5
    assert all(request.get_method() == "POST" and timeout == 120 for request, timeout in calls)
    gauges, counters = [s for s in sent if s["start"] != f"{NOVEMBER.start + 3600:.3f}"], [s for s in sent if s["start"] == f"{NOVEMBER.start + 3600:.3f}"]
    assert len(counters) == 1 and counters[0]["end"] == f"{NOVEMBER.end:.3f}"
    assert {(s["start"], s["end"], s["step"]) for s in gauges} == {(f"{FIRST:.3f}", f"{NOVEMBER.end - 1:.3f}", "3600")}


def test_the_hour_of_each_point_is_the_hour_it_ends():
    series = {"metric": {"namespace": "acme-ai", "node": "gpu0097"}, "values": [[FIRST, "8"], [FIRST + 3600 * 719, "2.5"]]}
    def urlopen(request, timeout):
        query = urllib.parse.parse_qs(request.data.decode())["query"][0]
        return Answer((matrix(series) if query == QUERIES["gpu_hours"][0] else matrix()).encode())
    client = Prometheus("riga-infer", "http://127.0.0.1:9", urlopen=urlopen)
    assert kubernetes_usage(client, NOVEMBER).gpu_hours == {("acme-ai", "gpu0097"): {0: 8.0, 719: 2.5}}


@pytest.mark.parametrize("body, fragment", [
    ("<html>Bad gateway</html>", "query gpu_hours: the answer is not JSON: '<html>Bad gateway</html>'"),
    (b"\xff\xfe", "query gpu_hours: the answer is not JSON"),
    ('{"status": "error", "errorType": "bad_data", "error": "parse error"}', "query gpu_hours: Prometheus answered 'parse error'"),
    ("[1, 2]", "query gpu_hours: Prometheus answered no success status"),
    ('{"status": "success", "data": {"resultType": "vector", "result": []}}', "query gpu_hours: the answer is not a matrix"),
    (matrix(["x"]), "query gpu_hours, series 1: not a series"),
    (matrix({"metric": {"namespace": "acme-ai"}, "values": []}), "series 1: lacks the label(s) namespace, node"),
    (matrix({"metric": {"namespace": "a", "node": "n"}, "values": [[FIRST, 8]]}), "is not a point [time, \"value\"]"),
    (matrix({"metric": {"namespace": "a", "node": "n"}, "values": [[FIRST + 1800, "8"]]}), "which is no hour's end of the period"),
    (matrix({"metric": {"namespace": "a", "node": "n"}, "values": [[NOVEMBER.end - 1 + 3600, "8"]]}), "no hour's end of the period"),
    (matrix({"metric": {"namespace": "a", "node": "n"}, "values": [[FIRST, "NaN"]]}), "'NaN' at"),
    (matrix({"metric": {"namespace": "a", "node": "n"}, "values": [[FIRST, "-1"]]}), "is not a finite, non-negative number"),
    (matrix({"metric": {"namespace": "a", "node": "n"}, "values": [[FIRST, "many"]]}), "'many' at"),
    (matrix({"metric": {"namespace": "a", "node": "n"}, "values": []}, {"metric": {"namespace": "a", "node": "n"}, "values": []}),
     "two series for namespace 'a' on node 'n'"),
])
def test_a_malformed_answer_is_an_error_naming_the_query(body, fragment):
    client = Prometheus("riga-infer", "http://127.0.0.1:9", urlopen=answering(body))
    with pytest.raises(PrometheusFailed) as err:
        kubernetes_usage(client, NOVEMBER)
    assert err.value.field == "prometheus of riga-infer (http://127.0.0.1:9)" and fragment in str(err.value), str(err.value)


def test_a_node_with_two_gpu_products_in_one_hour_is_refused():
    def urlopen(request, timeout):
        if b"kube_node_labels" not in request.data:
            return Answer(matrix().encode())
        return Answer(matrix(*({"metric": {"node": "gpu0097", "label_nvidia_com_gpu_product": p}, "values": [[FIRST, "1"]]}
                               for p in ("NVIDIA-H200", "NVIDIA-H100-80GB-HBM3"))).encode())
    with pytest.raises(PrometheusFailed, match="node 'gpu0097' has GPUs 'NVIDIA-H200' and 'NVIDIA-H100-80GB-HBM3' in hour 0"):
        kubernetes_usage(Prometheus("riga-infer", "http://127.0.0.1:9", urlopen=urlopen), NOVEMBER)


def test_an_unreachable_or_silent_prometheus_is_an_error():
    with socket.socket() as reserved:       # bound, never listening: connecting is refused
        reserved.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{reserved.getsockname()[1]}"
        with pytest.raises(PrometheusFailed, match=r"query gpu_hours: unreachable: .*[Cc]onnection refused"):
            kubernetes_usage(Prometheus("riga-infer", url), NOVEMBER)
    with socket.socket() as silent:         # listening, never answering
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(PrometheusFailed, match=r"query gpu_hours: no answer within 0.5 s"):
            kubernetes_usage(Prometheus("riga-infer", url, timeout=0.5), NOVEMBER)


def test_the_command_line_exits_2_naming_the_unreachable_prometheus(riga, tmp_path, capsys):
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{reserved.getsockname()[1]}"
        riga["kubernetes"][0]["prometheus"] = url
        (tmp_path / "site.yml").write_text(yaml.safe_dump(riga))
        (tmp_path / "sacct.txt").write_text(SACCT[0] + "\n")
        rc = cli.main(["usage", str(tmp_path / "site.yml"), "--period", "2026-11", "--sacct", str(tmp_path / "sacct.txt")])
    out = capsys.readouterr()
    assert rc == 2 and out.out == ""
    assert out.err.startswith(f"gigafactory usage: prometheus of riga-infer ({url}): query gpu_hours: unreachable: "), out.err


@pytest.mark.parametrize("args, fragment", [
    (["--prometheus", "ftp://prom:9090"], "--prometheus: the URL is not allowed (the scheme must be http or https)"),
    (["--prometheus", "riga-x=http://prom:9090"], "--prometheus: unknown Kubernetes cluster 'riga-x'; clusters of riga-1: riga-infer"),
    (["--prometheus", "riga-infer=http://u:p@prom:9090"], "--prometheus: the URL is not allowed (credentials do not belong"),
])
def test_a_bad_prometheus_option_exits_2_reaching_nothing(riga, tmp_path, args, fragment):
    (tmp_path / "site.yml").write_text(yaml.safe_dump(riga))
    (tmp_path / "sacct.txt").write_text(SACCT[0] + "\n")
    out = run([bin_path("gigafactory"), "usage", str(tmp_path / "site.yml"), "--period", "2026-11", "--sacct",
               str(tmp_path / "sacct.txt"), *args])
    assert out.returncode == 2 and out.stderr.startswith(f"gigafactory usage: {fragment}"), out.stderr
    assert "u:p@" not in out.stderr


def test_without_prometheus_riga_reports_slurm_only(riga, tmp_path):
    assert prometheus_urls(validate_data(riga), []) == {}
    riga["kubernetes"][0]["prometheus"] = "http://prom.riga-1.internal:9090"
    site = validate_data(riga)
    assert prometheus_urls(site, []) == {"riga-infer": "http://prom.riga-1.internal:9090"}
    assert prometheus_urls(site, ["http://10.40.0.9:9090"]) == {"riga-infer": "http://10.40.0.9:9090"}


# --- merging into the report --------------------------------------------------------------------------------------


def _usage(**kw) -> KubernetesUsage:
    return KubernetesUsage("riga-infer", "http://prom", round(NOVEMBER.hours), **kw)


def test_gpu_hours_take_the_model_the_node_label_names_else_the_site_s(riga):
    riga["node_types"]["hgx-h100"] = {**riga["node_types"]["hgx-h200"], "gpu": {"model": "H100", "count": 8}}
    riga["pools"][1]["hosts"] = "gpu[0097-0126]"
    riga["pools"].append({"name": "infer2", "type": "hgx-h100", "hosts": "gpu[0127-0128]", "racks": "a32"})
    riga["kubernetes"][0]["workers"].append("infer2")
    site = validate_data(with_billing(riga))
    usage = _usage(gpu_hours={("gov-lv", "gpu0097"): {0: 4.0, 1: 4.0}, ("gov-lv", "gpu0128"): {0: 2.0}},
                   gpu_products={"gpu0097": {1: "NVIDIA-H100-80GB-HBM3"}})
    rows = {r.name: r for r in usage_report(site, NOVEMBER, [], kubernetes=[usage]).tenants}
    # hour 0 of gpu0097 unlabelled: its node type's H200; hour 1 labelled H100; gpu0128 is an H100 node
    assert rows["gov-lv"].gpu_hours == {"h200": 4.0, "h100": 6.0}
    assert site_gpu_model("NVIDIA-H200", ["h200", "gh200"]) == "h200"
    assert site_gpu_model("NVIDIA-GH200-480GB", ["h200", "gh200"]) == "gh200"
    assert site_gpu_model("Tesla-T4", ["h200"]) is None
    usage.gpu_products["gpu0097"][1] = "NVIDIA-A100-SXM4-80GB"
    with pytest.raises(UsageInvalid, match="node 'gpu0097' reports GPUs 'NVIDIA-A100-SXM4-80GB'"):
        usage_report(site, NOVEMBER, [], kubernetes=[usage])


def test_a_node_that_is_no_host_of_the_cluster_takes_its_workers_node_type(riga):
    site = validate_data(with_billing(riga))
    usage = _usage(gpu_hours={("acme-ai", "gpu-spare-1"): {5: 8.0}})
    rows = {r.name: r for r in usage_report(site, NOVEMBER, [], kubernetes=[usage]).tenants}
    assert rows["acme-ai"].gpu_hours == {"h200": 8.0} and rows["acme-ai"].energy_kwh["estimated"] == pytest.approx(10.2)


def test_kubernetes_energy_is_matched_with_renewables_hour_by_hour(riga):
    site = validate_data(with_billing(riga))
    share = [0.0] * 720
    share[3] = 1.0
    usage = _usage(gpu_hours={("acme-ai", "gpu0097"): {3: 8.0, 4: 8.0}}, gpu_energy_kwh={"gov-lv": {3: 2.0, 4: 6.0}})
    rows = {r.name: r for r in usage_report(site, NOVEMBER, [], supply_share=share, kubernetes=[usage]).tenants}
    assert rows["acme-ai"].renewable_kwh == pytest.approx(10.2 * 1.15)             # hour 3's half of 20.4 kWh
    assert rows["gov-lv"].renewable_kwh == pytest.approx(2.0 * 1.15)
    assert rows["gov-lv"].energy_kwh["measured"] == 8.0


def test_every_query_is_documented():
    doc = (ROOT / "docs" / "metering.md").read_text()
    missing = [name for name, (query, _) in QUERIES.items() if query not in doc]
    assert missing == []


def test_a_site_without_slurm_is_reported_from_prometheus_alone(riga, tmp_path, monkeypatch, capsys):
    riga.pop("slurm")
    for tenant in riga["tenants"]:
        tenant.pop("slurm", None)
    riga["kubernetes"][0]["prometheus"] = "http://prom.riga-1.internal:9090"
    (tmp_path / "site.yml").write_text(yaml.safe_dump(with_billing(riga)))
    asked = []

    def fake(client, period):
        asked.append((client.cluster, client.url, period.name))
        return KubernetesUsage(client.cluster, client.url, round(period.hours), gpu_hours={("gov-lv", "gpu0099"): {0: 4.0}})
    monkeypatch.setattr("infra.usage.prometheus.kubernetes_usage", fake)
    assert cli.main(["usage", str(tmp_path / "site.yml"), "--period", "2026-11", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert asked == [("riga-infer", "http://prom.riga-1.internal:9090", "2026-11")]
    assert report["kubernetes_from_prometheus"] == ["riga-infer"]
    assert {r["tenant"]: r["gpu_hours"] for r in report["tenants"]}["gov-lv"] == {"h200": 4.0}
    assert report["total"]["gpu_hours"] == {"h200": 32 * 8 * 720}              # the cluster's workers only
    assert cli.main(["usage", str(tmp_path / "site.yml"), "--eed", "2026"]) == 0
    assert "every host of the site file: the Prometheus of riga-infer for their nodes" in capsys.readouterr().out
