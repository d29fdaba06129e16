"""The healing fleet's configuration: the site's ``remediation`` section, the plan's merged rules, remediation.json and
gf_remediation, and docs/healing.md's rule table, each against infra/site/healing.py's one table."""

from __future__ import annotations

import json
import re

import pytest
from conftest import DEMO, RIGA, ROOT, site_data
from test_site_validation import problems_of

from infra.plan import build_plan
from infra.render.files import remediation_config, render_all
from infra.render.inventory import site_inventory
from infra.site import validate_data
from infra.site.healing import ACTIONS, RULES, SIGNALS

DOC = ROOT / "docs" / "healing.md"


def config_of(data: dict) -> dict | None:
    """The remediation service's configuration as the render writes it (remediation.json), or None without one."""
    site = validate_data(data)
    files = render_all(site, build_plan(site))
    return json.loads(files["remediation.json"]) if "remediation.json" in files else None


def action_for(config: dict, signal: str, code: int | None) -> tuple[str, str | None]:
    """(action, escalation's action) of the first rule matching ``signal`` and ``code``, as the service matches."""
    for rule in config["rules"]:
        if rule["signal"] == signal and (not rule["codes"] or code in rule["codes"]):
            return rule["action"], (rule["escalate"] or {}).get("action")
    raise AssertionError(f"no rule for {signal} {code}")


# --- docs/healing.md and the table -------------------------------------------------------------------------------


def doc_rules() -> list[tuple]:
    text = DOC.read_text()
    table = text.split("<!-- rules: begin -->", 1)[1].split("<!-- rules: end -->", 1)[0]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in table.strip().splitlines()[2:]]
    out = []
    for signal, codes, action, count, window, to in rows:
        out.append((signal, () if codes == "any" else tuple(int(c) for c in codes.split(",")), action,
                    (int(count), int(window), to) if to else None))
    return out


def test_the_docs_rule_table_is_the_default_rules_row_by_row():
    assert doc_rules() == [(r.signal, r.codes, r.action,
                            (r.escalate.count, r.escalate.window_s, r.escalate.action) if r.escalate else None)
                           for r in RULES]


def test_the_docs_signal_table_names_every_signal_once():
    section = DOC.read_text().split("## Signals", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"^\| `(\w+)` \|", section, re.M) == list(SIGNALS)


# Written out, not derived from RULES: a changed default rule fails here. (signal, code, action, escalation's action)
EXPECTED = [
    ("xid", 79, "reboot", "repair"),
    ("xid", 48, "reboot", "repair"),
    ("xid", 95, "reboot", "repair"),
    ("xid", 94, "requeue", "reboot"),
    ("xid", 63, "drain", "repair"),
    ("xid", 64, "drain", "repair"),
    ("xid", 74, "reboot", "repair"),
    ("xid", 119, "reboot", "repair"),
    ("xid", 120, "reboot", "repair"),
    ("xid", 13, "ignore", None),
    ("xid", 31, "ignore", None),
    ("xid", 43, "ignore", None),
    ("xid", 45, "ignore", None),
    ("xid", 62, "drain", "repair"),             # any other XID
    ("ecc_contained", None, "requeue", "reboot"),
    ("ecc_uncontained", None, "reboot", "repair"),
    ("dcgm_health", None, "drain", "repair"),
    ("dcgm_diag", 1, "drain", "repair"),              # the periodic quick run: drained, diagnosed
    ("dcgm_diag", 2, "repair", None),
    ("ib_link_down", None, "drain", "repair"),
    ("ib_errors", None, "drain", "repair"),
    ("health_check", None, "drain", "repair"),
    ("unresponsive", None, "reboot", "repair"),
]


@pytest.fixture(scope="module")
def riga_config() -> dict:
    return config_of(site_data(RIGA))


@pytest.mark.parametrize("signal, code, action, escalation", EXPECTED, ids=[f"{s}-{c}" for s, c, *_ in EXPECTED])
def test_each_default_rule_maps_its_signal_to_its_action(riga_config, signal, code, action, escalation):
    assert action_for(riga_config, signal, code) == (action, escalation)


def test_every_signal_has_an_expectation():
    assert {s for s, *_ in EXPECTED} == set(SIGNALS)


# --- the merged configuration ------------------------------------------------------------------------------------


