"""The remediation service's engine (remediation's gigafactory-remediate) against a stand-in Slurm.

The stand-in answers the service's calls as slurmctld 24.11 does (tests/test_remediation_real.py proves the same
scenarios on the real daemons): ``scontrol show nodes --json``, ``update``, ``reboot ASAP nextstate=DOWN``,
``requeue`` and ``squeue``, and records each call. The rules are infra/site/healing.py's, as the plan renders them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path

import pytest


PROGRAM = Path(__file__).resolve().parent.parent / "playbooks/roles/remediation/files/gigafactory-remediate"
NOW = 1_800_000_000.0
PREFIX = "gigafactory-heal"


def load_program():
    loader = SourceFileLoader("gigafactory_remediate", str(PROGRAM))
    module = module_from_spec(spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


remediate = load_program()


def config_for(tmp_path: Path, **changes) -> dict:
    """The demo site's remediation.json as the plan renders it (infra/site/healing.py's rules, the site's defaults),
    its state and metrics in ``tmp_path``, with ``changes``."""
    from conftest import DEMO

    from infra.plan import build_plan
    from infra.render.files import remediation_config
    from infra.site import load_site
    config = remediation_config(build_plan(load_site(DEMO)))
    config.update(state_dir=str(tmp_path / "state"), metrics_file=str(tmp_path / "remediation.prom"))
    config.update(changes)
    return config


class StandinSlurm:
    """Nodes and jobs as slurmctld keeps them; every call recorded in ``calls``."""

    def __init__(self, names, leader="ctl01"):
        self.nodes = {n: {"flags": {"IDLE"}, "reason": "", "extra": "", "reason_changed_at": 0} for n in names}
        self.changes = 1000                                  # slurmctld's reason_changed_at: a new number per change
        self.jobs: dict[str, tuple[str, bool]] = {}         # id -> (node, requeueable)
        self.requeued: list[str] = []
        self.leader = leader
        self.calls: list[list[str]] = []
        self.failing: set[str] = set()                       # scontrol subcommands that fail

    def run(self, argv, timeout=30):
        self.calls.append(list(argv))
        if argv[0] == "squeue":
            node = argv[argv.index("-w") + 1]
            return 0, "".join(f"{j}\n" for j, (n, _) in self.jobs.items() if n == node)
        verb = argv[1]
        if verb in self.failing:
            return 1, f"slurm_{verb} error: Unexpected message received"
        if verb == "ping":
            return 0, f"Slurmctld(primary) at {self.leader} is UP\nSlurmctld(backup) at ctl02 is UP\n"
        if verb == "show":
            return 0, json.dumps({"nodes": [{"name": n, "state": sorted(v["flags"]), "reason": v["reason"],
                                             "extra": v["extra"],
                                             "reason_changed_at": {"set": True, "infinite": False,
                                                                   "number": v["reason_changed_at"]}}
                                            for n, v in self.nodes.items()]})
        if verb == "update":
            settings = dict(a.split("=", 1) for a in argv[2:])
            for name in settings["NodeName"].split(","):
                node = self.nodes[name]
                if settings["State"] == "DRAIN":
                    node["flags"].add("DRAIN")
                    self.reason(name, settings["Reason"])
                elif settings["State"] == "RESUME":
                    node["flags"] -= {"DRAIN", "DOWN"}
                    node["flags"].add("IDLE")
                    self.reason(name, "")
            return 0, ""
        if verb == "reboot":
            assert argv[2:4] == ["ASAP", "nextstate=DOWN"], argv
            for name in argv[-1].split(","):
                self.nodes[name]["flags"] |= {"DRAIN", "REBOOT_REQUESTED"}
                self.reason(name, argv[4].removeprefix("reason=") + " : reboot issued")
            return 0, ""
        if verb == "requeue":
            node, requeueable = self.jobs[argv[2]]
            if not requeueable:
                return 1, f"Requeue of JobId={argv[2]} error: Requested operation is presently disabled"
            del self.jobs[argv[2]]
            self.requeued.append(argv[2])
            return 0, ""
        raise AssertionError(argv)

    def reason(self, name, text):
        self.changes += 1
        self.nodes[name].update(reason=text, reason_changed_at=self.changes)

    def rebooted(self, name):
        """The node back from its reboot: slurmctld 24.11 leaves it DOWN (nextstate=DOWN), drain cleared."""
        node = self.nodes[name]
        node["flags"] = {"IDLE", "DOWN"}
        self.reason(name, node["reason"] + " : reboot complete")

    def acts(self):
        """The calls that change something (not reads)."""
        return [c for c in self.calls if c[0] == "scontrol" and c[1] in ("update", "reboot", "requeue")]


def inject(slurm: StandinSlurm, node: str, signal: str, code, detail: str, at: float) -> None:
    """What the node agent writes: its report appended to the ring in the node's Extra (gf key only)."""
    extra = json.loads(slurm.nodes[node]["extra"] or "{}")
    gf = extra.setdefault("gf", {"signals": []})
    gf["signals"] = [*gf["signals"], {"signal": signal, "code": code, "detail": detail, "at": at}][-16:]
    slurm.nodes[node]["extra"] = json.dumps(extra)


