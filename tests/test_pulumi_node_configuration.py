"""Node phases re-run exactly when their inputs' hash changes; the orchestration is reached through run_phase only.

Nothing here runs Ansible: the orchestration module is replaced by a stand-in.
"""

from __future__ import annotations

import dataclasses
import sys
import types
from pathlib import Path

import pytest

from conftest import site_data, RIGA
from infra.plan import build_plan
from infra.stack import node_configuration as nc
from infra.site import validate_data
from infra.site.checks import run_checks


@pytest.fixture(scope="module")
def plan():
    return build_plan(validate_data(site_data(RIGA)))


def phase_hash(plan, root, phase: str) -> str:
    spec = next(p for p in nc.PHASES if p.name == phase)
    return nc.inputs_hash(nc.hosts_view(plan, spec.group), root, spec.files())


def test_hash_is_stable_and_follows_the_playbook_and_its_role(plan, tmp_path):
    first = phase_hash(plan, tmp_path, "gpu")
    assert phase_hash(plan, tmp_path, "gpu") == first
    (tmp_path / "playbooks" / "roles" / "gpu" / "tasks").mkdir(parents=True)
    role_file = tmp_path / "playbooks" / "roles" / "gpu" / "tasks" / "main.yml"
    role_file.write_text("- ansible.builtin.debug: {msg: one}\n")
    with_role = phase_hash(plan, tmp_path, "gpu")
    assert with_role != first
    role_file.write_text("- ansible.builtin.debug: {msg: two}\n")
    assert phase_hash(plan, tmp_path, "gpu") != with_role
    before = phase_hash(plan, tmp_path, "gpu")
    (tmp_path / "playbooks" / "slurm.yml").write_text("- hosts: slurm\n")    # another phase's files
    (tmp_path / "playbooks" / "roles" / "slurm").mkdir()
    (tmp_path / "playbooks" / "roles" / "slurm" / "x.yml").write_text("x\n")
    assert phase_hash(plan, tmp_path, "gpu") == before
    (tmp_path / "playbooks" / "gpu.yml").write_text("- hosts: gpu\n")
    assert phase_hash(plan, tmp_path, "gpu") != before


def test_hash_follows_the_plans_view_of_the_phases_hosts_only(plan, tmp_path):
    gpu = phase_hash(plan, tmp_path, "gpu")
    moved = dict(plan.hosts)
    moved["gpu0001"] = dataclasses.replace(plan.hosts["gpu0001"], addresses={**plan.hosts["gpu0001"].addresses, "management": "10.40.9.1/16"})
    changed = dataclasses.replace(plan, hosts=moved)
    assert phase_hash(changed, tmp_path, "gpu") != gpu
    ctl = dict(plan.hosts)
    ctl["ctl01"] = dataclasses.replace(plan.hosts["ctl01"], rack="b02")
    assert phase_hash(dataclasses.replace(plan, hosts=ctl), tmp_path, "gpu") == gpu   # ctl01 is no GPU host
    assert phase_hash(dataclasses.replace(plan, hosts=ctl), tmp_path, "base") != phase_hash(plan, tmp_path, "base")


def test_provider_diff_looks_at_the_hash_alone():
    provider = nc.AnsiblePhaseProvider()
    olds = {"phase": "gpu", "limit": "gpu", "inputs_hash": "a", "root": "/old/checkout", "site_file": "x.yml"}
    assert provider.diff("gpu:gpu", olds, {**olds, "root": "/new/checkout"}).changes is False
    assert provider.diff("gpu:gpu", olds, {**olds, "inputs_hash": "b"}).changes is True


def test_run_phase_without_orchestration_says_what_to_do(monkeypatch):
    monkeypatch.setattr(nc, "ORCHESTRATION_MODULE", "infra.orchestration_not_there")
    request = nc.PhaseRequest("gpu", "playbooks/gpu.yml", "gpu", "inventories/riga-1/site.yml", "/repo")
    with pytest.raises(nc.OrchestrationMissing, match=r"ansible-playbook playbooks/gpu.yml --limit gpu"):
        nc.run_phase(request)


def fake_orchestration(exit_code: int, seen: list) -> types.ModuleType:
    """A stand-in for infra.orchestrate: records the options; the kubernetes role 'writes' its kubeconfig."""
    module = types.ModuleType("fake_orchestration")
    module.Phase = lambda name, groups=(): types.SimpleNamespace(name=name, groups=groups)
    module.UpOptions = lambda **kw: types.SimpleNamespace(**kw)
    module.PHASES = (module.Phase("base"), module.Phase("kubernetes", ("k8s_control_plane", "k8s_worker")))

    def up(options):
        seen.append(options)
        dest = options.extravars.get(nc.KUBECONFIG_VAR)
        if dest and exit_code == 0:
            Path(dest).write_text("apiVersion: v1\nkind: Config\n")
        return types.SimpleNamespace(exit_code=exit_code, run_dir="runs/riga-1/now", hosts={"k8s-cp01": None})

    module.up = up
    return module