def test_a_slurm_site_without_the_section_gets_the_defaults(riga_config):
    assert {k: v for k, v in riga_config.items() if k != "rules"} == {
        "version": 1, "cluster": "riga-train", "user": "slurm", "reason_prefix": "gigafactory-heal", "gate_prefix": "gigafactory-health",
        "actions": ["ignore", "requeue", "drain", "reboot", "repair"],
        "states": ["healthy", "suspect", "draining", "rebooting", "diagnosing", "awaiting_repair", "held"], "interval_s": 5,
        "breaker": {"share": 0.05, "window_s": 600, "min_nodes": 3}, "diagnose_level": 2, "diagnose_timeout_s": 1800,
        "reboot_timeout_s": 1800, "periodic_diag_s": 3600, "state_dir": "/var/spool/slurmctld/gigafactory-remediation",
        "metrics_file": "/var/lib/prometheus/node-exporter/gigafactory_remediation.prom"}
    assert len(riga_config["rules"]) == len(RULES)


def test_site_overrides_come_first_and_the_defaults_follow(riga):
    riga["slurm"]["state_save_location"] = "/srv/slurm"
    riga["remediation"] = {"interval_s": 30, "breaker": {"share": 0.2, "window_s": 60, "min_nodes": 1},
                           "diagnose_level": 3, "diagnose_timeout_s": 60,
                           "rules": [{"signal": "xid", "codes": [94], "action": "drain",
                                      "escalate": {"count": 2, "window_s": 3600, "action": "repair"}},
                                     {"signal": "ib_errors", "action": "ignore"}]}
    config = config_of(riga)
    assert config["rules"][:2] == [
        {"signal": "xid", "codes": [94], "action": "drain", "escalate": {"count": 2, "window_s": 3600, "action": "repair"}},
        {"signal": "ib_errors", "codes": [], "action": "ignore", "escalate": None}]
    assert len(config["rules"]) == len(RULES) + 2
    assert action_for(config, "xid", 94) == ("drain", "repair")
    assert action_for(config, "ib_errors", None) == ("ignore", None)
    assert action_for(config, "xid", 79) == ("reboot", "repair")          # the defaults still follow
    assert (config["interval_s"], config["breaker"], config["diagnose_level"], config["diagnose_timeout_s"]) == (
        30, {"share": 0.2, "window_s": 60, "min_nodes": 1}, 3, 60)
    assert config["state_dir"] == "/srv/slurm/gigafactory-remediation"


def test_disabled_or_without_slurm_there_is_no_configuration(riga, demo):
    riga["remediation"] = {"enabled": False}
    assert config_of(riga) is None
    site = validate_data(riga)
    assert build_plan(site).remediation is None
    assert "gf_remediation" not in site_inventory(site, build_plan(site))["all"]["children"]["slurm_controller"].get("vars", {})
    demo.pop("slurm")
    demo.pop("tenants", None)
    assert config_of(demo) is None


def test_the_controllers_inventory_holds_the_same_configuration(riga_config):
    site = validate_data(site_data(RIGA))
    plan = build_plan(site)
    children = site_inventory(site, plan)["all"]["children"]
    assert children["slurm_controller"]["vars"]["gf_remediation"] == riga_config == remediation_config(plan)
    # a Kubernetes cluster's group: the same configuration, its backend and cluster (the service on its first
    # control plane), and nowhere else
    clusters = {c.group: c for c in plan.kubernetes}
    infer = children["k8s_riga_infer"]["vars"]["gf_remediation"]
    assert infer == remediation_config(plan, clusters["k8s_riga_infer"])
    assert infer["backend"] == "kubernetes" and infer["cluster"] == "riga-infer" and infer["rules"] == riga_config["rules"]
    assert infer["kubernetes"]["control_plane"] == "k8s-cp01"
    assert all("gf_remediation" not in (c.get("vars") or {}) for g, c in children.items()
               if g != "slurm_controller" and g not in clusters)


def test_the_demo_renders_its_configuration():
    assert config_of(site_data(DEMO))["cluster"] == "demo"


# --- the site model refuses what the service could not use -------------------------------------------------------


def _rule(**fields) -> dict:
    return {"signal": "xid", "codes": [79], "action": "reboot", **fields}


