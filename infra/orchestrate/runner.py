"""One wave of one phase: ``ansible-playbook`` through ansible-runner's Python API, its event stream condensed per host."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from collections.abc import Callable

import ansible_runner

EventSink = Callable[[dict[str, Any]], None]
LIMIT_INLINE_MAX = 100   # more hosts than this go to --limit @file


@dataclass
class HostFailure:
    task: str | None
    message: str
    unreachable: bool = False


@dataclass
class WaveResult:
    hosts: list[str]
    failed: dict[str, HostFailure] = field(default_factory=dict)
    changed: dict[str, int] = field(default_factory=dict)
    rc: int | None = None
    status: str = ""
    ansible_seconds: float = 0.0     # first event to the play recap
    task_seconds: float = 0.0        # inside tasks: each task start to the next task start or the recap

    @property
    def ok(self) -> list[str]:
        return [h for h in self.hosts if h not in self.failed]


def _when(event: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(event["created"])
    except (KeyError, TypeError, ValueError):
        return None


def failure_message(res: dict[str, Any]) -> str:
    """The most useful line of a failed task's result (already censored by ansible-runner for no_log tasks)."""
    if "censored" in res:
        return str(res["censored"])
    for key in ("msg", "stderr", "reason", "module_stderr", "stdout"):
        value = res.get(key)
        if value:
            text = str(value).strip()
            return text if len(text) <= 500 else text[:497] + "..."
    return "failed"


def censor_no_log_stdout(event: dict[str, Any]) -> None:
    """Keep only the censored result line in the display text of a no_log task's event (changed in place).

    ansible-runner censors a no_log result (``event_data.res``), but with ansible-core 2.19 the display text of a
    failed no_log task still carries the error ("[ERROR]: Task failed: Action failed: <msg>"), secrets included.
    The event is written to ``job_events/`` and its text to ``stdout`` after this handler, so both stay clean.
    """
    res = (event.get("event_data") or {}).get("res")
    if isinstance(res, dict) and "censored" in res and event.get("stdout"):
        kept = [line for line in event["stdout"].splitlines() if "censored" in line]
        event["stdout"] = "\n".join(kept)


class _Collector:
    """Feeds every event to the progress display and keeps what the run needs to know."""

    def __init__(self, result: WaveResult, sink: EventSink):
        self.result, self.sink = result, sink
        self.last_failure: dict[str, HostFailure] = {}
        self.stats: dict[str, Any] | None = None
        self.first: datetime | None = None
        self.task_started: datetime | None = None

    def _close_task(self, at: datetime | None) -> None:
        if self.task_started and at:
            self.result.task_seconds += max(0.0, (at - self.task_started).total_seconds())
        self.task_started = None

    def __call__(self, event: dict[str, Any]) -> bool:
        kind, data = event.get("event"), event.get("event_data") or {}
        censor_no_log_stdout(event)
        at = _when(event)
        if self.first is None and at:
            self.first = at
        if kind == "playbook_on_task_start":
            self._close_task(at)
            self.task_started = at
        elif kind in ("runner_on_failed", "runner_on_unreachable") and data.get("host"):
            if not data.get("ignore_errors"):
                self.last_failure[data["host"]] = HostFailure(
                    data.get("task"), failure_message(data.get("res") or {}), kind == "runner_on_unreachable")
        elif kind == "playbook_on_stats":
            self._close_task(at)
            self.stats = data
            if self.first and at:
                self.result.ansible_seconds = (at - self.first).total_seconds()
        self.sink(event)
        return True


def run_wave(*, playbook: Path, inventories: list[Path], hosts: list[str], private_data_dir: Path, ident: str,
             ansible_config: Path, extravars: dict[str, Any], check: bool, sink: EventSink) -> WaveResult:
    """Run ``playbook`` limited to ``hosts``; every host the recap counts as failed or unreachable is in ``.failed``."""
    result = WaveResult(hosts=list(hosts))
    collect = _Collector(result, sink)
    private_data_dir.mkdir(parents=True, exist_ok=True)
    limit = ",".join(hosts)
    if len(hosts) > LIMIT_INLINE_MAX:
        limit_file = private_data_dir / f"{ident}.limit"
        limit_file.write_text("\n".join(hosts) + "\n", encoding="utf-8")
        limit = f"@{limit_file}"
    envvars = {
        "ANSIBLE_CONFIG": str(ansible_config),
        # ansible-playbook and the site inventory plugin must see this interpreter's packages.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        # ansible-runner turns host key checking off unless told; the project's ansible.cfg keeps it on.
        "ANSIBLE_HOST_KEY_CHECKING": os.environ.get("ANSIBLE_HOST_KEY_CHECKING", "True"),
    }
    runner = ansible_runner.run(
        private_data_dir=str(private_data_dir), ident=ident, project_dir=str(playbook.parent),
        playbook=str(playbook), inventory=[str(i) for i in inventories], limit=limit,
        extravars=extravars, cmdline="--check --diff" if check else None, envvars=envvars,
        event_handler=collect, quiet=True, suppress_env_files=True,
        # Not "jsonfile": ansible-runner would point the fact cache into this run's artifacts, defeating
        # ansible.cfg's cross-run cache (gathering = smart).
        fact_cache_type="ansible.cfg",
    )
    result.rc, result.status = runner.rc, runner.status
    stats = collect.stats or {}
    for host in hosts:
        result.changed[host] = int((stats.get("changed") or {}).get(host, 0))
        counted = host in (stats.get("failures") or {}) or host in (stats.get("dark") or {})
        if counted:
            result.failed[host] = collect.last_failure.get(host) or HostFailure(None, "failed",
                                                                                 host in (stats.get("dark") or {}))
    if not collect.stats or (runner.rc not in (0, None) and not result.failed):
        # The playbook never reached its recap (syntax error, missing file, inventory error): every host failed.
        tail = _stdout_tail(runner)
        for host in hosts:
            result.failed.setdefault(host, HostFailure(None, f"ansible-playbook {runner.status} (rc {runner.rc}): {tail}"))
    return result


def _stdout_tail(runner: Any, lines: int = 3) -> str:
    try:
        text = runner.stdout.read()
    except Exception:   # noqa: BLE001 - the tail is only a hint in a message
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(kept[-lines:])