def test_provider_runs_the_phase_through_the_orchestration_interface(monkeypatch):
    seen: list = []
    monkeypatch.setitem(sys.modules, "fake_orchestration", fake_orchestration(0, seen))
    monkeypatch.setattr(nc, "ORCHESTRATION_MODULE", "fake_orchestration")
    props = {"phase": "kubernetes", "playbook": "playbooks/kubernetes.yml", "limit": "k8s_riga_infer", "site_file": "s.yml",
             "root": "/repo", "extra_vars": {"kubernetes_cluster": "riga-infer"}, "inputs_hash": "h"}
    created = nc.AnsiblePhaseProvider().create(props)
    assert created.outs["kubeconfig"] == "apiVersion: v1\nkind: Config\n" and created.outs["inputs_hash"] == "h"
    options = seen[0]
    assert options.limit == "k8s_riga_infer" and options.site == Path("/repo/s.yml")
    # the orchestration's groups order the hosts (control planes first), the limit keeps to the one cluster
    assert [(p.name, p.groups) for p in options.phases] == [("kubernetes", ("k8s_control_plane", "k8s_worker"))]
    assert options.extravars["kubernetes_cluster"] == "riga-infer"
    base = {**props, "phase": "base", "limit": "all", "playbook": "playbooks/base.yml"}
    assert nc.AnsiblePhaseProvider().update("id", base, base).outs["kubeconfig"] is None
    assert seen[1].limit is None and seen[1].phases[0].groups == ()


def test_a_failed_phase_fails_the_update(monkeypatch):
    monkeypatch.setitem(sys.modules, "fake_orchestration", fake_orchestration(3, []))
    monkeypatch.setattr(nc, "ORCHESTRATION_MODULE", "fake_orchestration")
    props = {"phase": "gpu", "playbook": "playbooks/gpu.yml", "limit": "gpu", "site_file": "s.yml", "root": "/repo", "inputs_hash": "h"}
    with pytest.raises(RuntimeError, match=r"phase 'gpu' on 'gpu' failed \(exit 3\); see runs/riga-1/now"):
        nc.AnsiblePhaseProvider().update("id", props, props)


def test_a_phase_the_orchestration_does_not_list_runs_on_its_own_group(monkeypatch):
    seen: list = []
    monkeypatch.setitem(sys.modules, "fake_orchestration", fake_orchestration(0, seen))
    monkeypatch.setattr(nc, "ORCHESTRATION_MODULE", "fake_orchestration")
    props = {"phase": "gpu", "playbook": "playbooks/gpu.yml", "limit": "gpu", "site_file": "s.yml", "root": "/repo", "inputs_hash": "h"}
    nc.AnsiblePhaseProvider().create(props)
    assert seen[0].phases[0].groups == ("gpu",) and seen[0].limit == "gpu"


def test_phases_match_the_orchestration_layers_where_it_exists():
    """Same phases in the same order; the kubernetes phase is declared per cluster by KubernetesCluster instead."""
    orchestrate = pytest.importorskip("infra.orchestrate")
    theirs = [(p.name, p.groups or ("all",)) for p in orchestrate.PHASES if p.name != "kubernetes"]
    assert "kubernetes" in [p.name for p in orchestrate.PHASES]
    assert [(p.name, (p.group,)) for p in nc.PHASES] == theirs


def test_chart_mirror_warning_only_without_a_mirror():
    data = site_data(RIGA)
    warnings = [p for p in run_checks(validate_data(data)) if p.severity == "warning"]
    assert [p.path for p in warnings] == ["repositories.charts", "repositories.kubernetes", "repositories.enroot"]
    data["repositories"]["charts"] = "http://mirror.riga-1.internal/charts"
    assert not [p for p in run_checks(validate_data(data)) if p.path == "repositories.charts"]


def test_kubernetes_package_mirror_warning_names_the_clusters_and_goes_with_a_mirror():
    data = site_data(RIGA)
    [warning] = [p for p in run_checks(validate_data(data)) if p.path == "repositories.kubernetes"]
    assert warning.severity == "warning" and "'riga-infer'" in warning.message and "kubeadm" in warning.message
    data["repositories"]["kubernetes"] = "http://mirror.riga-1.internal/kubernetes"
    assert not [p for p in run_checks(validate_data(data)) if p.path == "repositories.kubernetes"]
    data["kubernetes"] = []
    del data["repositories"]["kubernetes"]
    for tenant in data["tenants"]:
        tenant.pop("kubernetes", None)
    assert not [p for p in run_checks(validate_data(data)) if p.path == "repositories.kubernetes"]
