"""``gigafactory health``: the remediation service's state.json and events.jsonl (docs/healing.md) read as hostile
input; the fleet by state, the breaker, the last events and the hardware repair list with racks from the plan."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from conftest import DEMO, RIGA, site_data

from infra.cli import EXIT_INVALID, EXIT_OK, main
from infra.orchestrate.rollout import CommandResult

T0 = 1_796_000_000.0

STATE = {
    "version": 1, "updated": T0 + 100,
    "breaker": {"open": False, "since": None, "flagged": 2, "reason": None},
    "nodes": {
        "gpu0001": {"state": "awaiting_repair", "since": T0 + 50, "signal": "xid", "code": 79, "action": "repair",
                    "evidence": ["xid 79 at 2026-12-01: GPU has fallen off the bus", "xid 79 again after reboot"],
                    "seen": T0 + 40, "history": [["xid", 79, T0], ["xid", 79, T0 + 40]]},
        "gpu0002": {"state": "draining", "since": T0 + 60, "signal": "ib_link_down", "code": None, "action": "drain",
                    "evidence": ["rail 3 Down"], "seen": T0 + 60, "history": [["ib_link_down", None, T0 + 60]]},
        "gpu0003": {"state": "held", "since": T0 + 70, "signal": None, "code": None, "action": None,
                    "evidence": ["drained by root: cable swap"], "seen": 0, "history": []},
        "gpu0004": {"state": "healthy", "since": T0, "signal": None, "code": None, "action": None, "evidence": [],
                    "seen": T0, "history": []},
        "old-node7": {"state": "awaiting_repair", "since": T0 + 80, "signal": "dcgm_diag", "code": 2, "action": "repair",
                      "evidence": ["dcgmi diag -r 2 failed"], "seen": T0 + 80, "history": []},
    },
}


def event(n: int, **fields) -> dict:
    return {"at": T0 + n, "node": "gpu0001", "signal": "xid", "code": 79, "rule": "xid 79 -> reboot",
            "action": "drain", "from": "healthy", "to": "draining", "detail": f"event {n}", **fields}


EVENTS = [event(n) for n in range(25)] + [
    {"at": T0 + 30, "node": None, "signal": None, "code": None, "rule": None, "action": "breaker_open",
     "from": None, "to": None, "detail": "12 nodes flagged in 600 s"}]


def write_state(folder: Path, state=STATE, events=EVENTS, *, raw_state: str | None = None,
                raw_events: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "state.json").write_text(raw_state if raw_state is not None else json.dumps(state))
    (folder / "events.jsonl").write_text(raw_events if raw_events is not None
                                         else "".join(json.dumps(e) + "\n" for e in events))
    return folder


def health(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["health", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_the_fleet_by_state_breaker_events_and_repair_list(tmp_path, capsys):
    rc, out, err = health(capsys, str(RIGA), "--state", str(write_state(tmp_path / "s")))
    assert (rc, err) == (EXIT_OK, "")
    lines = out.splitlines()
    slurm_nodes = 96                                                   # riga-1's training pool
    assert f"  {'healthy':<26}{slurm_nodes - 3:>8}" in lines          # gpu0001-0003 are not; old-node7 is no plan node
    assert f"  {'awaiting hardware repair':<26}{2:>8}" in lines
    assert f"  {'held by a person':<26}{1:>8}" in lines
    assert "breaker: closed, 2 flagged" in lines
    assert "last events (20):" in lines
    assert sum(" event " in line or "breaker_open" in line for line in lines) == 20
    assert "  2026-11-30 00:53:50Z  (fleet)  breaker_open 12 nodes flagged in 600 s" in lines
    repair = lines[lines.index("hardware repair (2):") + 1:]
    assert repair[0].split()[:3] == ["gpu0001", "a01", "U1"] and "GPU has fallen off the bus; xid 79 again" in repair[0]
    assert repair[1].split()[:3] == ["old-node7", "unknown", "-"]


def test_json_is_the_same_report(tmp_path, capsys):
    rc, out, _ = health(capsys, str(RIGA), "--json", "--state", str(write_state(tmp_path / "s")))
    report = json.loads(out)
    assert rc == EXIT_OK
    assert report["states"] == {"healthy": 93, "suspect": 0, "draining": 1, "rebooting": 0, "diagnosing": 0,
                                "awaiting_repair": 2, "held": 1}
    assert report["breaker"] == STATE["breaker"]
    assert [e["detail"] for e in report["events"]][-2:] == ["event 24", "12 nodes flagged in 600 s"]
    assert len(report["events"]) == 20
    assert [(r["node"], r["rack"], r["rack_unit"], r["evidence"]) for r in report["repair"]] == [
        ("gpu0001", "a01", 1, STATE["nodes"]["gpu0001"]["evidence"]),
        ("old-node7", "unknown", None, ["dcgmi diag -r 2 failed"])]


def test_an_open_breaker_and_no_events_yet(tmp_path, capsys):
    state = copy.deepcopy(STATE)
    state["breaker"] = {"open": True, "since": T0, "flagged": 14, "reason": "14 of 256 nodes flagged in 600 s"}
    folder = write_state(tmp_path / "s", state)
    (folder / "events.jsonl").unlink()
    rc, out, _ = health(capsys, str(RIGA), "--state", str(folder))
    assert rc == EXIT_OK
    assert "breaker: OPEN since 2026-11-30 00:53:20Z, 14 flagged: 14 of 256 nodes flagged in 600 s" in out
    assert "last events (0):" in out


def _set(path: str, value):
    def change(state: dict) -> None:
        *parents, last = path.split(".")
        here = state
        for step in parents:
            here = here[step]
        here[last] = value
    return change


def _delete(path: str):
    def change(state: dict) -> None:
        *parents, last = path.split(".")
        here = state
        for step in parents:
            here = here[step]
        del here[last]
    return change


# (a change to state.json, the field the error names, words of its message)
MALFORMED_STATE = {
    "version 2": (_set("version", 2), "version", "expected 1"),
    "a list": (lambda s: s.clear() or s.update(version=1, updated=T0, breaker=[], nodes={}), "breaker", "expected an object"),
    "updated missing": (_delete("updated"), "updated", "missing"),
    "updated text": (_set("updated", "yesterday"), "updated", "unix seconds"),
    "updated huge": (_set("updated", 10**400), "updated", "unix seconds"),
    "updated negative": (_set("updated", -1), "updated", "unix seconds"),
    "updated a bool": (_set("updated", True), "updated", "unix seconds"),
    "breaker open text": (_set("breaker.open", "no"), "breaker.open", "true or false"),
    "flagged negative": (_set("breaker.flagged", -3), "breaker.flagged", "whole number"),
    "flagged float": (_set("breaker.flagged", 2.5), "breaker.flagged", "whole number"),
    "nodes a list": (_set("nodes", ["gpu0001"]), "nodes", "expected an object of nodes"),
    "unknown state": (_set("nodes.gpu0002.state", "on_fire"), "nodes.gpu0002.state", "none of healthy, suspect"),
    "state a number": (_set("nodes.gpu0002.state", 3), "nodes.gpu0002.state", "expected text"),
    "unknown action": (_set("nodes.gpu0002.action", "explode"), "nodes.gpu0002.action", "none of ignore"),
    "code huge": (_set("nodes.gpu0001.code", 2**70), "nodes.gpu0001.code", "from 0 to 65535"),
    "since missing": (_delete("nodes.gpu0001.since"), "nodes.gpu0001.since", "missing"),
    "evidence text": (_set("nodes.gpu0001.evidence", "broken"), "nodes.gpu0001.evidence", "list of texts"),
    "evidence numbers": (_set("nodes.gpu0001.evidence", [1, 2]), "nodes.gpu0001.evidence", "list of texts"),
    "node an int": (_set("nodes.gpu0001", 7), "nodes.gpu0001", "expected an object"),
    "node name with controls": (_set("nodes.gpu\u001b[2J", STATE["nodes"]["gpu0002"]), "nodes", "not a node name"),
}


@pytest.mark.parametrize("change, field, words", MALFORMED_STATE.values(), ids=list(MALFORMED_STATE))
def test_a_malformed_state_is_exit_2_naming_the_file_and_field(tmp_path, capsys, change, field, words):
    state = copy.deepcopy(STATE)
    change(state)
    folder = write_state(tmp_path / "s", state)
    rc, out, err = health(capsys, str(DEMO), "--state", str(folder))
    assert (rc, out) == (EXIT_INVALID, "")
    assert err.startswith(f"gigafactory health: {folder}/state.json: {field}: ") and words in err, err
    assert "Traceback" not in err and "\x1b" not in err


RAW = {
    "not JSON": ("{version: 1", "(top level)", "not valid JSON"),
    "NaN": (json.dumps(STATE).replace(str(T0 + 100), "NaN"), "(top level)", "NaN is not a number"),
    "Infinity": (json.dumps(STATE).replace(str(T0 + 100), "Infinity"), "(top level)", "Infinity is not a number"),
    "empty": ("", "(top level)", "not valid JSON"),
    "a list": ("[1, 2]", "(top level)", "expected an object"),
    "deep": ("[" * 100_000 + "]" * 100_000, "(top level)", "not valid JSON"),
}


@pytest.mark.parametrize("text, field, words", RAW.values(), ids=list(RAW))
def test_state_that_is_no_json_object_is_exit_2(tmp_path, capsys, text, field, words):
    folder = write_state(tmp_path / "s", raw_state=text)
    rc, _, err = health(capsys, str(DEMO), "--state", str(folder))
    assert rc == EXIT_INVALID
    assert err.startswith(f"gigafactory health: {folder}/state.json: {field}: ") and words in err, err


MALFORMED_EVENTS = {
    "broken line": ('{"at": 1', "line 27", "not valid JSON"),
    "at text": (json.dumps(event(1, at="now")), "line 27.at", "unix seconds"),
    "action missing": (json.dumps({k: v for k, v in event(1).items() if k != "action"}), "line 27.action", "missing"),
    "unknown to": (json.dumps(event(1, to="limbo")), "line 27.to", "none of healthy"),
    "code negative": (json.dumps(event(1, code=-79)), "line 27.code", "from 0 to 65535"),
    "detail a list": (json.dumps(event(1, detail=["a"])), "line 27.detail", "expected text"),
    "a number": ("42", "line 27", "expected an object"),
}


@pytest.mark.parametrize("line, field, words", MALFORMED_EVENTS.values(), ids=list(MALFORMED_EVENTS))
def test_a_malformed_event_is_exit_2_naming_its_line_and_field(tmp_path, capsys, line, field, words):
    raw = "".join(json.dumps(e) + "\n" for e in EVENTS) + line + "\n"
    folder = write_state(tmp_path / "s", raw_events=raw)
    rc, _, err = health(capsys, str(DEMO), "--state", str(folder))
    assert rc == EXIT_INVALID
    assert err.startswith(f"gigafactory health: {folder}/events.jsonl: {field}: ") and words in err, err


def test_text_from_the_state_cannot_drive_the_terminal(tmp_path, capsys):
    state = copy.deepcopy(STATE)
    state["nodes"]["gpu0001"]["evidence"] = ["\x1b]0;owned\x07 xid 79\nfake line"]
    rc, out, _ = health(capsys, str(RIGA), "--state", str(write_state(tmp_path / "s", state)))
    assert rc == EXIT_OK
    assert "\x1b" not in out and "\x07" not in out and "\\x1b]0;owned\\x07 xid 79\\nfake line" in out


def test_a_missing_state_directory_or_file_is_exit_2(tmp_path, capsys):
    rc, _, err = health(capsys, str(DEMO), "--state", str(tmp_path / "nowhere"))
    assert rc == EXIT_INVALID and f"{tmp_path / 'nowhere'}/state.json: (file): not found" in err


def test_a_site_without_remediation_is_exit_2(tmp_path, capsys):
    data = site_data(DEMO)
    data["remediation"] = {"enabled": False}
    site = tmp_path / "site.yml"
    site.write_text(yaml.safe_dump(data))
    rc, _, err = health(capsys, str(site), "--state", str(write_state(tmp_path / "s")))
    assert rc == EXIT_INVALID and "remediation: the site runs no remediation service" in err


class FakeControl:
    """Stands in for ansible-runner's ad-hoc command on the controller: records each argv, answers from files."""

    def __init__(self, folder: Path, answers: dict[str, CommandResult] | None = None):
        self.folder, self.answers, self.argvs = folder, answers or {}, []

    def run(self, argv):
        self.argvs.append(list(argv))
        name = Path(argv[-1]).name
        if name in self.answers:
            return self.answers[name]
        lines = (self.folder / name).read_text().splitlines(keepends=True)
        return CommandResult(0, "".join(lines[-int(argv[2]):] if argv[0] == "tail" else lines), "")


