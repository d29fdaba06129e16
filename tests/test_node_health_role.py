"""The node_health role's gate for riga-1's gpu0001, installed by the role into a scratch
directory on this machine (no GPU, no HCA) and run there: it must fail, name why, and say so in JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import RIGA, ROOT, bin_path
from infra.site.healing import HEAL_PREFIX

PLAY = """
- name: Install the gate and its expectations only
  hosts: gpu0001
  connection: local
  gather_facts: false
  roles:
    - role: node_health
      vars:
        node_health_run: false
        node_health_program: {out}/gigafactory-node-health
        node_health_expect_file: {out}/etc/health-expect.json
        node_health_output: {out}/lib/health.json
        node_health_systemd_dir: {out}/systemd
        node_health_signals_state: {out}/lib/signals-state.json
        node_health_signals: false
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("health")
    (out / "play.yml").write_text(PLAY.format(out=out))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(ROOT / "playbooks" / "roles"))
    result = subprocess.run([bin_path("ansible-playbook"), "-i", str(RIGA), "-e", f"ansible_python_interpreter={sys.executable}",
                             str(out / "play.yml")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return out


def test_expectations_come_from_the_node_type_and_the_site(installed):
    expect = json.loads((installed / "etc" / "health-expect.json").read_text())
    assert expect["node"] == "gpu0001" and expect["node_type"] == "hgx-h200"
    assert (expect["gpus"], expect["gpu_model"], expect["driver_branch"]) == (8, "H200", "570")
    assert expect["cuda"] == {"12.8": "/usr/local/cuda-12.8"}
    assert (expect["hcas"], expect["fabric_gbits"], len(expect["rails"])) == (8, 400, 8)


def test_the_signal_agent_runs_from_a_timer_every_interval(installed):
    timer = (installed / "systemd" / "gigafactory-node-signals.timer").read_text()
    assert "OnUnitActiveSec=10s\n" in timer and "WantedBy=timers.target" in timer
    service = (installed / "systemd" / "gigafactory-node-signals.service").read_text()
    assert (f"ExecStart={installed}/gigafactory-node-health --signals --expect {installed}/etc/health-expect.json "
            f"--state {installed}/lib/signals-state.json\n") in service
    expect = json.loads((installed / "etc" / "health-expect.json").read_text())
    assert (expect["diagnose_level"], expect["rail_devices"], expect["ib_error_threshold"]) == (2, [], 10)
    assert expect["heal_prefix"] == HEAL_PREFIX           # riga-1's gf_diagnosis.reason_prefix, the one table's


def test_the_gate_fails_a_node_without_its_gpus_and_writes_why(installed):
    result = subprocess.run([sys.executable, str(installed / "gigafactory-node-health"), "--no-slurm",
                             "--expect", str(installed / "etc" / "health-expect.json"),
                             "--output", str(installed / "lib" / "health.json")], capture_output=True, text=True)
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads((installed / "lib" / "health.json").read_text())
    assert not report["passed"] and report["slurm"] == "not asked"
    assert report["failed"][:2] == ["gpu_count", "cuda_12.8"]
    assert report["reason"] == "gpu_count: expected 8 GPUs, found 0 (no nvidia-smi)"
    assert "hca_count" in report["failed"]
    assert "FAIL gpu_count: expected 8 GPUs, found 0 (no nvidia-smi)" in result.stdout


@pytest.mark.parametrize(("shown", "expected"), [
    ("NodeName=gpu0001 State=IDLE+DRAIN Reason=gigafactory-health: gpu_count: x [root@t]", "resumed"),
    # Slurm 24.11 keeps the reason text on a resumed node: an idle node is not resumed again
    ("NodeName=gpu0001 State=IDLE Reason=gigafactory-health: gpu_count: x [root@t]", "unchanged"),
    # an operator's drain stays
    ("NodeName=gpu0001 State=IDLE+DRAIN Reason=bad DIMM [ops@t]", "unchanged"),
])
def test_a_passing_node_is_resumed_only_when_this_gate_drained_it(installed, tmp_path, monkeypatch, shown, expected):
    import importlib.machinery
    import importlib.util
    loader = importlib.machinery.SourceFileLoader("gate", str(installed / "gigafactory-node-health"))
    gate = importlib.util.module_from_spec(importlib.util.spec_from_loader("gate", loader))
    loader.exec_module(gate)
    calls = []

    def fake_run(argv, timeout=30):
        calls.append(argv)
        return (0, shown) if argv[:2] == ["scontrol", "show"] else (0, "")

    monkeypatch.setattr(gate, "run", fake_run)
    monkeypatch.setattr(gate.shutil, "which", lambda name: "/usr/bin/" + name)
    assert gate.slurm_state("gpu0001", []) == expected
    assert (["scontrol", "update", "nodename=gpu0001", "state=resume"] in calls) == (expected == "resumed")


SIGNALS_DEFAULT = """
- name: Where node_health's signal agent runs by default
  hosts: gpu0001, gpu0097, sm01
  connection: local
  gather_facts: false
  vars_files: [{defaults}]
  tasks:
    - name: The default is a boolean (the role's argument spec takes nothing else) and the expected one
      ansible.builtin.assert:
        that:
          - node_health_signals | type_debug == 'bool'
          - node_health_signals == (inventory_hostname in ['gpu0001', 'gpu0097'])
"""


def test_the_signal_agents_default_is_a_boolean_on_every_kind_of_host(tmp_path, riga):
    """A Slurm compute node (gpu0001), a healed Kubernetes worker (gpu0097), a host that is neither (sm01): the
    default once evaluated to a dict on the last, which the role's argument validation refused (an image build
    of a plain node type failed in phase health)."""
    from conftest import playbook
    result = playbook(tmp_path, riga, SIGNALS_DEFAULT.format(defaults=ROOT / "playbooks/roles/node_health/defaults/main.yml"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert result.stdout.count("All assertions passed") == 3, result.stdout[-3000:]