def diag(slurm: StandinSlurm, node: str, passed: bool, at: float, of="current") -> None:
    """The agent's diagnosis in Extra, of the node's current drain (its reason_changed_at) unless ``of`` says."""
    extra = json.loads(slurm.nodes[node]["extra"] or "{}")
    extra.setdefault("gf", {"signals": []})["diag"] = {
        "level": 2, "passed": passed, "detail": "dcgmi diag -r 2", "at": at,
        **({"for": slurm.nodes[node]["reason_changed_at"] if of == "current" else of} if of is not None else {})}
    slurm.nodes[node]["extra"] = json.dumps(extra)


class Service:
    """The service's rounds at chosen times, its state carried between them as on disk."""

    def __init__(self, tmp_path, slurm, **changes):
        self.config = config_for(tmp_path, **changes)
        self.slurm = slurm
        self.state = remediate.empty_state()
        self.events: list[dict] = []

    def round(self, now):
        leading, events = remediate.one_round(self.config, self.state, self.slurm, "ctl01", now)
        self.events += events
        return leading

    def node(self, name):
        return self.state["nodes"].get(name, {"state": "healthy"})


def test_xid_79_drains_reboots_diagnoses_and_resumes_a_node(tmp_path):
    slurm = StandinSlurm(["node01", "node02"])
    service = Service(tmp_path, slurm)
    inject(slurm, "node01", "xid", 79, "GPU has fallen off the bus", NOW - 2)
    service.round(NOW)
    reason = f"{PREFIX}: reboot xid 79: GPU has fallen off the bus"
    assert slurm.acts() == [["scontrol", "update", "NodeName=node01", "State=DRAIN", f"Reason={reason}"],
                            ["scontrol", "reboot", "ASAP", "nextstate=DOWN", f"reason={reason}", "node01"]]
    assert service.node("node01")["state"] == "rebooting"
    service.round(NOW + 5)                                              # still rebooting: nothing new
    assert service.node("node01")["state"] == "rebooting" and len(slurm.acts()) == 2
    slurm.rebooted("node01")
    service.round(NOW + 10)
    assert service.node("node01")["state"] == "diagnosing"
    assert slurm.nodes["node01"]["reason"].startswith(f"{PREFIX}: diagnose xid 79")
    diag(slurm, "node01", True, NOW + 14, of=slurm.nodes["node01"]["reason_changed_at"] - 1)    # another drain's
    service.round(NOW + 15)
    assert service.node("node01")["state"] == "diagnosing"
    diag(slurm, "node01", True, NOW + 16, of=None)                      # of no drain: never accepted
    service.round(NOW + 17)
    assert service.node("node01")["state"] == "diagnosing"
    diag(slurm, "node01", True, NOW - 86400)                            # this drain's, the node's clock a day behind
    service.round(NOW + 20)
    assert service.node("node01")["state"] == "healthy"
    assert slurm.acts()[-1] == ["scontrol", "update", "NodeName=node01", "State=RESUME"]
    assert slurm.nodes["node01"]["flags"] == {"IDLE"}
    assert [(e["from"], e["to"]) for e in service.events if e["node"] == "node01" and e["from"] != e["to"]] == [
        ("healthy", "rebooting"), ("rebooting", "diagnosing"), ("diagnosing", "healthy")]
    assert service.events[0]["rule"] == "xid 79 -> reboot"
    assert service.state["metrics"]["drain_seconds"] == [1, 2.0, 2.0]
    assert service.state["metrics"]["return_seconds"] == [1, 20.0, 20.0]
    assert "node02" not in service.state["nodes"]


