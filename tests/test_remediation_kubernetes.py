"""The remediation service on a Kubernetes cluster (gigafactory-remediate, backend kubernetes): GPU workers go through
the same rules, states, events and breaker as Slurm nodes, through Debian 13's real kubectl with the admin kubeconfig.

No kube-apiserver can run here, so kubectl talks to an in-process HTTPS endpoint (the pattern of
test_node_health_kubernetes.py) that serves Nodes and Pods, applies merge patches to Nodes (refusing one made
against an older resourceVersion, as the API server does), and answers the Eviction API (deleting the pod, or 429
where a PodDisruptionBudget would refuse). The node agent's side is written into its Node's annotations as its
Kubernetes mode writes them. What is proved: what the service asks of the API (method, path, body) and what it
decides; not the API server's admission (NodeRestriction, the PDB controller's arithmetic), nor a kubelet.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path

import pytest

from conftest import RIGA, site_data
from kubeapi import JsonHandler, kubeconfig_for, kubectl_binary, merge, serve_tls

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("debootstrap"), reason="needs root and debootstrap (kubectl from Debian 13)"),
]

PROGRAM = Path(__file__).resolve().parent.parent / "playbooks/roles/remediation/files/gigafactory-remediate"
_loader = SourceFileLoader("gigafactory_remediate_kube", str(PROGRAM))
remediate = module_from_spec(spec_from_loader(_loader.name, _loader))
_loader.exec_module(remediate)
NOW = 1_900_000_000
WORKERS = [f"gpu{n:04d}" for n in range(97, 103)]      # riga-infer's first six workers
GPU_POD = {"containers": [{"name": "main", "resources": {"limits": {"nvidia.com/gpu": "8"}}}]}
CPU_POD = {"containers": [{"name": "main", "resources": {}}]}


class ApiServer:
    """Nodes and pods; merge patches of Nodes against their resourceVersion; evictions. Records every request."""

    def __init__(self, tls_dir: Path):
        self.nodes: dict[str, dict] = {}
        self.pods: dict[tuple[str, str], dict] = {}
        self.refuse: set[tuple[str, str]] = set()       # pods a PodDisruptionBudget protects (429)
        self.requests: list[tuple[str, str, dict | None]] = []
        self.tokens: set[tuple[str, str]] = set()        # (method, credentials) of every write
        self.version = 0
        server = self

        class Handler(JsonHandler):
            RESOURCES = [{"name": "nodes", "singularName": "node", "namespaced": False, "kind": "Node",
                          "verbs": ["get", "list", "patch"]},
                         {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod", "verbs": ["get", "list"]},
                         {"name": "pods/eviction", "singularName": "", "namespaced": True, "kind": "Eviction",
                          "group": "policy", "version": "v1", "verbs": ["create"]}]

            def body(self):
                if self.headers.get("Transfer-Encoding") == "chunked":      # kubectl create --raw -f - streams
                    data = b""
                    while (size := int(self.rfile.readline().strip(), 16)):
                        data += self.rfile.read(size)
                        self.rfile.readline()
                    self.rfile.readline()
                else:
                    data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                return json.loads(data) if data else None

            def do_GET(self):
                path = self.path.split("?")[0]
                if self.discovery(path):
                    return None
                server.requests.append(("GET", self.path, None))
                if path == "/api/v1/nodes":
                    return self.reply(200, {"kind": "NodeList", "apiVersion": "v1", "metadata": {},
                                            "items": list(server.nodes.values())})
                if path.startswith("/api/v1/nodes/") and path.rsplit("/", 1)[-1] in server.nodes:
                    return self.reply(200, server.nodes[path.rsplit("/", 1)[-1]])      # kubectl patch reads first
                if path == "/api/v1/pods":
                    assert "fieldSelector=" in self.path
                    return self.reply(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {},
                                            "items": list(server.pods.values())})
                return self.status(404, "NotFound", f"{path} not found")

            def do_PATCH(self):
                body = self.body()
                server.requests.append(("PATCH", self.path.split("?")[0], body))
                server.tokens.add(("PATCH", self.headers.get("Authorization", "")))
                name = self.path.split("?")[0].rsplit("/", 1)[-1]
                node = server.nodes.get(name)
                if node is None:
                    return self.status(404, "NotFound", f"nodes {name} not found")
                assert self.headers["Content-Type"] == "application/merge-patch+json"
                asked = (body.get("metadata") or {}).get("resourceVersion")
                if asked is not None and asked != node["metadata"]["resourceVersion"]:
                    return self.status(409, "Conflict", f"Operation cannot be fulfilled on nodes \"{name}\": the object "
                                                        "has been modified")
                merge(node, body)
                node["metadata"]["resourceVersion"] = server.bump()
                return self.reply(200, node)

            def do_POST(self):
                body = self.body()
                server.requests.append(("POST", self.path.split("?")[0], body))
                server.tokens.add(("POST", self.headers.get("Authorization", "")))
                parts = self.path.split("?")[0].split("/")      # /api/v1/namespaces/NS/pods/NAME/eviction
                key = (parts[4], parts[6])
                if parts[-1] != "eviction" or key not in server.pods:
                    return self.status(404, "NotFound", f"{self.path} not found")
                if key in server.refuse:
                    return self.status(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's "
                                                               "disruption budget.")
                del server.pods[key]
                return self.reply(201, {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201})

        self.http, self.url, self.ca = serve_tls(Handler, tls_dir)

    def bump(self) -> str:
        self.version += 1
        return str(self.version)

    def add_node(self, name: str) -> None:
        self.nodes[name] = {"apiVersion": "v1", "kind": "Node",
                            "metadata": {"name": name, "resourceVersion": self.bump(), "annotations": {}},
                            "spec": {"taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]},
                            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}

    def add_pod(self, namespace: str, name: str, node: str, spec: dict, daemonset: bool = False) -> None:
        owner = {"kind": "DaemonSet" if daemonset else "ReplicaSet", "name": "owner", "controller": True, "uid": "1",
                 "apiVersion": "apps/v1"}
        self.pods[(namespace, name)] = {"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": name, "namespace": namespace, "ownerReferences": [owner]},
            "spec": {"nodeName": node, **spec}, "status": {"phase": "Running"}}

    def notes(self, name: str) -> dict:
        return self.nodes[name]["metadata"].setdefault("annotations", {})

    def report(self, name: str, signals=(), diag=None, boot=None) -> None:
        """What the node's agent writes (its Kubernetes mode): the report in gigafactory/heal-report."""
        gf = {"signals": list(signals)}
        if diag is not None:
            gf["diag"] = diag
        if boot is not None:
            gf["boot"] = boot
        self.notes(name)["gigafactory/heal-report"] = json.dumps({"gf": gf})
        self.nodes[name]["metadata"]["resourceVersion"] = self.bump()

    def writes(self, since: int = 0) -> list[tuple[str, str, dict | None]]:
        return [r for r in self.requests[since:] if r[0] != "GET"]

    def lists(self, since: int = 0) -> list[str]:
        return [p.split("?")[0] for m, p, _ in self.requests[since:] if m == "GET" and p.split("?")[0] in (
            "/api/v1/nodes", "/api/v1/pods")]