REFUSED = {
    "unknown signal": ({"rules": [_rule(signal="xid_79")]}, "remediation.rules[0].signal", "'xid', 'ecc_contained'"),
    "unknown action": ({"rules": [_rule(action="explode")]}, "remediation.rules[0].action", "'ignore', 'requeue'"),
    "escalation not more severe": ({"rules": [_rule(escalate={"count": 2, "window_s": 600, "action": "drain"})]},
                                   "remediation.rules[0]", "not more severe than action 'reboot'"),
    "escalation the same": ({"rules": [_rule(action="repair", escalate={"count": 2, "window_s": 600, "action": "repair"})]},
                            "remediation.rules[0]", "actions from least to most: ignore, requeue, drain, reboot, repair"),
    "escalate unknown action": ({"rules": [_rule(escalate={"count": 2, "window_s": 600, "action": "burn"})]},
                                "remediation.rules[0].escalate.action", "'ignore'"),
    "code too large": ({"rules": [_rule(codes=[65536])]}, "remediation.rules[0].codes[0]", "less than or equal to 65535"),
    "code negative": ({"rules": [_rule(codes=[-1])]}, "remediation.rules[0].codes[0]", "greater than or equal to 0"),
    "code a bool": ({"rules": [_rule(codes=[True])]}, "remediation.rules[0].codes[0]", "valid integer"),
    "escalate count one": ({"rules": [_rule(escalate={"count": 1, "window_s": 600, "action": "repair"})]},
                           "remediation.rules[0].escalate.count", "greater than or equal to 2"),
    "escalate count huge": ({"rules": [_rule(escalate={"count": 10**300, "window_s": 600, "action": "repair"})]},
                            "remediation.rules[0].escalate.count", "less than or equal to"),
    "escalate window short": ({"rules": [_rule(escalate={"count": 2, "window_s": 59, "action": "repair"})]},
                              "remediation.rules[0].escalate.window_s", "greater than or equal to 60"),
    "escalate window long": ({"rules": [_rule(escalate={"count": 2, "window_s": 2592001, "action": "repair"})]},
                             "remediation.rules[0].escalate.window_s", "less than or equal to 2592000"),
    "interval zero": ({"interval_s": 0}, "remediation.interval_s", "greater than or equal to 1"),
    "interval huge": ({"interval_s": 3601}, "remediation.interval_s", "less than or equal to 3600"),
    "interval a bool": ({"interval_s": True}, "remediation.interval_s", "valid integer"),
    "interval a float": ({"interval_s": 5.5}, "remediation.interval_s", "valid integer"),
    "share zero": ({"breaker": {"share": 0}}, "remediation.breaker.share", "greater than 0"),
    "share above one": ({"breaker": {"share": 1.5}}, "remediation.breaker.share", "less than or equal to 1"),
    "share NaN": ({"breaker": {"share": float("nan")}}, "remediation.breaker.share", "finite number"),
    "share infinite": ({"breaker": {"share": float("inf")}}, "remediation.breaker.share", "finite number"),
    "breaker window short": ({"breaker": {"window_s": 59}}, "remediation.breaker.window_s", "greater than or equal to 60"),
    "breaker window long": ({"breaker": {"window_s": 86401}}, "remediation.breaker.window_s", "less than or equal to 86400"),
    "min nodes zero": ({"breaker": {"min_nodes": 0}}, "remediation.breaker.min_nodes", "greater than or equal to 1"),
    "min nodes huge": ({"breaker": {"min_nodes": 2**40}}, "remediation.breaker.min_nodes", "less than or equal to"),
    "diagnose level five": ({"diagnose_level": 5}, "remediation.diagnose_level", "less than or equal to 4"),
    "diagnose level zero": ({"diagnose_level": 0}, "remediation.diagnose_level", "greater than or equal to 1"),
    "diagnose timeout short": ({"diagnose_timeout_s": 59}, "remediation.diagnose_timeout_s", "greater than or equal to 60"),
    "diagnose timeout long": ({"diagnose_timeout_s": 86401}, "remediation.diagnose_timeout_s", "less than or equal to 86400"),
    "enabled a string": ({"enabled": "perhaps"}, "remediation.enabled", "valid boolean"),
    "unknown key": ({"intervall_s": 5}, "remediation.intervall_s", "unknown key"),
    "not a mapping": (["xid"], "remediation", "valid dictionary"),
    "rules not a list": ({"rules": {"signal": "xid"}}, "remediation.rules", "valid list"),
}


@pytest.mark.parametrize("section, path, words", REFUSED.values(), ids=list(REFUSED))
def test_the_site_refuses_what_the_service_could_not_use(riga, section, path, words):
    riga["remediation"] = section
    problems = problems_of(riga)
    assert any(p.startswith(path + ":") and words in p for p in problems), problems


def test_remediation_without_slurm_is_a_problem_naming_it(demo):
    demo.pop("slurm")
    demo.pop("tenants", None)
    demo["remediation"] = {"interval_s": 10}
    assert [p for p in problems_of(demo) if p.startswith("remediation")] == [
        "remediation: the site declares no slurm section and no kubernetes cluster: the remediation service acts "
        "through one of them; remove remediation or write enabled: false"]
    demo["remediation"] = {"enabled": False}
    assert problems_of(demo) == []


def test_the_names_the_model_accepts_are_the_tables():
    from infra.site.model import HealingAction, HealingSignal
    from typing import get_args
    assert get_args(HealingSignal) == tuple(SIGNALS) and get_args(HealingAction) == ACTIONS