def test_a_second_xid_79_within_the_window_awaits_repair_and_is_not_resumed(tmp_path):
    slurm = StandinSlurm(["node01"])
    service = Service(tmp_path, slurm)
    inject(slurm, "node01", "xid", 79, "first", NOW - 1)
    service.round(NOW)
    slurm.rebooted("node01")
    service.round(NOW + 5)
    diag(slurm, "node01", True, NOW + 6)
    service.round(NOW + 10)
    assert service.node("node01")["state"] == "healthy"
    inject(slurm, "node01", "xid", 79, "second", NOW + 3600)
    service.round(NOW + 3601)
    assert service.node("node01")["state"] == "awaiting_repair"
    assert slurm.nodes["node01"]["reason"] == f"{PREFIX}: repair xid 79: second"
    assert [e for e in service.events if e["action"] == "repair"][-1]["rule"] == "xid 79 -> reboot, 2 within 86400 s -> repair"
    diag(slurm, "node01", True, NOW + 3700)
    for t in (3705, 3710, 90000):
        service.round(NOW + t)
    assert service.node("node01")["state"] == "awaiting_repair" and "DRAIN" in slurm.nodes["node01"]["flags"]
    assert len([c for c in slurm.acts() if "State=RESUME" in c]) == 1           # the first return only


def test_contained_ecc_requeues_the_nodes_jobs_and_keeps_it_in_service(tmp_path):
    slurm = StandinSlurm(["node01", "node02"])
    slurm.jobs = {"41": ("node01", True), "42": ("node01", False), "43": ("node02", True)}
    service = Service(tmp_path, slurm)
    inject(slurm, "node01", "xid", 94, "contained ECC error", NOW - 1)
    service.round(NOW)
    assert slurm.requeued == ["41"]
    assert "DRAIN" not in slurm.nodes["node01"]["flags"] and service.node("node01")["state"] == "healthy"
    event = service.events[-1]
    assert event["action"] == "requeue" and "requeued: 41" in event["detail"]
    assert "left to finish or fail (not requeueable): 42" in event["detail"]


def test_a_node_drained_by_a_person_is_held_never_changed_or_resumed(tmp_path):
    slurm = StandinSlurm(["node01"])
    slurm.nodes["node01"].update(flags={"IDLE", "DRAIN"}, reason="bad DIMM")
    service = Service(tmp_path, slurm)
    inject(slurm, "node01", "xid", 79, "GPU has fallen off the bus", NOW - 1)
    diag(slurm, "node01", True, NOW)
    for t in (0, 5, 10):
        service.round(NOW + t)
    assert slurm.acts() == []
    assert service.node("node01")["state"] == "held"
    assert [e["action"] for e in service.events] == ["hold"]
    # the person's drain gone: the signal that came while it was held is taken now, not lost
    slurm.nodes["node01"].update(flags={"IDLE"}, reason="")
    service.round(NOW + 15)
    assert [e["action"] for e in service.events][1:3] == ["release", "reboot"]
    assert service.node("node01")["state"] == "rebooting"


def test_the_acceptance_gates_drain_is_not_someone_elses(tmp_path):
    slurm = StandinSlurm(["node01"])
    slurm.nodes["node01"].update(flags={"IDLE", "DRAIN"}, reason="gigafactory-health: gpu count 7 of 8")
    service = Service(tmp_path, slurm)
    inject(slurm, "node01", "xid", 48, "DBE", NOW - 1)
    service.round(NOW)
    assert service.node("node01")["state"] == "rebooting"


def test_the_breaker_opens_past_its_threshold_drains_no_more_and_a_person_closes_it(tmp_path, monkeypatch):
    names = [f"node{i:02d}" for i in range(1, 21)]
    slurm = StandinSlurm(names)
    service = Service(tmp_path, slurm)
    for name in names[:5]:                        # 5 of 20 fail: max(3, 0.05 x 20) = 3 may drain
        inject(slurm, name, "dcgm_health", None, "PCIe replay rate", NOW - 1)
    service.round(NOW)
    drains = [c for c in slurm.acts() if "State=DRAIN" in c]
    assert drains == [["scontrol", "update", "NodeName=node01,node02,node03", "State=DRAIN",
                       f"Reason={PREFIX}: drain dcgm_health: PCIe replay rate"]]
    breaker = service.state["breaker"]
    assert breaker["open"] and breaker["flagged"] == 4
    opened = [e for e in service.events if e["action"] == "breaker open"]
    assert len(opened) == 1 and "4 nodes to drain within 600 s" in opened[0]["detail"]
    assert "max(3, 0.05 x 20 nodes) = 3" in opened[0]["detail"]
    assert {service.node(n)["state"] for n in names[3:5]} == {"suspect"}
    inject(slurm, "node06", "xid", 79, "off the bus", NOW + 100)            # open: no more drains, hours later too
    service.round(NOW + 5000)
    drains = [c for c in slurm.acts() if c[-1].startswith(f"Reason={PREFIX}: drain")]
    assert len(drains) == 1 and service.node("node06")["state"] == "suspect"
    # a person closes it, recorded with their name
    config = service.config
    os.makedirs(config["state_dir"])
    remediate.save(config, service.state, service.events)
    monkeypatch.setenv("SUDO_USER", "ops-anna")
    state = remediate.reset_breaker(config, NOW + 6000)
    assert not state["breaker"]["open"]
    last = json.loads(Path(config["state_dir"], "events.jsonl").read_text().splitlines()[-1])
    assert last["action"] == "breaker reset" and "reset by ops-anna" in last["detail"]


