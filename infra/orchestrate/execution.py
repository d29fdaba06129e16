"""Execution hosts: how a wave's hosts are split into shards, one per execution host, and how a shard's
``ansible-runner worker`` is reached there (a local subprocess on the controller, SSH to a host of the site)."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..plan import Plan
from ..site.model import CONTROLLER, Execution

# (executor name, shard ident) -> (argv of a process whose stdin and stdout are the worker's, its working directory).
WorkerCommand = Callable[[str, str], tuple[list[str], str]]


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


def worker_argv(workdir: str) -> list[str]:
    """``ansible-runner worker`` reading a transmitted job on stdin, streaming events and artifacts on stdout."""
    return ["ansible-runner", "worker", "--private-data-dir", workdir, "--delete"]


def default_worker_command(plan: Plan, user: str, local_root: Path) -> WorkerCommand:
    """The controller: a local subprocess of this interpreter, working under ``local_root``. A site host: SSH (batch
    mode, known host keys only) to its management address as the site's provisioning user, where the base phase
    installed ansible-runner, working under /var/tmp/gigafactory/<site>."""
    def command(executor: str, ident: str) -> tuple[list[str], str]:
        if executor == CONTROLLER:
            workdir = str(local_root / ident)
            return [sys.executable, "-m", "ansible_runner", *worker_argv(workdir)[1:]], workdir
        workdir = f"/var/tmp/gigafactory/{plan.site}/{ident}"
        address = plan.hosts[executor].address("management")
        return ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-l", user, address, "--",
                shlex.join(worker_argv(workdir))], workdir
    return command