def test_without_state_it_reads_the_first_controller_with_argv_commands(tmp_path, capsys, monkeypatch):
    import infra.cli as cli
    control = FakeControl(write_state(tmp_path / "s"))
    hosts = []
    monkeypatch.setattr(cli, "node_control",
                        lambda host, inventories, private, become_user: hosts.append((host, become_user)) or control)
    rc, out, err = health(capsys, str(RIGA), "--json")
    assert (rc, err) == (EXIT_OK, "")
    assert hosts == [("ctl01", "slurm")]        # as Slurm's user: StateSaveLocation is often NFS squashing root
    folder = "/var/spool/slurmctld/gigafactory-remediation"
    assert control.argvs == [["cat", "--", f"{folder}/state.json"], ["tail", "-n", "20", "--", f"{folder}/events.jsonl"]]
    report = json.loads(out)
    assert report["source"] == f"ctl01:{folder}" and len(report["events"]) == 20 and report["states"]["held"] == 1


def test_a_controller_without_state_is_exit_2(tmp_path, capsys, monkeypatch):
    import infra.cli as cli
    control = FakeControl(tmp_path, {"state.json": CommandResult(1, "", "cat: state.json: No such file or directory")})
    monkeypatch.setattr(cli, "node_control", lambda host, inventories, private, become_user: control)
    rc, _, err = health(capsys, str(DEMO))
    assert rc == EXIT_INVALID
    assert "ctl01:/var/spool/slurmctld/gigafactory-remediation/state.json: (file): cannot read it (rc 1): cat:" in err