@pytest.mark.parametrize("extra", [
    "not json {", "[1, 2]", '{"gf": [1]}', '{"gf": {"signals": "xid"}}',
    '{"gf": {"signals": [{"signal": "xid", "code": 79, "detail": "x", "at": true}]}}',
    '{"gf": {"signals": [{"signal": "xid", "code": "79", "detail": "x", "at": 1}]}}',
    '{"gf": {"signals": [{"signal": "xid", "code": 79, "detail": "x", "at": NaN}]}}',
    '{"gf": {"signals": [], "diag": {"passed": "yes", "at": 1}}}',
    '{"gf": {"signals": [' + ",".join(['{"signal": "xid", "code": 79, "detail": "x", "at": 1}'] * 17) + ']}}',
    "[" * 200000,
    '{"gf": {"signals": [{"signal": "xid", "code": 99999, "detail": "x", "at": 1}]}}',
], ids=["not-json", "list", "gf-list", "signals-text", "at-bool", "code-text", "at-nan", "diag-passed-text", "ring-17",
        "deeply-nested", "code-past-65535"])
def test_a_node_it_cannot_see_clearly_is_an_event_and_untouched(tmp_path, extra):
    slurm = StandinSlurm(["node01", "node02"])
    slurm.nodes["node01"]["extra"] = extra
    inject(slurm, "node02", "xid", 79, "off the bus", NOW - 1)
    service = Service(tmp_path, slurm)
    service.round(NOW)
    service.round(NOW + 5)                                              # said once, not every round
    unclear = [e for e in service.events if e["node"] == "node01"]
    assert [e["action"] for e in unclear] == ["unclear"], unclear
    assert all("node01" not in " ".join(c) for c in slurm.acts())
    assert service.node("node02")["state"] == "rebooting"              # the round went on


def test_hostile_text_from_slurm_is_one_printable_line_in_reason_and_event(tmp_path):
    slurm = StandinSlurm(["node01"])
    inject(slurm, "node01", "xid", 63, "row\nremap\x1b[31m pending" + "x" * 500, NOW - 1)
    service = Service(tmp_path, slurm)
    service.round(NOW)
    reason = slurm.nodes["node01"]["reason"]
    assert reason.isprintable() and len(reason) <= 250 and reason.startswith(f"{PREFIX}: drain xid 63: ")
    assert all(e["detail"].isprintable() for e in service.events)


def test_a_report_written_twice_is_taken_once_and_a_newer_signal_after_it(tmp_path):
    slurm = StandinSlurm(["node01"])
    service = Service(tmp_path, slurm)
    inject(slurm, "node01", "xid", 13, "graphics engine exception", NOW - 3)
    service.round(NOW)
    service.round(NOW + 5)
    inject(slurm, "node01", "xid", 31, "MMU fault", NOW + 6)
    service.round(NOW + 10)
    assert [(e["code"], e["action"]) for e in service.events] == [(13, "ignore"), (31, "ignore")]
    # the history keeps only signals whose rule escalates (an ignored XID never counts towards repair)
    assert service.node("node01")["seen"] == NOW + 6 and service.node("node01")["history"] == []


def test_an_unresponsive_node_is_rebooted_a_moment_of_not_responding_is_not(tmp_path):
    slurm = StandinSlurm(["node01", "node02"])
    slurm.nodes["node01"]["flags"] = {"IDLE", "NOT_RESPONDING"}         # just resumed: not yet pinged
    slurm.nodes["node02"]["flags"] = {"DOWN", "NOT_RESPONDING"}
    slurm.nodes["node02"]["reason"] = "Not responding"
    service = Service(tmp_path, slurm)
    service.round(NOW)
    assert service.node("node01")["state"] == "healthy"
    assert service.node("node02")["state"] == "rebooting" and service.node("node02")["signal"] == "unresponsive"