@pytest.fixture(scope="module")
def kubectl() -> str:
    return kubectl_binary()


@pytest.fixture
def api(tmp_path):
    server = ApiServer(tmp_path)
    for name in WORKERS:
        server.add_node(name)
    yield server
    server.http.shutdown()


class Service:
    """The service's rounds at chosen times with riga-infer's rendered configuration, kubectl on PATH's place."""

    def __init__(self, tmp_path: Path, api: ApiServer, kubectl: str, **changes):
        from infra.plan import build_plan
        from infra.render.files import remediation_config
        from infra.site.load import validate_data
        plan = build_plan(validate_data(site_data(RIGA)))
        config = remediation_config(plan, plan.kubernetes[0])
        config["kubernetes"]["kubeconfig"] = str(kubeconfig_for(tmp_path / "admin.conf", api.url, api.ca, "admin-token"))
        config.update(state_dir=str(tmp_path / "state"), metrics_file=str(tmp_path / "metrics.prom"), **changes)
        self.config = config
        self.commands = remediate.Commands(str(Path(kubectl).parent))
        self.state = remediate.empty_state()
        self.events: list[dict] = []
        self.host = config["kubernetes"]["control_plane"]

    def round(self, now: float) -> list[dict]:
        leading, events = remediate.one_round(self.config, self.state, self.commands, self.host, now)
        assert leading
        self.events += events
        return events

    def node(self, name: str) -> dict:
        return self.state["nodes"].get(name, {"state": "healthy"})


