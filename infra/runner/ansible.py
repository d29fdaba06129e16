"""One wave of one phase: ``ansible-playbook`` through ansible-runner's Python API, its event stream condensed per host."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from collections.abc import Callable
from typing import Any, TextIO

import ansible_runner

from .cancel import Cancellation
from .execution import Worker
from ..project import installed_fact_cache

EventSink = Callable[[dict[str, Any]], None]
LIMIT_INLINE_MAX = 100   # more hosts than this go to --limit @file
HOST_RESULTS = frozenset({"runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable"})
CANCELED = "canceled"   # ansible-runner's status of a job its cancel_callback stopped


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
    host_tasks: int = 0              # task results (ok, changed, failed, skipped, unreachable), one per host and task
    controller_seconds: float = 0.0  # sharded: this process's CPU time to send the shards and read their events
    cancelled: bool = False          # stopped when asked (SIGINT/SIGTERM): its hosts neither failed nor finished

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

    def __init__(self, result: WaveResult, sink: EventSink, events: TextIO | None = None):
        self.result, self.sink = result, sink
        self.events = events    # one JSON line per event here, instead of ansible-runner's file per event
        self.last_failure: dict[str, HostFailure] = {}
        self.stats: dict[str, Any] | None = None
        self.first: datetime | None = None
        self.task_started: datetime | None = None
        self.stdout: list[str] = []      # the events' display text, censored

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
        if kind in HOST_RESULTS:
            self.result.host_tasks += 1
        if event.get("stdout"):
            self.stdout.append(event["stdout"])
        self.sink(event)
        if self.events is None:
            return True
        self.events.write(json.dumps(event) + "\n")
        return False


SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _envvars(ansible_config: str, strategy: str, worker: Worker | None = None) -> dict[str, str]:
    here = worker is None or worker.bin_dir is None
    env = {
        "ANSIBLE_CONFIG": ansible_config,
        # ansible-playbook and the site inventory plugin must see this interpreter's packages (on an execution host:
        # the virtualenv's, and the project's infra package).
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]) if here
        else os.pathsep.join([worker.bin_dir, SYSTEM_PATH]),
        # ansible-runner turns host key checking off unless told; the project's ansible.cfg keeps it on.
        "ANSIBLE_HOST_KEY_CHECKING": os.environ.get("ANSIBLE_HOST_KEY_CHECKING", "True"),
        # provisioning.strategy; Mitogen's strategies are found through playbooks/plugins/strategy (ansible.cfg).
        "ANSIBLE_STRATEGY": strategy,
    }
    if here and (facts := installed_fact_cache(Path(ansible_config))):
        env["ANSIBLE_CACHE_PLUGIN_CONNECTION"] = str(facts)
    if not here and worker.project:
        env["PYTHONPATH"] = worker.project
        # ansible.cfg's fact cache is relative to the project, which the worker's user cannot write there
        env["ANSIBLE_CACHE_PLUGIN_CONNECTION"] = str(PurePosixPath(worker.workdir).parent / "facts")
    return env


def _job(playbook: Path, inventories: list[Path], limit: str, extravars: dict[str, Any], check: bool,
         ansible_config: Path, strategy: str = "linear", worker: Worker | None = None) -> dict[str, Any]:
    """What ansible-runner runs for a wave or a shard, wherever it runs (paths as ``worker`` sees them)."""
    there = (lambda path: worker.path(path)) if worker is not None else str
    return dict(
        project_dir=there(playbook.parent), playbook=there(playbook), inventory=[there(i) for i in inventories],
        limit=limit, extravars=extravars, cmdline="--check --diff" if check else None,
        envvars=_envvars(there(ansible_config), strategy, worker), suppress_env_files=True,
        # Not "jsonfile": ansible-runner would point the fact cache into this run's artifacts, defeating
        # ansible.cfg's cross-run cache (gathering = smart).
        fact_cache_type="ansible.cfg",
    )


def _limit(hosts: list[str], file: Path, path_there: str) -> str:
    """``--limit``: the hosts inline, or ``@file`` (written to ``file``, read as ``path_there``) past LIMIT_INLINE_MAX."""
    if len(hosts) <= LIMIT_INLINE_MAX:
        return ",".join(hosts)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text("\n".join(hosts) + "\n", encoding="utf-8")
    return f"@{path_there}"


def run_wave(*, playbook: Path, inventories: list[Path], hosts: list[str], private_data_dir: Path, ident: str,
             ansible_config: Path, extravars: dict[str, Any], check: bool, sink: EventSink,
             strategy: str = "linear", cancel: Cancellation | None = None) -> WaveResult:
    """Run ``playbook`` limited to ``hosts``; every host the recap counts as failed or unreachable is in ``.failed``.
    ``cancel`` stops ansible-playbook when set (``.cancelled``); never ansible-runner's own signal handlers."""
    result = WaveResult(hosts=list(hosts))
    collect = _Collector(result, sink)
    private_data_dir.mkdir(parents=True, exist_ok=True)
    limit_file = private_data_dir / f"{ident}.limit"
    runner = ansible_runner.run(
        private_data_dir=str(private_data_dir), ident=ident, event_handler=collect, quiet=True,
        cancel_callback=cancel or Cancellation(),
        **_job(playbook, inventories, _limit(hosts, limit_file, str(limit_file)), extravars, check, ansible_config, strategy))
    _conclude(result, collect, runner.rc, runner.status, lambda: _stdout_tail(runner))
    return result


