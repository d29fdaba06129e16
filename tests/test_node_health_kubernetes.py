"""node_health's Kubernetes side: the role, run for riga-1's gpu0097 (a worker of riga-infer), cordons the node
when the gate fails it and uncordons it when it passes, with Debian 13's real kubectl.

No kube-apiserver can run here (no registry these machines reach has one), so kubectl talks to a small in-process
HTTP endpoint that serves the Node object and applies kubectl's patches to it (JSON merge semantics, which is what
both strategic merge of ``spec.unschedulable`` and ``kubectl annotate`` amount to for these fields). What is proved:
what the role asks, with which identity (the admin kubeconfig on the cluster's first control plane), and that it
leaves an operator's cordon alone; not the API server's admission behaviour.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import RIGA, ROOT, bin_path

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("debootstrap"), reason="needs root and debootstrap (kubectl from Debian 13)"),
]

NODE = "gpu0097"
ANNOTATION = "gigafactory/node-health"

PLAY = """
- name: The gate on {node}, its Kubernetes answer from the control plane
  hosts: {node}
  connection: local
  gather_facts: false
  roles:
    - role: node_health
      vars:
        node_health_slurm: false
        node_health_fail_host: false
        node_health_program: {out}/gigafactory-node-health
        node_health_expect_file: {out}/etc/health-expect.json
        node_health_output: {out}/lib/health.json
        node_health_systemd_dir: {out}/systemd
        node_health_signals_state: {out}/lib/signals-state.json
        node_health_signals: false
        node_health_kubectl: {kubectl}
        node_health_kubeconfig: {kubeconfig}
"""

# What "fixing the declaration" means on this machine (no GPU, no HCA): the node type promises nothing it lacks.
HEALTHY = ["-e", '{"node_health_gpus": 0, "node_health_hcas": 0, "node_health_cuda": {}, "node_health_driver_branch": null,'
                 ' "node_health_rails": [], "node_health_fabric_gbits": null, "node_health_gpu_model": null}']


class ApiServer:
    """One Node, GET and PATCH; records every write."""

    def __init__(self, tls_dir):
        self.node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE, "uid": "1", "annotations": {}}, "spec": {}}
        self.patches: list[tuple[str, dict]] = []
        self.users: set[str] = set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def reply(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                server.users.add(self.headers.get("Authorization", ""))
                path = self.path.split("?")[0]
                if path == "/api":
                    return self.reply(200, {"kind": "APIVersions", "versions": ["v1"]})
                if path == "/apis":
                    return self.reply(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
                if path == "/api/v1":
                    return self.reply(200, {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                        {"name": "nodes", "singularName": "node", "namespaced": False, "kind": "Node",
                         "verbs": ["get", "list", "patch", "update"]}]})
                if path == f"/api/v1/nodes/{NODE}":
                    return self.reply(200, server.node)
                return self.reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
                                        "message": f"{path} not found"})

            def do_PATCH(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.patches.append((self.headers["Content-Type"], body))
                merge(server.node, body)
                return self.reply(200, server.node)

            def log_message(self, *args):
                pass

        # TLS, as an API server speaks it: kubectl sends no credentials over plain HTTP
        self.ca = tls_dir / "apiserver.crt"
        key = tls_dir / "apiserver.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=kube-apiserver",
                        "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(self.ca)],
                       check=True, capture_output=True)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca, key)
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.socket = context.wrap_socket(self.http.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    @property
    def cordoned(self) -> bool:
        return bool(self.node["spec"].get("unschedulable"))

    @property
    def mark(self) -> str | None:
        return self.node["metadata"].get("annotations", {}).get(ANNOTATION)


def merge(target: dict, patch: dict) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = value


@pytest.fixture
def api(tmp_path):
    server = ApiServer(tmp_path)
    yield server
    server.http.shutdown()


@pytest.fixture(scope="module")
def kubectl() -> str:
    from chroots import cached_chroot
    return str(cached_chroot("kubectl", "trixie", ["kubectl"]) / "usr" / "bin" / "kubectl")


def apply(tmp_path, api, kubectl, *extra) -> str:
    out = tmp_path / "health"
    out.mkdir(exist_ok=True)
    kubeconfig = tmp_path / "admin.conf"
    kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: riga-infer, cluster: {{server: "{api.url}", certificate-authority: "{api.ca}"}}}}]
users: [{{name: kubernetes-admin, user: {{token: admin-token}}}}]
contexts: [{{name: admin, context: {{cluster: riga-infer, user: kubernetes-admin}}}}]
current-context: admin
""")
    play = tmp_path / "play.yml"
    play.write_text(PLAY.format(node=NODE, out=out, kubectl=kubectl, kubeconfig=kubeconfig))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(ROOT / "playbooks" / "roles"))
    result = subprocess.run([bin_path("ansible-playbook"), "-i", str(RIGA), "-e", f"ansible_python_interpreter={sys.executable}",
                             *extra, str(play)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result.stdout


def test_a_failing_worker_is_cordoned_with_its_reason_and_uncordoned_once_it_passes(tmp_path, api, kubectl):
    log = apply(tmp_path, api, kubectl)          # gpu0097 promises 8 H200s; this machine has none
    assert api.cordoned and api.mark == "gpu_count: expected 8 GPUs, found 0 (no nvidia-smi)", api.node
    assert "k8s-cp01" in log                     # kubectl ran on the cluster's first control plane
    assert api.users == {"Bearer admin-token"}   # with the admin kubeconfig
    writes = len(api.patches)
    assert [kind for kind, _ in api.patches] == ["application/strategic-merge-patch+json", "application/merge-patch+json"]

    apply(tmp_path, api, kubectl)                # still failing, same reason: nothing to write
    assert len(api.patches) == writes

    apply(tmp_path, api, kubectl, *HEALTHY)      # the declaration fixed: the gate passes
    assert not api.cordoned and api.mark is None, api.node


def test_an_operators_cordon_is_left_alone(tmp_path, api, kubectl):
    api.node["spec"]["unschedulable"] = True     # cordoned by hand, no gate annotation
    apply(tmp_path, api, kubectl, *HEALTHY)
    apply(tmp_path, api, kubectl)
    assert api.cordoned and api.mark is None and api.patches == []