def test_a_drain_waits_for_the_nodes_jobs_then_asks_for_a_diagnosis_and_a_failed_one_awaits_repair(tmp_path):
    slurm = StandinSlurm(["node01"])
    slurm.nodes["node01"]["flags"] = {"MIXED"}
    service = Service(tmp_path, slurm)
    inject(slurm, "node01", "ib_link_down", None, "mlx5_2 Down", NOW - 1)
    service.round(NOW)
    service.round(NOW + 5)
    assert service.node("node01")["state"] == "draining"                # its job still runs
    slurm.nodes["node01"]["flags"] = {"IDLE", "DRAIN"}
    service.round(NOW + 10)
    assert service.node("node01")["state"] == "diagnosing"
    diag(slurm, "node01", False, NOW + 11)
    service.round(NOW + 15)
    assert service.node("node01")["state"] == "awaiting_repair"
    assert slurm.nodes["node01"]["reason"].startswith(f"{PREFIX}: repair ib_link_down: ")


def test_no_diagnosis_within_its_timeout_awaits_repair(tmp_path):
    slurm = StandinSlurm(["node01"])
    service = Service(tmp_path, slurm, diagnose_timeout_s=60)
    inject(slurm, "node01", "dcgm_health", None, "x", NOW - 1)
    service.round(NOW)
    service.round(NOW + 5)
    service.round(NOW + 30)
    assert service.node("node01")["state"] == "diagnosing"
    service.round(NOW + 70)
    assert service.node("node01")["state"] == "awaiting_repair"


def test_drains_with_one_reason_are_one_scontrol_call(tmp_path):
    names = [f"node{i:03d}" for i in range(1, 201)]
    slurm = StandinSlurm(names)
    service = Service(tmp_path, slurm)
    for name in names[:10]:
        inject(slurm, name, "xid", 74, "NVLink error", NOW - 1)
    service.round(NOW)
    assert [c[:3] for c in slurm.acts()] == [["scontrol", "update", f"NodeName={','.join(names[:10])}"],
                                             ["scontrol", "reboot", "ASAP"]]


def test_a_failing_scontrol_is_an_event_and_the_next_round_tries_again(tmp_path):
    slurm = StandinSlurm(["node01"])
    slurm.failing = {"update", "reboot"}
    service = Service(tmp_path, slurm)
    inject(slurm, "node01", "xid", 79, "off the bus", NOW - 1)
    service.round(NOW)
    assert {"drain failed", "reboot failed"} <= {e["action"] for e in service.events}
    assert service.node("node01")["state"] == "healthy" and not service.state["breaker"]["recent"]
    slurm.failing = {"reboot"}                          # the drain goes through, the reboot fails again
    service.round(NOW + 5)
    assert slurm.nodes["node01"]["reason"] == f"{PREFIX}: reboot xid 79: off the bus"
    assert service.node("node01")["state"] != "diagnosing"          # not taken as back from a reboot never issued
    slurm.failing = set()
    service.round(NOW + 10)
    assert service.node("node01")["state"] == "rebooting" and "REBOOT_REQUESTED" in slurm.nodes["node01"]["flags"]
    assert [c[1] for c in slurm.acts() if c[1] == "reboot"] == ["reboot"] * 3
    # a failed diagnose request: the node stays rebooting and the request is made again
    slurm.rebooted("node01")
    slurm.failing = {"update"}
    service.round(NOW + 15)
    assert service.node("node01")["state"] == "rebooting"
    slurm.failing = set()
    service.round(NOW + 20)
    assert service.node("node01")["state"] == "diagnosing" and "diagnose" in slurm.nodes["node01"]["reason"]
    # a failed resume: the node stays diagnosing, the resume is made again; its return is counted once, when done
    diag(slurm, "node01", True, NOW + 22)
    slurm.failing = {"update"}
    service.round(NOW + 25)
    assert service.node("node01")["state"] == "diagnosing" and service.state["metrics"]["return_seconds"][0] == 0
    slurm.failing = set()
    service.round(NOW + 30)
    assert service.node("node01")["state"] == "healthy" and slurm.nodes["node01"]["flags"] == {"IDLE"}
    assert service.state["metrics"]["return_seconds"][0] == 1


def test_an_administrators_down_node_is_held_slurms_own_not_responding_is_not(tmp_path):
    slurm = StandinSlurm(["node01", "node02"])
    slurm.nodes["node01"].update(flags={"DOWN", "NOT_RESPONDING"}, reason="swapping NIC")     # state=down, powered off
    slurm.nodes["node02"].update(flags={"DOWN", "NOT_RESPONDING"}, reason="Not responding")   # slurmctld's own
    service = Service(tmp_path, slurm)
    for t in (0, 5, 10):
        service.round(NOW + t)
    assert service.node("node01")["state"] == "held" and slurm.nodes["node01"]["reason"] == "swapping NIC"
    assert all("node01" not in " ".join(c) for c in slurm.acts())
    assert service.node("node02")["state"] == "rebooting"