def run_shard(*, executor: str, worker: Worker, playbook: Path, inventories: list[Path], hosts: list[str],
              private_data_dir: Path, ident: str, ansible_config: Path, extravars: dict[str, Any], check: bool,
              sink: EventSink, strategy: str = "linear", idle_timeout: float = 3600,
              cancel: Cancellation | None = None) -> WaveResult:
    """Run one shard of a wave on an execution host through ansible-runner's streaming interface.

    ``transmit`` packs the job (``private_data_dir/jobs/<ident>``) into ``worker.argv``'s stdin, an
    ``ansible-runner worker`` there runs it in ``worker.workdir``, and ``process`` replays its events and artifacts into
    ``private_data_dir/artifacts/<ident>`` here, the events as one ``job_events.jsonl`` (a file per event cost the
    controller ten times the CPU). The outcome is the worker's status and rc from those artifacts;
    without them (the executor died, was unreachable, or sent nothing for ``idle_timeout`` seconds and was stopped)
    every host of the shard is unreachable, with the reason. ``cancel``, once set, kills the worker and what it
    started here (on an execution host, its ssh connection): the shard is ``.cancelled``.
    """
    cancel = cancel or Cancellation()
    cpu0 = time.thread_time()
    result = WaveResult(hosts=list(hosts))
    collect = _Collector(result, sink)
    job = private_data_dir / "jobs" / ident
    job.mkdir(parents=True, exist_ok=True)
    artifacts = private_data_dir / "artifacts" / ident
    stderr_path = private_data_dir / "jobs" / f"{ident}.stderr"
    limit = _limit(hosts, job / "limit", f"{worker.workdir}/limit")
    explanation: dict[str, str] = {}
    # A worker elsewhere takes the site file and the project's inventories, not this machine's connection
    # inventories: its own view of them comes with the job (Worker.files, in its workdir).
    sources = [i for k, i in enumerate(inventories) if k == 0 or worker.sees(i)]
    streamed = _streamed_job(worker, job, _job(playbook, sources, limit, extravars, check, ansible_config, strategy, worker),
                             check)
    heard = threading.Event()       # set on every message from the worker

    def status(data: dict[str, Any], runner_config: Any = None) -> None:
        heard.set()
        if data.get("job_explanation"):
            explanation["text"] = str(data["job_explanation"])

    def event(data: dict[str, Any]) -> bool:
        heard.set()
        return collect(data)

    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(worker.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                start_new_session=True)
        done = threading.Event()
        watchdog = threading.Thread(target=_stop_when_silent, args=(proc, heard, done, idle_timeout, explanation),
                                    name=f"watchdog-{ident}", daemon=True)
        watchdog.start()
        stopper = threading.Thread(target=_stop_when_cancelled, args=(proc, cancel, done), name=f"cancel-{ident}",
                                   daemon=True)
        stopper.start()
        try:
            try:
                # suppress_output_file: the worker keeps no stdout file of its own (its display text is uncensored);
                # the stdout artifact is written here from the censored events.
                ansible_runner.run(streamer="transmit", _output=proc.stdin, private_data_dir=str(job),
                                   suppress_output_file=True, cancel_callback=cancel, **streamed)
                proc.stdin.close()
            except (BrokenPipeError, OSError) as exc:
                explanation.setdefault("text", f"the job could not be sent: {exc}")
            artifacts.mkdir(parents=True, exist_ok=True)
            with open(artifacts / "job_events.jsonl", "w", encoding="utf-8") as collect.events:
                ansible_runner.run(streamer="process", _input=proc.stdout, private_data_dir=str(private_data_dir),
                                   ident=ident, event_handler=event, status_handler=status, quiet=True,
                                   cancel_callback=cancel)
            proc.stdout.close()
            code = proc.wait()
        finally:
            done.set()
            heard.set()         # wakes the watchdog
            watchdog.join()
            stopper.join()
    _shard_outcome(result, collect, artifacts, code, explanation, cancel, stderr_path, executor)
    (artifacts / "stdout").write_text("\n".join(collect.stdout) + "\n", encoding="utf-8")
    result.controller_seconds = time.thread_time() - cpu0
    return result


