"""``gigafactory health``: the remediation service's state and events (docs/healing.md) read as hostile input, and the
fleet by state, the breaker, the last events and the hardware repair list, with each node's rack from the plan."""

from __future__ import annotations

import json
import math
import re
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from ..plan import Plan
from ..site.healing import ACTIONS, STATES
from ..site.problems import printable

LABELS = {"healthy": "healthy", "suspect": "suspect", "draining": "draining", "rebooting": "rebooting",
          "diagnosing": "diagnosing", "awaiting_repair": "awaiting hardware repair", "held": "held by a person"}
LAST_EVENTS = 20
TIME_MAX = 10**11                # unix seconds: beyond the year 5000 is no time the service wrote
COUNT_MAX = 2**31 - 1
CODE_MAX = 65535
TEXT_MAX = 4096
NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$")


class HealthInvalid(Exception):
    """A state file is not what the remediation service writes: the file, the field and what was wrong."""

    def __init__(self, source: str, field: str, message: str):
        super().__init__(printable(f"{source}: {field}: {message}"))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON holds")


class _Fields:
    """Typed reads of one JSON object of ``source``, each failure naming the field's path."""

    def __init__(self, source: str, path: str, value: Any):
        if not isinstance(value, dict):
            raise HealthInvalid(source, path or "(top level)", f"expected an object, got {_kind(value)}")
        self.source, self.path, self.value = source, path, value

    def _where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _fail(self, key: str, message: str) -> HealthInvalid:
        return HealthInvalid(self.source, self._where(key), message)

    def get(self, key: str, kind: str, *, optional: bool = False, choices: Iterable[str] = ()) -> Any:
        if key not in self.value:
            if optional:
                return None
            raise self._fail(key, "missing")
        value = self.value[key]
        if value is None and optional:
            return None
        if kind == "time":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= TIME_MAX:
                raise self._fail(key, f"expected unix seconds from 0 to {TIME_MAX}, got {_shown(value)}")
            return float(value)
        if kind in ("count", "code"):
            top = COUNT_MAX if kind == "count" else CODE_MAX
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
                raise self._fail(key, f"expected a whole number from 0 to {top}, got {_shown(value)}")
            return value
        if kind == "bool":
            if not isinstance(value, bool):
                raise self._fail(key, f"expected true or false, got {_shown(value)}")
            return value
        if kind == "text":
            if not isinstance(value, str) or len(value) > TEXT_MAX:
                raise self._fail(key, f"expected text of at most {TEXT_MAX} characters, got {_shown(value)}")
            choices = tuple(choices)
            if choices and value not in choices:
                raise self._fail(key, f"{_shown(value)} is none of {', '.join(choices)}")
            return value
        raise AssertionError(kind)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _json(text: str, source: str, where: str) -> Any:
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as err:
        raise HealthInvalid(source, where, f"not valid JSON ({err})") from None


def read_state(text: str, source: str = "state.json") -> dict[str, Any]:
    """state.json (docs/healing.md), checked field by field: its breaker and its nodes by name."""
    top = _Fields(source, "", _json(text, source, "(top level)"))
    if top.value.get("version") != 1:
        raise HealthInvalid(source, "version", f"expected 1, got {_shown(top.value.get('version'))}")
    b = _Fields(source, "breaker", top.value.get("breaker"))
    breaker = {"open": b.get("open", "bool"), "since": b.get("since", "time", optional=True),
               "flagged": b.get("flagged", "count"), "reason": b.get("reason", "text", optional=True)}
    nodes_value = top.value.get("nodes")
    if not isinstance(nodes_value, dict):
        raise HealthInvalid(source, "nodes", f"expected an object of nodes by name, got {_kind(nodes_value)}")
    nodes = {}
    for name, value in nodes_value.items():
        if not NODE_NAME.fullmatch(name):
            raise HealthInvalid(source, "nodes", f"{_shown(name)} is not a node name")
        nodes[name] = _node(_Fields(source, f"nodes.{name}", value))
    return {"updated": top.get("updated", "time"), "breaker": breaker, "nodes": nodes}


