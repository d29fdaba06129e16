"""Node phases re-run exactly when their inputs' hash changes; the orchestration is reached through run_phase only.

Nothing here runs Ansible: the orchestration module is replaced by a stand-in.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, keyless_mirrors, site_data, RIGA
from infra.plan.phases import phase_named
from infra.plan import build_plan
from infra.stack import node_configuration as nc
from infra.site import validate_data
from infra.site.checks import run_checks


SITE_FILE = "inventories/riga-1/site.yml"
OTHERS = ("base", "boot", "rdma", "gpu", "power", "slurm", "health", "kubernetes")


@pytest.fixture
def repo(tmp_path) -> Path:
    """A copy of the repository's playbooks and roles, to edit (what a run never reads is left behind)."""
    shutil.copytree(ROOT / "playbooks", tmp_path / "playbooks", ignore=shutil.ignore_patterns("molecule", "__pycache__"))
    return tmp_path


def hashes(root: Path, data: dict) -> dict[str, str]:
    """Every phase's inputs hash for the site ``data`` with the playbooks under ``root`` (riga-infer's bootstrap too)."""
    site = validate_data(data)
    inputs = nc.PhaseInputs.of(site, build_plan(site), root, SITE_FILE)
    out = {p.name: inputs.digest(p) for p in nc.node_phases()}
    out["kubernetes"] = inputs.digest(nc.CLUSTER_PHASE, {"kubernetes_cluster": "riga-infer"}, limit="k8s_riga_infer")
    return out


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {name for name in before if before[name] != after[name]}


def edit(path: Path, line: str = "# edited") -> None:
    path.write_text(path.read_text() + f"\n{line}\n")


def test_editing_a_role_re_runs_exactly_the_phases_that_apply_it(repo, riga):
    before = hashes(repo, riga)
    assert hashes(repo, riga) == before and set(before) == set(OTHERS)
    roles = repo / "playbooks" / "roles"
    edit(roles / "nvidia_driver" / "tasks" / "main.yml")
    after_driver = hashes(repo, riga)
    assert changed(before, after_driver) == {"gpu"}
    edit(roles / "gpu_power" / "templates" / "gigafactory-gpu-power.service.j2")
    after_power = hashes(repo, riga)
    assert changed(after_driver, after_power) == {"power"}
    after_driver = after_power
    edit(roles / "boot_server" / "templates" / "host.ipxe.j2")
    after_boot = hashes(repo, riga)
    assert changed(after_driver, after_boot) == {"boot"}
    after_driver = after_boot
    # slurm_common is applied by no playbook: slurm_dbd, slurm_controller, slurm_login import it
    edit(roles / "slurm_common" / "defaults" / "main.yml", "slurm_common_edited: true")
    after_common = hashes(repo, riga)
    assert changed(after_driver, after_common) == {"slurm"}
    edit(repo / "playbooks" / "validated.yml")               # imported by every phase's playbook
    assert changed(after_common, hashes(repo, riga)) == set(OTHERS)


