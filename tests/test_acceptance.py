"""playbooks/acceptance.yml's health play on two local stand-in nodes: the report lists every verdict, and a node
that failed its health gate fails the acceptance run, named with its reason."""

from __future__ import annotations

import json
import sys

import yaml
from conftest import ROOT, bin_path, run


def acceptance(tmp_path, verdicts: dict[str, dict]):
    hosts = {}
    for host, verdict in verdicts.items():
        (tmp_path / f"{host}.json").write_text(json.dumps(verdict))
        hosts[host] = {"acceptance_health_report": str(tmp_path / f"{host}.json")}
    inventory = {"all": {"hosts": hosts, "vars": {"gf_site": "test", "ansible_connection": "local", "ansible_become": False,
                                                 "ansible_python_interpreter": sys.executable}}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    report = tmp_path / "report.json"
    result = run([bin_path("ansible-playbook"), "-i", str(tmp_path / "inventory.yml"), "-e", f"gf_acceptance_report={report}",
                  str(ROOT / "playbooks" / "acceptance.yml")], timeout=300)
    return result, json.loads(report.read_text()) if report.exists() else None


def test_every_node_passing_its_health_gate_passes(tmp_path):
    result, report = acceptance(tmp_path, {"node01": {"passed": True, "reason": None}, "node02": {"passed": True, "reason": None}})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert report["health"] == {"node01": True, "node02": True}
    assert "all 2 nodes passed the health gate" in result.stdout


def test_a_node_that_failed_its_health_gate_fails_acceptance_named_with_its_reason(tmp_path):
    result, report = acceptance(tmp_path, {"node01": {"passed": True, "reason": None},
                                           "node02": {"passed": False, "reason": "hca_count: 0 of 1"}})
    assert result.returncode != 0
    assert "1 of 2 nodes failed the health gate: node02 (hca_count: 0 of 1)" in result.stdout, result.stdout[-3000:]
    assert report["health"] == {"node01": True, "node02": False}          # the report is written all the same
