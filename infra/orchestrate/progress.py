"""Progress of a run from ansible-runner's event stream: a live ``rich`` table on a terminal, a line per event otherwise."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

from ..runner.ansible import failure_message
from .state import HostResult

HOST_EVENTS = {"runner_on_ok": "ok", "runner_on_failed": "FAILED", "runner_on_unreachable": "UNREACHABLE",
               "runner_on_skipped": "skipped"}


class Progress(Protocol):
    def phase_start(self, phase: str, hosts: list[str], waves: int) -> None: ...
    def wave_start(self, phase: str, wave: int, hosts: list[str]) -> None: ...
    def event(self, phase: str, event: dict[str, Any]) -> None: ...
    def wave_end(self, phase: str, ok: list[str], failed: list[str]) -> None: ...
    def phase_end(self, phase: str, note: str) -> None: ...
    def message(self, text: str) -> None: ...
    def waiting(self, waits: dict[str, tuple[str, float]]) -> None: ...   # rollout: node -> (what for, seconds)
    def close(self) -> None: ...


WAIT_REPEAT_S = 60   # LineProgress repeats an unchanged list of waiting nodes this often


def waiting_text(waits: dict[str, tuple[str, float]], most: int = 8) -> str:
    """``node01 (jobs (MIXED+DRAIN), 1m15s), ...``: the nodes a rollout waits for, longest wait first."""
    items = sorted(waits.items(), key=lambda kv: -kv[1][1])
    text = ", ".join(f"{node} ({what}, {_duration(s)})" for node, (what, s) in items[:most])
    return text + (f" and {len(items) - most} more" if len(items) > most else "")


def _duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


@dataclass
class PhaseRow:
    name: str
    hosts: int = 0
    waves: int = 0
    wave: int = 0
    done: int = 0
    failed: set[str] = field(default_factory=set)
    task: str = ""
    note: str = "waiting"


class LiveProgress:
    """A ``rich`` table, one row per phase: hosts done / failed / remaining and the current task."""

    def __init__(self, phases: list[str], console: Console | None = None):
        self.console = console or Console()
        self.rows = {p: PhaseRow(p) for p in phases}
        self.live = Live(self._table(), console=self.console, refresh_per_second=8, transient=False)
        self.live.start()

    def _table(self) -> Table:
        t = Table(title="gigafactory up", expand=False)
        for col in ("phase", "wave", "done", "failed", "remaining", "current task"):
            t.add_column(col, justify="right" if col in ("done", "failed", "remaining") else "left")
        for r in self.rows.values():
            remaining = max(0, r.hosts - r.done - len(r.failed))
            wave = f"{r.wave}/{r.waves}" if r.waves else ""
            t.add_row(r.name, wave, str(r.done), f"[red]{len(r.failed)}[/red]" if r.failed else "0",
                      str(remaining), r.task or r.note)
        return t

    def _refresh(self) -> None:
        self.live.update(self._table())

    def phase_start(self, phase: str, hosts: list[str], waves: int) -> None:
        row = self.rows.setdefault(phase, PhaseRow(phase))
        row.hosts, row.waves, row.note = len(hosts), waves, "running"
        self._refresh()

    def wave_start(self, phase: str, wave: int, hosts: list[str]) -> None:
        self.rows[phase].wave = wave
        self._refresh()

    def event(self, phase: str, event: dict[str, Any]) -> None:
        row, data = self.rows[phase], event.get("event_data") or {}
        if event.get("event") == "playbook_on_task_start":
            row.task = data.get("task", "")
        elif event.get("event") in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
            row.failed.add(data.get("host", ""))
        else:
            return
        self._refresh()

    def wave_end(self, phase: str, ok: list[str], failed: list[str]) -> None:
        row = self.rows[phase]
        row.done += len(ok)
        row.failed = (row.failed - set(ok)) | set(failed)   # a rescued failure is not a failure
        self._refresh()

    def phase_end(self, phase: str, note: str) -> None:
        row = self.rows.setdefault(phase, PhaseRow(phase))
        row.note, row.task = note, ""
        self._refresh()

    def message(self, text: str) -> None:
        self.live.console.print(text)

    def waiting(self, waits: dict[str, tuple[str, float]]) -> None:
        row = self.rows.setdefault("rollout", PhaseRow("rollout"))
        row.task = f"waiting for {waiting_text(waits)}" if waits else ""
        row.note = "rolling out"
        self.live.update(self._table(), refresh=True)     # once a poll: drawn now, however short the wait

    def close(self) -> None:
        self.live.stop()


class LineProgress:
    """One plain line per event, for CI and logs."""

    def __init__(self, out: TextIO | None = None, clock=None):
        import time
        self.out = out or sys.stdout
        self.clock = clock or time.monotonic
        self._waits: tuple[frozenset, float] = (frozenset(), 0.0)

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def phase_start(self, phase: str, hosts: list[str], waves: int) -> None:
        self._say(f"[{phase}] start: {len(hosts)} hosts in {waves} wave{'s' if waves != 1 else ''}")

    def wave_start(self, phase: str, wave: int, hosts: list[str]) -> None:
        self._say(f"[{phase}] wave {wave}: {len(hosts)} hosts")

    def event(self, phase: str, event: dict[str, Any]) -> None:
        kind, data = event.get("event"), event.get("event_data") or {}
        if kind == "playbook_on_task_start":
            self._say(f"[{phase}] task: {data.get('task', '')}")
        elif kind in HOST_EVENTS and data.get("host"):
            res = data.get("res") or {}
            state = HOST_EVENTS[kind]
            if kind == "runner_on_ok" and res.get("changed"):
                state = "changed"
            if kind == "runner_on_failed" and data.get("ignore_errors"):
                state = "failed (ignored)"
            line = f"[{phase}] {data['host']}: {state}: {data.get('task', '')}"
            if kind in ("runner_on_failed", "runner_on_unreachable"):
                line += f": {failure_message(res)}"
            self._say(line)

    def wave_end(self, phase: str, ok: list[str], failed: list[str]) -> None:
        self._say(f"[{phase}] wave done: {len(ok)} ok, {len(failed)} failed")

    def phase_end(self, phase: str, note: str) -> None:
        self._say(f"[{phase}] {note}")

    def message(self, text: str) -> None:
        self._say(text)

    def waiting(self, waits: dict[str, tuple[str, float]]) -> None:
        """A line when the waiting nodes (or what they wait for) change, else at most every WAIT_REPEAT_S."""
        key, now = frozenset((n, what) for n, (what, _) in waits.items()), self.clock()
        if waits and (key != self._waits[0] or now - self._waits[1] >= WAIT_REPEAT_S):
            self._say(f"[rollout] waiting for {waiting_text(waits)}")
            self._waits = (key, now)
        elif not waits:
            self._waits = (frozenset(), 0.0)

    def close(self) -> None:
        pass


def progress_for(phases: list[str], out: TextIO | None = None) -> Progress:
    """Live table when ``out`` is a terminal, plain lines otherwise."""
    out = out or sys.stdout
    if out.isatty():
        return LiveProgress(phases, Console(file=out))
    return LineProgress(out)


def summary_table(hosts: dict[str, HostResult]) -> Table:
    t = Table(title="summary")
    for col in ("host", "status", "phase reached", "changed", "failed task", "message"):
        t.add_column(col, justify="right" if col == "changed" else "left", overflow="fold")
    for r in hosts.values():
        style = {"ok": "green", "pending": "yellow"}.get(r.status, "red")
        t.add_row(r.name, f"[{style}]{r.status}[/{style}]", r.phase or "-", str(r.changed),
                  r.failed_task or "", r.message or "")
    return t


def print_summary(hosts: dict[str, HostResult], out: TextIO | None = None) -> None:
    out = out or sys.stdout
    console = Console(file=out, width=None if out.isatty() else 160)
    console.print(summary_table(hosts))