def test_a_node_clock_ahead_loses_no_later_signal_and_a_signal_is_taken_once(tmp_path):
    slurm = StandinSlurm(["node01"])
    slurm.nodes["node01"]["flags"] = {"MIXED"}
    service = Service(tmp_path, slurm)
    inject(slurm, "node01", "xid", 13, "clock a day ahead", NOW + 86400)
    service.round(NOW)
    service.round(NOW + 5)
    assert [e["code"] for e in service.events] == [13]                 # taken once, not every round
    assert service.node("node01")["seen"] <= NOW + 5
    inject(slurm, "node01", "xid", 63, "clock set right", NOW + 9)     # the node's clock corrected
    service.round(NOW + 10)
    assert service.node("node01")["state"] == "draining"


def test_nodes_held_back_by_the_breaker_take_their_action_once_a_person_resets_it(tmp_path):
    names = [f"node{i:02d}" for i in range(1, 21)]
    slurm = StandinSlurm(names)
    service = Service(tmp_path, slurm)
    for name in names[:5]:
        inject(slurm, name, "dcgm_health", None, "PCIe replay rate", NOW - 1)
    service.round(NOW)
    service.round(NOW + 5)
    assert {service.node(n)["state"] for n in names[3:5]} == {"suspect"}
    os.makedirs(service.config["state_dir"])
    remediate.save(service.config, service.state, [])
    service.state = remediate.reset_breaker(service.config, NOW + 100)
    service.round(NOW + 105)
    assert {service.node(n)["state"] for n in names[3:5]} == {"draining"}
    assert slurm.nodes["node04"]["reason"] == f"{PREFIX}: drain dcgm_health: PCIe replay rate"


def test_escalation_counts_one_per_episode_keeps_only_escalating_signals_and_the_rules_window(tmp_path):
    slurm = StandinSlurm(["node01"])
    rules = [{"signal": "xid", "codes": [79], "action": "reboot",
              "escalate": {"count": 2, "window_s": 30 * 86400, "action": "repair"}}]
    service = Service(tmp_path, slurm)
    service.config["rules"] = rules + service.config["rules"]
    inject(slurm, "node01", "xid", 79, "GPU 0 has fallen off the bus", NOW - 2)
    inject(slurm, "node01", "xid", 79, "GPU 1 has fallen off the bus", NOW - 1)      # one fault, two GPUs
    service.round(NOW)
    assert service.node("node01")["state"] == "rebooting"
    slurm.rebooted("node01")
    service.round(NOW + 5)
    diag(slurm, "node01", True, NOW + 6)
    service.round(NOW + 10)
    assert service.node("node01")["state"] == "healthy"
    for batch in range(5):                               # 80 XID 13s: the application's, never counted
        for i in range(16):
            inject(slurm, "node01", "xid", 13, "graphics exception", NOW + 20 + batch * 16 + i)
        service.round(NOW + 120 + batch)
    assert service.node("node01")["history"] == [["xid", 79, NOW - 2]]
    later = NOW + 10 * 86400                             # ten days later: within the site's 30-day window
    inject(slurm, "node01", "xid", 79, "again", later - 1)
    service.round(later)
    assert service.node("node01")["state"] == "awaiting_repair"


def test_the_reboot_timeout_counts_from_the_reboot_and_a_reboot_requeues_the_jobs_a_drain_does_not(tmp_path):
    slurm = StandinSlurm(["node01", "node02"])
    slurm.nodes["node01"]["flags"] = {"MIXED"}
    slurm.nodes["node02"]["flags"] = {"MIXED"}
    slurm.jobs = {"51": ("node01", True), "52": ("node01", False), "61": ("node02", True)}
    service = Service(tmp_path, slurm, reboot_timeout_s=600)
    inject(slurm, "node01", "xid", 79, "off the bus", NOW - 1)
    inject(slurm, "node02", "ib_link_down", None, "mlx5_2 Down", NOW - 1)
    service.round(NOW)
    assert slurm.requeued == ["51"]                      # the reboot's node: at once; the drain's: its job finishes
    requeue = [e for e in service.events if e["action"] == "requeue"]
    assert len(requeue) == 1 and "reboot: the job cannot progress" in requeue[0]["detail"]
    assert "not requeueable): 52" in requeue[0]["detail"]
    assert "its jobs finish first" in [e for e in service.events if e["node"] == "node02"][0]["detail"]
    service.round(NOW + 5)
    service.round(NOW + 3000)                            # job 52 still runs: the reboot waits, no timeout
    assert service.node("node01")["state"] == "rebooting"
    slurm.nodes["node01"]["flags"] = {"DOWN", "DRAIN", "REBOOT_ISSUED"}
    service.round(NOW + 3005)
    service.round(NOW + 3500)
    assert service.node("node01")["state"] == "rebooting"
    service.round(NOW + 3700)
    assert service.node("node01")["state"] == "awaiting_repair"