def _node(f: _Fields) -> dict[str, Any]:
    evidence = f.value.get("evidence", [])
    if not isinstance(evidence, list) or len(evidence) > 1000 or not all(isinstance(e, str) and len(e) <= TEXT_MAX
                                                                        for e in evidence):
        raise HealthInvalid(f.source, f"{f.path}.evidence", "expected a list of texts (at most 1000)")
    return {"state": f.get("state", "text", choices=STATES), "since": f.get("since", "time"),
            "signal": f.get("signal", "text", optional=True), "code": f.get("code", "code", optional=True),
            "action": f.get("action", "text", optional=True, choices=ACTIONS), "evidence": evidence}


def read_events(lines: Iterable[str], source: str = "events.jsonl", last: int = LAST_EVENTS) -> list[dict[str, Any]]:
    """The last ``last`` events of events.jsonl, each checked; a blank line is skipped."""
    kept: deque[tuple[int, str]] = deque(maxlen=last)
    for number, line in enumerate(lines, 1):
        if line.strip():
            kept.append((number, line))
    events = []
    for number, line in kept:
        f = _Fields(source, f"line {number}", _json(line, source, f"line {number}"))
        events.append({"at": f.get("at", "time"), "node": f.get("node", "text", optional=True),
                       "signal": f.get("signal", "text", optional=True), "code": f.get("code", "code", optional=True),
                       "rule": f.get("rule", "text", optional=True), "action": f.get("action", "text"),
                       "from": f.get("from", "text", optional=True, choices=STATES),
                       "to": f.get("to", "text", optional=True, choices=STATES), "detail": f.get("detail", "text")})
    return events


def health_report(plan: Plan, state: dict[str, Any], events: list[dict[str, Any]], source: str) -> dict[str, Any]:
    """The fleet by state (healthy: the plan's Slurm nodes the state names in no other state), the breaker, the
    events, and each node awaiting repair with its rack and rack unit (rack "unknown" for a name not in the plan)."""
    slurm_nodes = set(plan.groups.get("slurm_compute", ()))
    counts = dict.fromkeys(STATES, 0)
    listed = []
    for name, node in sorted(state["nodes"].items()):
        if node["state"] == "healthy":
            continue
        counts[node["state"]] += 1
        host = plan.hosts.get(name)
        listed.append({"node": name, **node, "rack": host.rack if host else "unknown",
                       "rack_unit": host.rack_unit if host else None})
    counts["healthy"] = len(slurm_nodes - {n["node"] for n in listed})
    return {"site": plan.site, "source": source, "updated": state["updated"], "states": counts,
            "breaker": state["breaker"], "nodes": listed, "events": events,
            "repair": [{k: n[k] for k in ("node", "rack", "rack_unit", "since", "signal", "code", "evidence")}
                       for n in listed if n["state"] == "awaiting_repair"]}


def _when(seconds: float | None) -> str:
    return "-" if seconds is None else time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(seconds))


def as_text(report: dict[str, Any]) -> str:
    """The report for people: every string from the state files made printable (no terminal controls)."""
    out = [f"{report['site']}: the healing fleet, state of {_when(report['updated'])} ({report['source']})", ""]
    out += [f"  {LABELS[s]:<26}{n:>8}" for s, n in report["states"].items()]
    b = report["breaker"]
    out += ["", f"breaker: {'OPEN since ' + _when(b['since']) if b['open'] else 'closed'}, {b['flagged']} flagged"
                + (f": {b['reason']}" if b["reason"] else "")]
    out += ["", f"last events ({len(report['events'])}):"]
    for e in report["events"]:
        what = " ".join(str(x) for x in (e["signal"], e["code"]) if x is not None)
        move = f" ({e['from'] or '-'} -> {e['to'] or '-'})" if e["from"] or e["to"] else ""
        rule = f" [{e['rule']}]" if e["rule"] else ""
        out.append(f"  {_when(e['at'])}  {e['node'] or '(fleet)'}  {what + ': ' if what else ''}{e['action']}{move}"
                   f"{rule} {e['detail']}".rstrip())
    out += ["", f"hardware repair ({len(report['repair'])}):"]
    for r in report["repair"]:
        unit = f"U{r['rack_unit']}" if r["rack_unit"] else "-"
        out.append(f"  {r['node']:<16}{r['rack']:<10}{unit:<6}since {_when(r['since'])}  {'; '.join(r['evidence']) or '-'}")
    return "\n".join(printable(line) for line in out) + "\n"
