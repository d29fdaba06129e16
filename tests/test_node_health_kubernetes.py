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
import subprocess
import sys

import pytest

from conftest import RIGA, ROOT, bin_path
from kubeapi import JsonHandler, kubeconfig_for, kubectl_binary, merge, serve_tls

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

        class Handler(JsonHandler):
            RESOURCES = [{"name": "nodes", "singularName": "node", "namespaced": False, "kind": "Node",
                          "verbs": ["get", "list", "patch", "update"]}]

            def do_GET(self):
                server.users.add(self.headers.get("Authorization", ""))
                path = self.path.split("?")[0]
                if self.discovery(path):
                    return None
                if path == f"/api/v1/nodes/{NODE}":
                    return self.reply(200, server.node)
                return self.status(404, "NotFound", f"{path} not found")

            def do_PATCH(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.patches.append((self.headers["Content-Type"], body))
                merge(server.node, body)
                return self.reply(200, server.node)

        self.http, self.url, self.ca = serve_tls(Handler, tls_dir)

    @property
    def cordoned(self) -> bool:
        return bool(self.node["spec"].get("unschedulable"))

    @property
    def mark(self) -> str | None:
        return self.node["metadata"].get("annotations", {}).get(ANNOTATION)


@pytest.fixture
def api(tmp_path):
    server = ApiServer(tmp_path)
    yield server
    server.http.shutdown()


@pytest.fixture(scope="module")
def kubectl() -> str:
    return kubectl_binary()


def apply(tmp_path, api, kubectl, *extra) -> str:
    out = tmp_path / "health"
    out.mkdir(exist_ok=True)
    kubeconfig = kubeconfig_for(tmp_path / "admin.conf", api.url, api.ca, "admin-token", "kubernetes-admin")
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