def test_a_bad_state_entry_is_dropped_with_an_event_and_a_round_failure_is_an_event(tmp_path, monkeypatch):
    slurm = StandinSlurm(["node01", "node02"])
    service = Service(tmp_path, slurm)
    service.state["nodes"] = {"node01": {"state": "draining", "since": NOW - 10, "signal": "xid", "code": 79,
                                         "action": "reboot", "evidence": []},         # no seen, no history
                              "node02": ["not", "an", "entry"]}
    service.state["updated"] = NOW - 5                                  # the last round that saved the state
    inject(slurm, "node02", "xid", 79, "fallen off the bus, a day ago", NOW - 86000)     # taken then: not again
    inject(slurm, "node01", "xid", 63, "remap", NOW - 1)                # newer than the last saved round
    service.round(NOW)
    assert [e["node"] for e in service.events if e["action"] == "dropped"] == ["node01", "node02"]
    assert service.node("node01")["state"] == "draining"                # then taken afresh
    assert service.node("node02")["state"] == "healthy" and slurm.nodes["node02"]["flags"] == {"IDLE"}
    config = tmp_path / "remediation.json"
    config.write_text(json.dumps(service.config))

    def broken(*args):
        raise KeyError("seen")
    monkeypatch.setattr(remediate, "one_round", broken)
    assert remediate.main(["--config", str(config), "--once", "--host", "ctl01"]) == 0
    events = Path(service.config["state_dir"], "events.jsonl").read_text().splitlines()
    assert json.loads(events[-1])["action"] == "round failed" and "KeyError" in events[-1]


def test_evidence_keeps_the_last_20(tmp_path):
    slurm = StandinSlurm(["node01"])
    slurm.nodes["node01"]["flags"] = {"MIXED"}
    service = Service(tmp_path, slurm)
    for batch in range(3):
        for i in range(16):
            inject(slurm, "node01", "ib_errors", None, f"symbol errors {batch}-{i}", NOW + batch * 16 + i)
        service.round(NOW + 100 + batch)
    evidence = service.node("node01")["evidence"]
    assert len(evidence) == 20 and evidence[-1] == "ib_errors: symbol errors 2-15"


def test_the_service_holds_no_copy_of_the_tables_lists_and_reads_them_from_its_config(tmp_path):
    from infra.site import healing
    source = PROGRAM.read_text()
    for names in (healing.ACTIONS, healing.STATES):
        assert ", ".join(f'"{n}"' for n in names[1:3]) not in source
    assert healing.GATE_PREFIX not in source and healing.HEAL_PREFIX not in source
    config = config_for(tmp_path)
    for key in ("actions", "states", "gate_prefix"):
        path = tmp_path / f"without-{key}.json"
        path.write_text(json.dumps({k: v for k, v in config.items() if k != key}))
        with pytest.raises(remediate.ConfigError, match=key):
            remediate.load_config(str(path))
    # the gate's prefix as the config names it: a drain by "other-gate:" is not someone else's
    slurm = StandinSlurm(["node01"])
    slurm.nodes["node01"].update(flags={"IDLE", "DRAIN"}, reason="other-gate: gpu count 7 of 8")
    service = Service(tmp_path, slurm, gate_prefix="other-gate")
    inject(slurm, "node01", "xid", 48, "DBE", NOW - 1)
    service.round(NOW)
    assert service.node("node01")["state"] == "rebooting"


def test_another_controller_in_charge_leaves_the_state_untouched(tmp_path):
    slurm = StandinSlurm(["node01"], leader="ctl02")
    inject(slurm, "node01", "xid", 79, "off the bus", NOW - 1)
    service = Service(tmp_path, slurm)
    assert service.round(NOW) is False
    assert slurm.calls == [["scontrol", "ping"]] and service.state == remediate.empty_state()