def xid(code: int, at: float, detail: str = "GPU has fallen off the bus") -> dict:
    return {"signal": "xid", "code": code, "detail": detail, "at": at}


def test_an_xid_79_cordons_taints_evicts_reboots_diagnoses_and_uncordons(tmp_path, api, kubectl):
    node = WORKERS[0]
    api.add_pod("train", "job-a", node, GPU_POD)
    api.add_pod("kube-system", "nvidia-device-plugin", node, CPU_POD, daemonset=True)
    service = Service(tmp_path, api, kubectl)
    api.report(node, [xid(79, NOW - 5)])
    service.round(NOW)

    # one list of nodes, one of the pods not finished, then the drain and the eviction of the pod not a DaemonSet's
    assert api.lists() == ["/api/v1/nodes", "/api/v1/pods"]
    assert "status.phase%21%3DSucceeded" in api.requests[1][1]
    reason = "gigafactory-heal: reboot xid 79: GPU has fallen off the bus"
    patch, evict = api.writes()
    assert patch[0] == "PATCH" and patch[1].split("?")[0] == f"/api/v1/nodes/{node}"
    assert patch[2]["spec"] == {"unschedulable": True, "taints": [
        {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},          # another's taint kept
        {"key": "gigafactory/heal", "value": "reboot", "effect": "NoSchedule"}]}
    assert patch[2]["metadata"]["annotations"] == {"gigafactory/heal-reason": reason,
                                                   "gigafactory/heal-reason-at": str(NOW)}
    assert patch[2]["metadata"]["resourceVersion"]                                   # against the version read
    assert evict == ("POST", "/api/v1/namespaces/train/pods/job-a/eviction", {
        "apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "job-a", "namespace": "train"}})
    assert service.node(node)["state"] == "rebooting"
    assert ("train", "job-a") not in api.pods and ("kube-system", "nvidia-device-plugin") in api.pods
    assert any(e["action"] == "requeue" and "evicted: train/job-a" in e["detail"] for e in service.events)

    # no pod left to evict: the reboot asked of the node's agent, once
    mark = len(api.requests)
    service.round(NOW + 60)
    assert [(m, p.split("?")[0], b["metadata"]["annotations"]) for m, p, b in api.writes(mark)] == [
        ("PATCH", f"/api/v1/nodes/{node}", {"gigafactory/heal-reboot": str(NOW + 60)})]
    mark = len(api.requests)
    service.round(NOW + 120)
    assert api.writes(mark) == [] and service.node(node)["state"] == "rebooting"

    # the agent rebooted (a boot after the request): diagnosis asked, by reason, for this reason's time
    api.report(node, [xid(79, NOW - 5)], boot=NOW + 150)
    service.round(NOW + 180)
    assert service.node(node)["state"] == "diagnosing"
    notes = api.notes(node)
    assert notes["gigafactory/heal-reason"].startswith("gigafactory-heal: diagnose xid 79")
    assert notes["gigafactory/heal-reason-at"] == str(NOW + 180)
    assert api.nodes[node]["spec"]["taints"][-1] == {"key": "gigafactory/heal", "value": "diagnose", "effect": "NoSchedule"}

    # a diagnosis of the earlier drain is not this one's; this one's passes: uncordoned, our marks gone
    api.report(node, [xid(79, NOW - 5)], boot=NOW + 150,
               diag={"level": 2, "passed": True, "detail": "dcgmi diag -r 2", "at": NOW + 200, "for": NOW})
    service.round(NOW + 240)
    assert service.node(node)["state"] == "diagnosing"
    api.report(node, [xid(79, NOW - 5)], boot=NOW + 150,
               diag={"level": 2, "passed": True, "detail": "dcgmi diag -r 2", "at": NOW + 250, "for": NOW + 180})
    mark = len(api.requests)
    service.round(NOW + 300)
    assert service.node(node)["state"] == "healthy"
    (_, _, resume), = api.writes(mark)
    assert resume["spec"] == {"unschedulable": None, "taints": [
        {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]}
    assert resume["metadata"]["annotations"] == {"gigafactory/heal-reason": None, "gigafactory/heal-reason-at": None,
                                                 "gigafactory/heal-reboot": None}
    assert "unschedulable" not in api.nodes[node]["spec"]
    assert set(api.notes(node)) == {"gigafactory/heal-report"}
    steps = [e["action"] for e in service.events if e["node"] == node]
    assert steps == ["reboot", "requeue", "reboot requested", "diagnose", "resume"]


def test_an_administrators_cordon_is_never_undone(tmp_path, api, kubectl):
    node = WORKERS[1]
    api.nodes[node]["spec"]["unschedulable"] = True            # kubectl cordon by a person: no annotation of ours
    api.add_pod("train", "job-b", node, GPU_POD)
    service = Service(tmp_path, api, kubectl)
    api.report(node, [xid(79, NOW - 5)])
    for at in (NOW, NOW + 60):
        service.round(at)
    assert service.node(node)["state"] == "held" and api.writes() == []
    assert ("train", "job-b") in api.pods
    # the gate's own cordon (node_health's annotation) is not someone else's: the signal is acted on
    gated = WORKERS[2]
    api.nodes[gated]["spec"]["unschedulable"] = True
    api.notes(gated)["gigafactory/node-health"] = "gpu_count: expected 8 GPUs, found 7"
    api.report(gated, [xid(79, NOW + 100)])
    service.round(NOW + 120)
    assert service.node(gated)["state"] == "rebooting"
    # the person uncordons: released, and its signals are read again
    api.nodes[node]["spec"].pop("unschedulable")
    service.round(NOW + 180)
    assert service.node(node)["state"] == "rebooting" and api.nodes[node]["spec"]["unschedulable"] is True
    # a person uncordons a node of ours: what kubectl uncordon leaves (our taint, our reason) goes with it
    api.nodes[gated]["spec"].pop("unschedulable")
    events = service.round(NOW + 240)
    assert service.node(gated)["state"] == "healthy" and "uncordoned" in [e["action"] for e in events]
    assert [t["key"] for t in api.nodes[gated]["spec"]["taints"]] == ["nvidia.com/gpu"]
    assert not {"gigafactory/heal-reason", "gigafactory/heal-reason-at"} & set(api.notes(gated))


def test_an_eviction_a_disruption_budget_refuses_is_an_event_and_retried(tmp_path, api, kubectl):
    node = WORKERS[3]
    api.add_pod("serve", "llm-0", node, GPU_POD)
    api.refuse.add(("serve", "llm-0"))
    service = Service(tmp_path, api, kubectl)
    api.report(node, [xid(79, NOW - 5)])
    service.round(NOW)
    requeue = next(e for e in service.events if e["action"] == "requeue")
    assert "eviction refused" in requeue["detail"] and "serve/llm-0" in requeue["detail"]
    # still there: the next round tries again, and no reboot is asked while it runs
    mark = len(api.requests)
    events = service.round(NOW + 60)
    assert [r[1] for r in api.writes(mark)] == ["/api/v1/namespaces/serve/pods/llm-0/eviction"]
    assert [e["action"] for e in events] == ["eviction refused"]
    api.refuse.clear()                                          # the budget allows it now
    service.round(NOW + 120)
    assert ("serve", "llm-0") not in api.pods
    service.round(NOW + 180)
    assert api.notes(node)["gigafactory/heal-reboot"] == str(NOW + 180)


def test_the_breaker_trips_when_many_workers_fail_at_once(tmp_path, api, kubectl):
    service = Service(tmp_path, api, kubectl)                   # breaker: max(3, 5 % of 6) nodes
    for i, node in enumerate(WORKERS[:5]):
        api.report(node, [xid(79, NOW - 10 + i)])
    service.round(NOW)
    states = [service.node(n)["state"] for n in WORKERS[:5]]
    assert states.count("rebooting") == 3 and states.count("suspect") == 2
    assert service.state["breaker"]["open"] is True
    cordoned = [n for n in WORKERS if api.nodes[n]["spec"].get("unschedulable")]
    assert len(cordoned) == 3
    assert any(e["action"] == "breaker open" for e in service.events)
    metrics = (tmp_path / "metrics.prom")
    remediate.save(service.config, service.state, service.events)
    assert "gigafactory_remediation_breaker_open 1" in metrics.read_text()


def test_a_patch_against_a_changed_node_is_retried_next_round(tmp_path, api, kubectl):
    node = WORKERS[4]
    service = Service(tmp_path, api, kubectl)
    api.report(node, [xid(63, NOW - 5, "row remap pending")])
    real = remediate.KubernetesFleet.read_nodes

    def read_then_changed(fleet):                  # someone writes the Node between our read and our patch
        nodes, problem = real(fleet)
        api.nodes[node]["metadata"]["resourceVersion"] = api.bump()
        return nodes, problem
    remediate.KubernetesFleet.read_nodes = read_then_changed
    try:
        service.round(NOW)
    finally:
        remediate.KubernetesFleet.read_nodes = real
    assert any(e["action"] == "drain failed" and "has been modified" in e["detail"] for e in service.events)
    assert service.node(node)["state"] == "healthy" and not api.nodes[node]["spec"].get("unschedulable")
    service.round(NOW + 60)
    assert service.node(node)["state"] == "draining" and api.nodes[node]["spec"]["unschedulable"] is True


def test_another_host_than_the_first_control_plane_leaves_the_cluster_alone(tmp_path, api, kubectl):
    service = Service(tmp_path, api, kubectl)
    api.report(WORKERS[0], [xid(79, NOW - 5)])
    assert remediate.one_round(service.config, service.state, service.commands, "k8s-cp02", NOW) == (False, [])
    assert api.requests == []


AGENT = Path(__file__).resolve().parent.parent / "playbooks/roles/node_health/files/gigafactory-node-health"


class Agent:
    """The node's signal agent in its Kubernetes mode (node_health's gigafactory-node-health --signals), with the
    kubelet's identity, its kernel log, boot time and reboot command in ``tmp_path``; no GPU here, so the diagnosis
    is the acceptance checks of a node type that promises none."""

    def __init__(self, tmp_path: Path, api: ApiServer, kubectl: str, node: str, service: Service):
        self.dir, self.kubectl, self.node = tmp_path / "agent", kubectl, node
        self.dir.mkdir()
        self.kubeconfig = kubeconfig_for(self.dir / "kubelet.conf", api.url, api.ca, "kubelet-token")
        (self.dir / "kern.log").write_text("")
        self.boot(1_000)
        (self.dir / "reboot").write_text(f"#!/bin/sh\necho asked >> {self.dir}/reboots\n")
        (self.dir / "reboot").chmod(0o755)
        expect = {"node": node, "node_type": "hgx-h200", "gpus": 0, "gpu_model": None, "driver_branch": None, "cuda": {},
                  "hcas": 0, "fabric_gbits": None, "rails": [], "dcgm_level": 0, "bw_min_gbits": 0.0,
                  "diagnose_level": service.config["diagnose_level"], "diagnose_timeout_s": 60, "rail_devices": [],
                  "ib_error_threshold": 10, "heal_prefix": service.config["reason_prefix"],
                  "heal_kubernetes": service.config["kubernetes"]["annotations"]}
        (self.dir / "expect.json").write_text(json.dumps(expect))

    def boot(self, at: int) -> None:
        (self.dir / "stat").write_text(f"cpu  1 2 3\nbtime {at}\n")

    def xid(self, at: float, code: int) -> None:
        with open(self.dir / "kern.log", "a") as handle:
            handle.write(f"{at:.6f} {self.node} kernel: NVRM: Xid (PCI:0000:3b:00): {code}, pid=1, GPU has fallen off the bus\n")

    def run(self) -> str:
        d = self.dir
        done = subprocess.run(
            [sys.executable, str(AGENT), "--signals", "--expect", str(d / "expect.json"), "--state", str(d / "state.json"),
             "--kernel-log", str(d / "kern.log"), "--sysfs-ib", str(d / "no-ib"), "--nvidia-smi", str(d / "none"),
             "--dcgmi", str(d / "none"), "--journalctl", str(d / "none"), "--scontrol", str(d / "none"),
             "--kubectl", self.kubectl, "--kubeconfig", str(self.kubeconfig), "--proc-stat", str(d / "stat"),
             "--reboot-command", str(d / "reboot")], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def reboots(self) -> int:
        path = self.dir / "reboots"
        return len(path.read_text().splitlines()) if path.exists() else 0


def test_the_node_agent_reports_reboots_and_diagnoses_through_its_own_node(tmp_path, api, kubectl):
    node = WORKERS[5]
    service = Service(tmp_path, api, kubectl)
    agent = Agent(tmp_path, api, kubectl, node, service)
    now = time.time()
    agent.xid(now - 30, 79)
    assert "kubernetes: written" in agent.run()
    report = json.loads(api.notes(node)["gigafactory/heal-report"])["gf"]
    assert [(s["signal"], s["code"]) for s in report["signals"]] == [("xid", 79)] and report["boot"] == 1_000

    service.round(now)                                  # cordoned for a reboot; no pod: asked in the next round
    service.round(now + 30)
    asked = int(api.notes(node)["gigafactory/heal-reboot"])
    agent.run()
    assert agent.reboots() == 1                         # its request is newer than this boot
    agent.run()
    assert agent.reboots() == 2                         # (still not rebooted: asked again, as systemctl would)
    agent.boot(asked + 5)                               # back from the reboot
    assert "kubernetes: written" in agent.run() and agent.reboots() == 2
    service.round(now + 60)
    assert service.node(node)["state"] == "diagnosing"
    agent.run()                                         # the diagnosis, for this reason's time
    diag = json.loads(api.notes(node)["gigafactory/heal-report"])["gf"]["diag"]
    assert diag["passed"] and diag["for"] == int(api.notes(node)["gigafactory/heal-reason-at"])
    service.round(now + 90)
    assert service.node(node)["state"] == "healthy" and not api.nodes[node]["spec"].get("unschedulable")
    assert agent.reboots() == 2
    # each with its own identity: the service with the admin's, the agent with the kubelet's (patches only)
    assert api.tokens == {("PATCH", "Bearer admin-token"), ("PATCH", "Bearer kubelet-token")}
    agent_patches = [b for m, p, b in api.requests if m == "PATCH" and set(b["metadata"]["annotations"]) == {
        "gigafactory/heal-report"}]
    assert agent_patches and all(set(b) == {"metadata"} for b in agent_patches)
