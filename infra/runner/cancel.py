"""Stopping a run when asked: one cancellation for the whole run, set by SIGINT or SIGTERM.

Every ``ansible_runner.run`` of the run gets it as ``cancel_callback`` (without one, ansible-runner installs its own
SIGINT/SIGTERM handlers and the process stops answering Ctrl-C), the rollout's waits poll it, and the wave loop starts
nothing more once it is set. A second signal stops at once: the run's child process groups are killed and
KeyboardInterrupt is raised in the main thread.

Stopping kills every process group under this process (ansible-playbook, Ansible's workers, each in a session of
its own, with the task they run, the shards' workers): this process started them all, and knows them by their ids.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Cancellation:
    """Set once by the first SIGINT or SIGTERM (``handling()``), or by ``request()``; callable as ansible-runner's
    ``cancel_callback``."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signum: int | None = None

    def __call__(self) -> bool:
        """Whether the run is cancelled; once it is, every process group under this process is killed first.

        ansible-runner kills only ansible-playbook's own process group, and Ansible runs each task's worker in a
        session of its own: without this, the task's command (or its ssh connection) would run on unattended.
        """
        if not self._event.is_set():
            return False
        kill_descendant_groups()
        return True

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def request(self, signum: int = signal.SIGINT) -> None:
        if not self._event.is_set():
            self.signum = signum
            self._event.set()

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless cancelled first; whether it was."""
        return self._event.wait(seconds)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum or signal.SIGINT).name

    @property
    def exit_code(self) -> int:
        """The shell's code for death by the signal: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + int(self.signum or signal.SIGINT)

    @contextmanager
    def handling(self, say=None) -> Iterator[Cancellation]:
        """SIGINT and SIGTERM request this cancellation while inside; a second one kills the run's child process
        groups and raises KeyboardInterrupt. Only in the main thread (elsewhere signals cannot be handled)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        say = say or (lambda text: print(text, file=sys.stderr, flush=True))

        def second(signum, frame):
            self.request(signum)
            restore()
            kill_descendant_groups()
            raise KeyboardInterrupt

        def first(signum, frame):
            self.request(signum)
            for s in SIGNALS:
                signal.signal(s, second)
            say(f"{signal.Signals(signum).name}: stopping: the running tasks are stopped, nothing more starts "
                "(again to stop at once)")

        previous = {s: signal.signal(s, first) for s in SIGNALS}

        def restore() -> None:
            for s, handler in previous.items():
                signal.signal(s, handler)

        try:
            yield self
        finally:
            restore()


def descendant_groups(pid: int | None = None) -> list[int]:
    """The process groups of every process under ``pid`` (default: this process), this process's own group left out."""
    pid = os.getpid() if pid is None else pid
    children: dict[int, list[tuple[int, int]]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append((int(stat.parent.name), int(fields[2])))
        except (OSError, IndexError, ValueError):
            continue        # ended while read
    groups: list[int] = []
    todo = [pid]
    while todo:
        for child, group in children.get(todo.pop(), ()):
            todo.append(child)
            if group != os.getpgrp() and group not in groups:
                groups.append(group)
    return groups


def kill_descendant_groups() -> None:
    for group in descendant_groups():
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