def test_once_writes_state_events_and_metrics_and_a_bad_config_exits_2(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    nodes = {"nodes": [{"name": "node01", "state": ["IDLE"], "reason": "",
                        "extra": json.dumps({"gf": {"signals": [{"signal": "xid", "code": 63, "detail": "remap",
                                                                 "at": 1.0e12}]}})}]}
    (bin_dir / "scontrol").write_text(
        "#!/bin/sh\n"
        f"echo \"$*\" >>{tmp_path}/calls\n"
        'case "$1" in ping) echo "Slurmctld(primary) at ctl01 is UP";; '
        f"show) cat {tmp_path}/nodes.json;; esac\n")
    (bin_dir / "scontrol").chmod(0o755)
    (tmp_path / "nodes.json").write_text(json.dumps(nodes))
    config = config_for(tmp_path)
    (tmp_path / "remediation.json").write_text(json.dumps(config))
    run = [sys.executable, str(PROGRAM), "--config", str(tmp_path / "remediation.json"), "--once", "--host", "ctl01",
           "--bin-dir", str(bin_dir)]
    # a signal from the future is taken (the high-water mark is the agent's clock, not ours)
    done = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    state = json.loads(Path(config["state_dir"], "state.json").read_text())
    assert state["nodes"]["node01"]["state"] == "draining"
    events = [json.loads(line) for line in Path(config["state_dir"], "events.jsonl").read_text().splitlines()]
    assert events[0]["action"] == "drain" and events[0]["rule"] == "xid 63,64 -> drain"
    assert set(events[0]) == {"at", "node", "signal", "code", "rule", "action", "from", "to", "detail"}
    metrics = (tmp_path / "remediation.prom").read_text()
    assert 'gigafactory_remediation_nodes{state="draining"} 1' in metrics
    assert "gigafactory_remediation_breaker_open 0" in metrics and "gigafactory_remediation_drain_seconds_count 1" in metrics
    assert "update NodeName=node01 State=DRAIN Reason=gigafactory-heal: drain xid 63: remap" in (tmp_path / "calls").read_text()
    (tmp_path / "remediation.json").write_text(json.dumps({**config, "breaker": {"share": "lots"}}))
    bad = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "breaker.share: expected a number" in bad.stderr and "Traceback" not in bad.stderr


def test_a_passing_diagnosis_does_not_resume_a_node_whose_reason_is_no_longer_ours(tmp_path):
    slurm = StandinSlurm(["node01"])
    service = Service(tmp_path, slurm)
    inject(slurm, "node01", "dcgm_health", None, "x", NOW - 1)
    service.round(NOW)
    service.round(NOW + 5)
    assert service.node("node01")["state"] == "diagnosing"
    slurm.nodes["node01"]["reason"] = "gigafactory-health: gpu count 7 of 8"     # the acceptance gate drained it since
    diag(slurm, "node01", True, NOW + 6)
    service.round(NOW + 10)
    assert not [c for c in slurm.acts() if "State=RESUME" in c] and "DRAIN" in slurm.nodes["node01"]["flags"]


def test_a_quiet_fleets_first_round_writes_its_state_for_health_to_read(tmp_path, capsys):
    """No signal anywhere: the first round still writes state.json (all healthy, breaker closed), so `gigafactory
    health` on a freshly provisioned site reports the fleet instead of a missing file; later quiet rounds write nothing."""
    from conftest import DEMO

    from infra.cli import main as gigafactory
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(
        "#!/bin/sh\n"
        'case "$1" in ping) echo "Slurmctld(primary) at ctl01 is UP";; '
        'show) echo \'{"nodes": [{"name": "node01", "state": ["IDLE"], "reason": "", "extra": ""}]}\';; esac\n')
    (bin_dir / "scontrol").chmod(0o755)
    config = config_for(tmp_path)
    (tmp_path / "remediation.json").write_text(json.dumps(config))
    run = [sys.executable, str(PROGRAM), "--config", str(tmp_path / "remediation.json"), "--once", "--host", "ctl01",
           "--bin-dir", str(bin_dir)]
    assert subprocess.run(run, capture_output=True, text=True, timeout=60).returncode == 0
    saved = Path(config["state_dir"], "state.json")
    first = saved.read_text()
    assert json.loads(first)["nodes"] == {} and json.loads(first)["breaker"]["open"] is False
    assert subprocess.run(run, capture_output=True, text=True, timeout=60).returncode == 0
    assert saved.read_text() == first                       # nothing new: not written again
    assert gigafactory(["health", str(DEMO), "--state", config["state_dir"], "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["breaker"]["open"] is False, report