def test_what_a_run_never_reads_does_not_count(repo, riga):
    before = hashes(repo, riga)
    edit(repo / "playbooks" / "roles" / "nvidia_driver" / "README.md")
    (repo / "playbooks" / "roles" / "slurm_common" / "molecule").mkdir()
    (repo / "playbooks" / "roles" / "slurm_common" / "molecule" / "verify.yml").write_text("[]\n")
    (repo / "playbooks" / "roles" / "base" / "__pycache__").mkdir()
    (repo / "playbooks" / "roles" / "base" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    edit(repo / "playbooks" / "acceptance.yml")               # no phase's playbook
    assert hashes(repo, riga) == before


def test_group_vars_beside_the_site_file_count_for_every_phase(repo, riga):
    before = hashes(repo, riga)
    (repo / SITE_FILE).parent.joinpath("group_vars").mkdir(parents=True)
    (repo / SITE_FILE).parent.joinpath("group_vars", "all.yml").write_text("nvidia_driver_reboot_throttle: 2\n")
    assert changed(before, hashes(repo, riga)) == set(OTHERS)


def test_a_role_brought_in_by_meta_dependencies_counts(repo, riga):
    roles = repo / "playbooks" / "roles"
    edit(roles / "munge" / "defaults" / "main.yml")
    before = hashes(repo, riga)
    meta = roles / "cuda" / "meta" / "main.yml"
    data = yaml.safe_load(meta.read_text())
    meta.write_text(yaml.safe_dump({**data, "dependencies": [{"role": "munge"}]}))
    with_dependency = hashes(repo, riga)
    assert changed(before, with_dependency) == {"gpu"}
    edit(roles / "munge" / "tasks" / "main.yml")
    assert changed(with_dependency, hashes(repo, riga)) == {"gpu", "slurm"}


def test_the_site_fields_a_phase_reads_change_its_hash(riga):
    before = hashes(ROOT, riga)
    riga["software"]["nvidia_driver"]["branch"] = "580"
    assert "gpu" in changed(before, hashes(ROOT, riga))
    riga = site_data(RIGA)
    riga["tenants"][0]["slurm"]["gpus"] = 256
    assert "slurm" in changed(before, hashes(ROOT, riga))
    # what only the Pulumi program's Kubernetes objects read re-runs no phase: a namespace's GPU quota
    riga = site_data(RIGA)
    riga["tenants"][0]["kubernetes"]["gpus"] = 96
    assert changed(before, hashes(ROOT, riga)) == set()


def test_the_plans_view_of_a_phases_hosts_counts_for_that_phase_only(riga):
    before = hashes(ROOT, riga)
    site = validate_data(riga)
    plan = build_plan(site)
    moved = dict(plan.hosts)
    # ctl01's addresses (gf_addresses and /etc/hosts, which base and slurm_dbd read; gpu's roles read neither)
    addresses = {**plan.hosts["ctl01"].addresses, "management": "10.40.250.250/16"}
    moved["ctl01"] = dataclasses.replace(plan.hosts["ctl01"], addresses=addresses)
    inputs = nc.PhaseInputs.of(site, dataclasses.replace(plan, hosts=moved), ROOT, SITE_FILE)
    assert inputs.digest(phase_named("gpu"), limit="gpu") == before["gpu"]        # ctl01 is no GPU host
    assert inputs.digest(phase_named("base"), limit="all") != before["base"]
    assert inputs.digest(phase_named("slurm"), limit="slurm") != before["slurm"]


def test_what_no_role_reads_of_the_plan_counts_for_no_phase(riga):
    """A host's rack (gf_rack) is in the inventory for review, but no playbook or role names it."""
    before = hashes(ROOT, riga)
    site = validate_data(riga)
    plan = build_plan(site)
    moved = {**plan.hosts, "ctl01": dataclasses.replace(plan.hosts["ctl01"], rack="b99")}
    inputs = nc.PhaseInputs.of(site, dataclasses.replace(plan, hosts=moved), ROOT, SITE_FILE)
    assert {p.name: inputs.digest(p) for p in nc.node_phases()} == {n: h for n, h in before.items() if n != "kubernetes"}


def test_a_missing_role_or_playbook_fails_with_its_name(repo, riga):
    shutil.rmtree(repo / "playbooks" / "roles" / "slurm_common")
    with pytest.raises(nc.PhaseInputError, match=r"^phase 'slurm': .*role 'slurm_common' is missing \(playbooks/roles/slurm_common\)"):
        hashes(repo, riga)
    shutil.copytree(ROOT / "playbooks" / "roles" / "slurm_common", repo / "playbooks" / "roles" / "slurm_common")
    (repo / "playbooks" / "gpu.yml").unlink()
    with pytest.raises(nc.PhaseInputError, match=r"^phase 'gpu': phase playbook playbooks/gpu.yml: playbooks/gpu.yml is missing"):
        hashes(repo, riga)
    (repo / "playbooks" / "gpu.yml").write_text(
        "- hosts: gpu\n  tasks:\n    - ansible.builtin.include_role: {name: '{{ driver_role }}'}\n")
    with pytest.raises(nc.PhaseInputError, match=r"^phase 'gpu': playbooks/gpu.yml \(ansible.builtin.include_role\): "
                                                 r"'\{\{ driver_role \}\}' is not a literal name"):
        hashes(repo, riga)


MOCK_PROGRAM = r"""
import json, sys
from pathlib import Path
import pulumi
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

class Mocks(pulumi.runtime.Mocks):
    def __init__(self):
        self.hashes, self.declared = {}, []
    def new_resource(self, args):
        self.declared.append(args.name)
        if args.typ.endswith(":AnsiblePhase"):
            self.hashes[args.name] = args.inputs["inputs_hash"]
        return f"{args.name}-id", dict(args.inputs)
    def call(self, args):
        return {}, None

mocks = Mocks()
pulumi.runtime.set_mocks(mocks, project="gigafactory", stack="test", preview=False)
from infra.plan import build_plan
from infra.site import load_site
from infra.stack.program import declare_site

root, site_file = Path(sys.argv[1]), sys.argv[2]
def program():
    site = load_site(root / site_file)
    declare_site(site, build_plan(site), site_file, root)
error = None
try:
    _sync_await(run_pulumi_func(program))
except pulumi.RunError as err:
    error = str(err)
json.dump({"hashes": mocks.hashes, "declared": mocks.declared, "error": error}, sys.stdout)
sys.stdout.flush()
# Leave without interpreter teardown: asyncio's loop, collected then, sometimes prints "Exception ignored" noise
# (a closed self-pipe) on stderr, which is not the program's.
import os
os._exit(0)
"""


def declared(root: Path) -> dict:
    """The program's components for riga-1 under Pulumi's mocks (one process: mocks are process-wide), with the
    playbooks under ``root``: the phases' hashes, every resource declared, the program's error."""
    result = subprocess.run([sys.executable, "-c", MOCK_PROGRAM, str(root), SITE_FILE], capture_output=True, text=True,
                            cwd=ROOT, timeout=900)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_under_mocks_an_edited_role_changes_its_phase_resource_and_a_missing_one_stops_the_program(repo):
    (repo / SITE_FILE).parent.mkdir(parents=True)
    shutil.copy(RIGA, repo / SITE_FILE)
    before = declared(repo)
    # riga-1 names no boot server (provisioning.images): phase boot has no hosts there, so no resource
    phases = {f"nodes-{p}" for p in OTHERS if p not in ("kubernetes", "boot")} | {"riga-infer-kubeadm"}
    assert before["error"] is None and set(before["hashes"]) == phases
    edit(repo / "playbooks" / "roles" / "slurm_common" / "tasks" / "main.yml")
    after = declared(repo)
    assert changed(before["hashes"], after["hashes"]) == {"nodes-slurm"}
    shutil.rmtree(repo / "playbooks" / "roles" / "nvidia_driver")
    missing = declared(repo)
    assert missing["error"] == ("phase 'gpu': playbooks/gpu.yml: role 'nvidia_driver' is missing "
                                "(playbooks/roles/nvidia_driver); nothing was declared")
    assert missing["declared"] == []


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


def test_phases_are_the_orchestrations(monkeypatch):
    """In the orchestration's order, each limited to its groups; its kubernetes phase is declared per cluster instead."""
    from infra.orchestrate import PHASES, Phase
    assert [p.name for p in nc.node_phases()] == [p.name for p in PHASES if p.name != nc.CLUSTER_PHASE.name]
    assert nc.CLUSTER_PHASE.name in [p.name for p in PHASES]
    monkeypatch.setattr(nc, "ORCHESTRATION_PHASES", PHASES + (Phase("firmware", ("gpu", "rdma")),))
    assert (nc.node_phases()[-1].name, nc.node_phases()[-1].pattern) == ("firmware", "gpu:rdma")


def test_chart_mirror_warning_only_without_a_mirror():
    data = keyless_mirrors(site_data(RIGA))
    warnings = [p for p in run_checks(validate_data(data)) if p.severity == "warning"]
    assert [p.path for p in warnings] == ["repositories.charts", "repositories.kubernetes", "repositories.enroot",
                                          # riga-1's mirrors name no signing keys (tests/test_repository_keys.py)
                                          "repositories.slurm.signed_by", "repositories.doca.signed_by", "repositories.cuda.signed_by"]
    data["repositories"]["charts"] = "http://mirror.riga-1.internal/charts"
    assert not [p for p in run_checks(validate_data(data)) if p.path == "repositories.charts"]


def test_kubernetes_package_mirror_warning_names_the_clusters_and_goes_with_a_mirror():
    data = keyless_mirrors(site_data(RIGA))
    [warning] = [p for p in run_checks(validate_data(data)) if p.path == "repositories.kubernetes"]
    assert warning.severity == "warning" and "'riga-infer'" in warning.message and "kubeadm" in warning.message
    data["repositories"]["kubernetes"] = "http://mirror.riga-1.internal/kubernetes"
    assert not [p for p in run_checks(validate_data(data)) if p.path == "repositories.kubernetes"]
    data["kubernetes"] = []
    del data["repositories"]["kubernetes"]
    for tenant in data["tenants"]:
        tenant.pop("kubernetes", None)
    assert not [p for p in run_checks(validate_data(data)) if p.path == "repositories.kubernetes"]
