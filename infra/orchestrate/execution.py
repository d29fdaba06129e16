"""Execution hosts: how a wave's hosts are split into shards, one per execution host, and how a shard's
``ansible-runner worker`` is reached there (a local subprocess on the controller, SSH to a host of the site)."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..plan import Plan
from ..render.inventory import EXECUTION_PROJECT, EXECUTION_VENV
from ..site.model import CONTROLLER, Execution
from .project import REPO_ROOT


@dataclass(frozen=True)
class Worker:
    """How a shard reaches its execution host: ``argv``, a process whose stdin and stdout are an ``ansible-runner
    worker``'s, working in ``workdir`` there. ``project``: the controller's project directory as the worker sees it
    (None: the same paths as here); ``bin_dir``: where its ansible-playbook is (None: beside this interpreter)."""
    argv: list[str]
    workdir: str
    project: str | None = None
    bin_dir: str | None = None

    def path(self, here: Path) -> str:
        """``here`` (a path on the controller) as the worker sees it: under ``project`` if it is in this project."""
        if self.project is None or not here.is_relative_to(REPO_ROOT):
            return str(here)
        return str(PurePosixPath(self.project) / here.relative_to(REPO_ROOT))


# (executor name, shard ident) -> the worker that runs the shard.
WorkerCommand = Callable[[str, str], Worker]


@dataclass(frozen=True)
class Shard:
    executor: str
    hosts: list[str]


def _key(plan: Plan, host: str, split: str) -> str:
    hp = plan.hosts[host]
    if split == "scalable_unit" and hp.scalable_unit is not None:
        return f"su:{hp.fabric}:{hp.scalable_unit}"
    return f"rack:{hp.rack}"       # split by rack, and hosts outside any scalable unit


def shards(plan: Plan, hosts: list[str], execution: Execution) -> list[Shard]:
    """Split ``hosts`` (one wave, in order) among the execution hosts; only non-empty shards, in executor order.

    ``count``: equal runs of consecutive hosts. ``rack``/``scalable_unit``: whole racks (units) go to one executor,
    an executor's own rack (unit) to it, the others each to the executor with the fewest hosts so far.
    """
    executors = list(execution.hosts)
    if len(executors) == 1 or not hosts:
        return [Shard(executors[0], list(hosts))] if hosts else []
    if execution.split == "count":
        n, k = len(hosts), len(executors)
        bounds = [n * i // k for i in range(k + 1)]
        cut = [Shard(e, hosts[bounds[i]:bounds[i + 1]]) for i, e in enumerate(executors)]
        return [s for s in cut if s.hosts]
    buckets: dict[str, list[str]] = {}
    for h in hosts:
        buckets.setdefault(_key(plan, h, execution.split), []).append(h)
    home = {_key(plan, e, execution.split): e for e in reversed(executors) if e != CONTROLLER and e in plan.hosts}
    load: dict[str, list[str]] = {e: [] for e in executors}
    for key in sorted(buckets, key=lambda k: (k not in home, -len(buckets[k]))):
        target = home.get(key) or min(executors, key=lambda e: len(load[e]))
        load[target] += buckets[key]
    return [Shard(e, sorted(load[e], key=hosts.index)) for e in executors if load[e]]


def worker_argv(workdir: str, program: str = "ansible-runner") -> list[str]:
    """``ansible-runner worker`` reading a transmitted job on stdin, streaming events and artifacts on stdout."""
    return [program, "worker", "--private-data-dir", workdir, "--delete"]


def default_worker_command(plan: Plan, user: str, local_root: Path) -> WorkerCommand:
    """The controller: a local subprocess of this interpreter, working under ``local_root``. A site host: SSH (batch
    mode, known host keys only) to its management address as the site's provisioning user, running the
    ``ansible-runner`` of the virtualenv the base phase installed there (role execution_host: EXECUTION_VENV, the
    project at EXECUTION_PROJECT/current), working under /var/tmp/gigafactory/<site>."""
    def command(executor: str, ident: str) -> Worker:
        if executor == CONTROLLER:
            workdir = str(local_root / ident)
            return Worker([sys.executable, "-m", "ansible_runner", *worker_argv(workdir)[1:]], workdir)
        workdir = f"/var/tmp/gigafactory/{plan.site}/{ident}"
        address = plan.hosts[executor].address("management")
        return Worker(["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-l", user, address, "--",
                       shlex.join(worker_argv(workdir, f"{EXECUTION_VENV}/bin/ansible-runner"))], workdir,
                      project=f"{EXECUTION_PROJECT}/current", bin_dir=f"{EXECUTION_VENV}/bin")
    return command
