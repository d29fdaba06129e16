"""The kubernetes role's kubeadm configuration, rendered by Ansible from a site file and read back as YAML.

kubeadm and kubelet are in no registry this project's machines reach, so `kubeadm init` cannot run here: the
configuration it would read is checked field by field against the site file and its plan, and the role's stop
without a Kubernetes mirror is run for real (the Molecule scenario runs the rest of the role on a VM).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from conftest import RIGA, ROOT, bin_path, keyless_mirrors, playbook, site_data

ROLE = ROOT / "playbooks" / "roles" / "kubernetes"
TOKEN = "abcdef.0123456789abcdef"
CA_HASH = "sha256:" + "0" * 64
CERT_KEY = "f" * 64

RENDER = """
- name: Render the kubernetes role's kubeadm files only
  hosts: {hosts}
  connection: local
  gather_facts: false
  tasks:
    - name: The role's defaults (the variables its templates read)
      ansible.builtin.include_vars: {role}/defaults/main.yml
    - name: kubeadm init configuration
      ansible.builtin.template:
        src: {role}/templates/kubeadm.yaml.j2
        dest: "{out}/{{{{ inventory_hostname }}}}-init.yaml"
        mode: "0600"
      vars:
        kubernetes_release: v{version}.4
    - name: kubeadm join configuration
      ansible.builtin.template:
        src: {role}/templates/kubeadm-join.yaml.j2
        dest: "{out}/{{{{ inventory_hostname }}}}-join.yaml"
        mode: "0600"
      vars:
        kubernetes_join_token: {token}
        kubernetes_join_ca_hash: {ca_hash}
        kubernetes_certificate_key: "{{{{ '{cert_key}' if inventory_hostname in kubernetes_control_plane else '' }}}}"
"""


def render(tmp_path: Path, version: str = "1.33", images: str | None = None) -> dict[str, dict[str, dict]]:
    """{host: {'init': {kind: doc}, 'join': {kind: doc}}} for riga-1's first two control planes and first worker."""
    site = site_data(RIGA)
    site["kubernetes"][0]["version"] = version
    if images:
        site["repositories"]["images"] = images
    out = tmp_path / "out"
    out.mkdir()
    hosts = ["k8s-cp01", "k8s-cp02", "gpu0097"]
    result = playbook(tmp_path, site, RENDER.format(hosts=",".join(hosts), role=ROLE, out=out, version=version, token=TOKEN,
                                                    ca_hash=CA_HASH, cert_key=CERT_KEY))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return {h: {step: {d["kind"]: d for d in yaml.safe_load_all((out / f"{h}-{step}.yaml").read_text()) if d}
                for step in ("init", "join")} for h in hosts}


def management(host: str) -> str:
    from infra.plan import build_plan
    from infra.site import load_site
    return build_plan(load_site(RIGA), RIGA).hosts[host].address("management")


def test_init_configuration_is_the_site_files_cluster(tmp_path):
    files = render(tmp_path)
    init = files["k8s-cp01"]["init"]
    assert set(init) == {"InitConfiguration", "ClusterConfiguration", "KubeletConfiguration"}
    cluster = init["ClusterConfiguration"]
    assert cluster["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    assert cluster["clusterName"] == "riga-infer" and cluster["kubernetesVersion"] == "v1.33.4"
    assert cluster["networking"] == {"podSubnet": "10.112.0.0/12", "serviceSubnet": "10.96.0.0/16"}
    cp01 = management("k8s-cp01")
    assert cluster["controlPlaneEndpoint"] == f"{cp01}:6443"
    assert "imageRepository" not in cluster                # no registry declared: kubeadm's default
    node = init["InitConfiguration"]
    assert node["localAPIEndpoint"] == {"advertiseAddress": cp01, "bindPort": 6443}
    assert node["nodeRegistration"]["name"] == "k8s-cp01"
    assert node["nodeRegistration"]["kubeletExtraArgs"] == [{"name": "node-ip", "value": cp01}]
    assert init["KubeletConfiguration"]["cgroupDriver"] == "systemd"


def test_join_configuration_makes_control_planes_and_workers(tmp_path):
    files = render(tmp_path, images="registry.riga-1.internal:5000")
    second, worker = files["k8s-cp02"]["join"]["JoinConfiguration"], files["gpu0097"]["join"]["JoinConfiguration"]
    for join, host in ((second, "k8s-cp02"), (worker, "gpu0097")):
        assert join["discovery"]["bootstrapToken"] == {"apiServerEndpoint": f"{management('k8s-cp01')}:6443", "token": TOKEN,
                                                       "caCertHashes": [CA_HASH]}
        assert join["nodeRegistration"]["kubeletExtraArgs"] == [{"name": "node-ip", "value": management(host)}]
    assert second["controlPlane"] == {"localAPIEndpoint": {"advertiseAddress": management("k8s-cp02"), "bindPort": 6443},
                                      "certificateKey": CERT_KEY}
    assert "controlPlane" not in worker
    assert files["k8s-cp01"]["init"]["ClusterConfiguration"]["imageRepository"] == "registry.riga-1.internal:5000"


def test_kubernetes_1_30_gets_kubeadms_v1beta3_with_a_mapping_of_kubelet_arguments(tmp_path):
    files = render(tmp_path, version="1.30")
    init = files["k8s-cp01"]["init"]
    assert init["ClusterConfiguration"]["apiVersion"] == "kubeadm.k8s.io/v1beta3"
    assert init["InitConfiguration"]["nodeRegistration"]["kubeletExtraArgs"] == {"node-ip": management("k8s-cp01")}
    assert files["gpu0097"]["join"]["JoinConfiguration"]["apiVersion"] == "kubeadm.k8s.io/v1beta3"


STOP = """
- name: The kubernetes role's package step on a site without a Kubernetes mirror
  hosts: k8s-cp01
  connection: local
  gather_facts: false
  tasks:
    - name: Apply the role's package tasks
      ansible.builtin.include_role:
        name: kubernetes
        tasks_from: packages.yml
"""


def test_without_a_kubernetes_mirror_the_role_stops_first_and_says_which_field(tmp_path):
    result = playbook(tmp_path, keyless_mirrors(site_data(RIGA)), STOP)
    assert result.returncode == 2, result.stdout[-3000:]
    assert "cluster riga-infer is declared but the site names no repositories.kubernetes" in result.stdout
    assert "kubelet, kubeadm, kubectl" in result.stdout
    failed_task = result.stdout.split("fatal:")[0].rsplit("TASK [", 1)[1]
    assert failed_task.startswith("kubernetes : kubeadm and kubelet need the site's Kubernetes mirror")   # its first task
    assert "changed=0" in result.stdout and "failed=1" in result.stdout


def test_the_phase_playbook_parses():
    result = subprocess.run([bin_path("ansible-playbook"), "--syntax-check", "-i", str(RIGA), "playbooks/kubernetes.yml"], cwd=ROOT,
                            env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg")), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