def _streamed_job(worker: Worker, job: Path, streamed: dict[str, Any], check: bool) -> dict[str, Any]:
    """``_job``'s arguments (``streamed``) for ``transmit`` to ``worker``: the worker's own files (its view of the
    connection inventories) written into the job, every inventory on the command line, the SSH key through
    ansible-runner's credential path."""
    for name, text in worker.files.items():
        (job / name).write_text(text, encoding="utf-8")
    shipped = [f"{worker.workdir}/connection.yml"] if "connection.yml" in worker.files else []
    # Streaming takes one inventory path; every source goes on the command line instead, in order.
    streamed["cmdline"] = shlex.join([a for i in streamed.pop("inventory") + shipped for a in ("-i", i)]
                                     + (["--check", "--diff"] if check else []))
    if worker.ssh_key:
        # ansible-runner's own credential path: in the job's arguments over the worker's pipe, into a FIFO there
        # that ssh-add reads for an ssh-agent wrapping ansible-playbook; never a file, a command line or an artifact
        streamed["ssh_key"] = worker.ssh_key
    return streamed


def _shard_outcome(result: WaveResult, collect: _Collector, artifacts: Path, code: int, explanation: dict[str, str],
                   cancel: Cancellation, stderr_path: Path, executor: str) -> None:
    """A shard's outcome into ``result``: the worker's rc and status from the artifacts ``process`` replayed (a
    cancelled playbook's failure is its cancellation); without them cancelled, or every host unreachable, with
    the worker's exit ``code``, its explanation and the last lines of its stderr (``stderr_path``)."""
    rc_file, status_file = artifacts / "rc", artifacts / "status"
    if rc_file.is_file() and status_file.is_file() and "silent" not in explanation:
        rc_text = rc_file.read_text().strip()
        rc = int(rc_text) if rc_text.lstrip("-").isdigit() else None
        status = status_file.read_text().strip()
        # a worker whose playbook this run's cancellation killed reports it failed: it was cancelled
        _conclude(result, collect, rc, CANCELED if cancel.requested and status != "successful" else status, lambda: "")
    elif cancel.requested:
        result.rc, result.status, result.cancelled = code, CANCELED, True
    else:
        tail = " | ".join(line.strip() for line in stderr_path.read_text(errors="replace").splitlines()[-3:])
        reason = (f"execution host {executor} {explanation.get('silent', 'stopped before the shard finished')} "
                  f"(exit {code}): {explanation.get('text', 'no status')}{' | ' + tail if tail else ''}")
        result.rc, result.status = code, "error"
        for host in result.hosts:
            result.failed[host] = HostFailure(None, reason, unreachable=True)


def _stop_when_silent(proc: subprocess.Popen, heard: threading.Event, done: threading.Event, idle_timeout: float,
                      explanation: dict[str, str]) -> None:
    """Kill the worker's process group when it has sent nothing for ``idle_timeout`` seconds (a hung executor or
    connection), saying so in ``explanation["silent"]``; return when ``done`` is set."""
    while not done.is_set():
        if heard.wait(idle_timeout):
            heard.clear()
            continue
        if done.is_set():
            return
        explanation["silent"] = f"sent nothing for {idle_timeout:g} s (provisioning.execution.idle_timeout) and was stopped"
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return


def _stop_when_cancelled(proc: subprocess.Popen, cancel: Cancellation, done: threading.Event) -> None:
    """Once ``cancel`` is set, stop the worker: its process group and everything under it (``cancel()`` kills them;
    neither transmit nor process polls it); return when ``done`` is set."""
    while not done.is_set():
        if cancel.wait(0.5):
            cancel()
            return


def _conclude(result: WaveResult, collect: _Collector, rc: int | None, status: str, tail: Callable[[], str]) -> None:
    """Per-host outcome from the play recap; every host failed when the playbook never reached it, unless it was
    cancelled (then only the hosts that failed before are)."""
    result.rc, result.status = rc, status
    result.cancelled = status == CANCELED
    stats = collect.stats or {}
    for host in result.hosts:
        result.changed[host] = int((stats.get("changed") or {}).get(host, 0))
        counted = host in (stats.get("failures") or {}) or host in (stats.get("dark") or {})
        if counted:
            result.failed[host] = collect.last_failure.get(host) or HostFailure(None, "failed",
                                                                                host in (stats.get("dark") or {}))
    if result.cancelled:
        for host, failure in collect.last_failure.items():
            if host in result.hosts:
                result.failed.setdefault(host, failure)
    elif not collect.stats or (rc not in (0, None) and not result.failed):
        # The playbook never reached its recap (syntax error, missing file, inventory error): every host failed.
        text = tail()
        for host in result.hosts:
            result.failed.setdefault(host, HostFailure(None, f"ansible-playbook {status} (rc {rc}): {text}"))


def _stdout_tail(runner: Any, lines: int = 3) -> str:
    try:
        text = runner.stdout.read()
    except Exception:   # noqa: BLE001 - the tail is only a hint in a message
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(kept[-lines:])
