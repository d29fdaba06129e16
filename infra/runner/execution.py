"""Execution hosts: how a wave's hosts are split into shards, one per execution host, and how a shard's
``ansible-runner worker`` is reached there (a local subprocess on the controller, SSH to a host of the site)."""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from ..plan import Plan
from ..render.inventory import EXECUTION_PROJECT, EXECUTION_VENV, site_inventory
from ..site.model import CONTROLLER, Execution, Site
from ..project import REPO_ROOT


# ansible-core and ansible-runner, and what the site inventory plugin and the filters import, each pinned to the
# version this controller runs (mitogen too when the site's strategy is one of Mitogen's).
EXECUTION_PACKAGES = ("ansible-core", "ansible-runner", "pydantic", "pyyaml", "jinja2", "python-hostlist")


def controller_versions(names: tuple[str, ...]) -> dict[str, str]:
    """The version of each Python distribution in ``names`` that this controller runs."""
    try:
        return {name: version(name) for name in names}
    except PackageNotFoundError as err:
        raise RuntimeError(f"the controller's Python has no {err.name}: install gigafactory's dependencies") from err


def execution_packages(strategy: str) -> dict[str, str]:
    """What an execution host installs for a site with this ``provisioning.strategy``: each distribution of
    EXECUTION_PACKAGES (and mitogen for Mitogen's strategies) at the version this controller runs."""
    return controller_versions(EXECUTION_PACKAGES + (("mitogen",) if strategy.startswith("mitogen_") else ()))


def controller_inventory(site: Site, plan: Plan) -> dict[str, Any]:
    """The site's inventory as this controller applies it (``site_inventory`` with the controller's versions for
    the execution hosts): what the inventory plugin gives Ansible and NodeConfiguration hashes."""
    packages = execution_packages(site.provisioning.strategy) if "execution" in plan.groups else None
    return site_inventory(site, plan, packages)


@dataclass(frozen=True)
class Worker:
    """How a shard reaches its execution host: ``argv``, a process whose stdin and stdout are an ``ansible-runner
    worker``'s, working in ``workdir`` there. ``project``: the controller's project directory as the worker sees it
    (None: the same paths as here); ``bin_dir``: where its ansible-playbook is (None: beside this interpreter).

    A worker on another host does not see this machine's connection inventories (how this machine reaches the hosts);
    ``files`` (name -> text) go with the job into ``workdir`` instead: ``connection.yml``, how the executor reaches
    them, with ``known_hosts``; ``ssh_key``: the private key for them, streamed in the job's arguments into an
    ``ssh-agent`` there (ansible-runner's ``ssh_key``: a FIFO, never a file or a command line)."""
    argv: list[str]
    workdir: str
    project: str | None = None
    bin_dir: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    ssh_key: str | None = field(default=None, repr=False)

    def sees(self, here: Path) -> bool:
        """Whether the worker finds ``here`` (a path on the controller): always here, else only inside the project."""
        return self.project is None or Path(here).is_relative_to(REPO_ROOT)

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


# How this machine reaches a host: what an executor elsewhere must not take from this machine's inventories.
HERE_ONLY = frozenset({"ansible_host", "ansible_port", "ansible_ssh_port", "ansible_ssh_host", "ansible_ssh_private_key_file",
                       "ansible_private_key_file", "ansible_ssh_common_args", "ansible_ssh_extra_args"})


def inventory_hosts(inventories: Iterable[Path]) -> dict[str, dict[str, Any]]:
    """Each host's own variables in the static YAML inventory sources (the connection inventories ``-i`` gives, such
    as the test bed's ``connection.yml``), later sources winning; other sources (the site file) give none here."""
    found: dict[str, dict[str, Any]] = {}

    def walk(group: Any) -> None:
        if not isinstance(group, dict):
            return
        for name, hostvars in (group.get("hosts") or {}).items():
            found.setdefault(str(name), {}).update(hostvars or {})
        for child in (group.get("children") or {}).values():
            walk(child)

    for path in inventories:
        if Path(path).suffix not in (".yml", ".yaml") or not Path(path).is_file():
            continue
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        if isinstance(data, dict) and "site" not in data:
            for group in data.values():
                walk(group)
    return found


def _ssh_options(hostvars: dict[str, Any]) -> list[str]:
    """ssh options for how this machine reaches a host (its port, key and common arguments)."""
    options = shlex.split(str(hostvars.get("ansible_ssh_common_args") or ""))
    if hostvars.get("ansible_port"):
        options += ["-p", str(hostvars["ansible_port"])]
    key = hostvars.get("ansible_ssh_private_key_file") or hostvars.get("ansible_private_key_file")
    if key:
        options += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
    return options


def _known_hosts_file(hostvars: dict[str, Any]) -> Path:
    for option in shlex.split(str(hostvars.get("ansible_ssh_common_args") or "")):
        if option.startswith("UserKnownHostsFile="):
            return Path(option.split("=", 1)[1])
    return Path.home() / ".ssh" / "known_hosts"


def _known_keys(hostvars: dict[str, Any], address: str) -> list[str]:
    """The host keys this machine pinned for a host (as it reaches it), as known_hosts lines for ``address``."""
    target, port = str(hostvars.get("ansible_host") or ""), hostvars.get("ansible_port")
    if not target:
        return []
    name = f"[{target}]:{port}" if port and int(port) != 22 else target
    found = subprocess.run(["ssh-keygen", "-F", name, "-f", str(_known_hosts_file(hostvars))],
                           capture_output=True, text=True)
    lines = [line.split(None, 1) for line in found.stdout.splitlines() if line and not line.startswith("#")]
    return [f"{address} {rest}" for _, rest in (x for x in lines if len(x) == 2)]


def executor_view(plan: Plan, connections: dict[str, dict[str, Any]], workdir: str) -> tuple[dict[str, str], str | None]:
    """What a remote worker gets instead of this machine's connection inventories: ``connection.yml`` (each host's
    variables but how this machine reaches it; it is reached at its management address, with the host keys this
    machine pinned for it in ``known_hosts``) and the private key this machine uses for them (one, or none)."""
    hosts: dict[str, dict[str, Any]] = {}
    known: list[str] = []
    keys: set[str] = set()
    for name, hostvars in connections.items():
        if name not in plan.hosts:
            continue
        address = plan.hosts[name].address("management")
        keys.update(str(hostvars[k]) for k in ("ansible_ssh_private_key_file", "ansible_private_key_file") if hostvars.get(k))
        pinned = _known_keys(hostvars, address)
        known += pinned
        hosts[name] = {**{k: v for k, v in hostvars.items() if k not in HERE_ONLY}, "ansible_host": address}
        if pinned:
            hosts[name]["ansible_ssh_common_args"] = (f"-o UserKnownHostsFile={workdir}/known_hosts "
                                                      "-o StrictHostKeyChecking=yes")
    if len(keys) > 1:
        raise ValueError(f"the connection inventories name {len(keys)} SSH keys ({', '.join(sorted(keys))}); an "
                         "execution host takes one for the hosts it reaches")
    if not hosts:
        return {}, None
    files = {"connection.yml": yaml.safe_dump({"all": {"hosts": hosts}}, sort_keys=True)}
    if known:
        files["known_hosts"] = "".join(f"{line}\n" for line in sorted(set(known)))
    key = Path(next(iter(keys))).expanduser().read_text(encoding="utf-8") if keys else None
    return files, key


def default_worker_command(plan: Plan, user: str, local_root: Path, inventories: Iterable[Path] = ()) -> WorkerCommand:
    """The controller: a local subprocess of this interpreter, working under ``local_root``. A site host: SSH (batch
    mode, known host keys only) as the site's provisioning user to its management address, or as the connection
    inventories (``inventories``) say this machine reaches it, running the ``ansible-runner`` of the virtualenv the
    base phase installed there (role execution_host: EXECUTION_VENV, the project at EXECUTION_PROJECT/current),
    working under /var/tmp/gigafactory/<site>; with the executor's view of the connection inventories
    (``executor_view``)."""
    connections = inventory_hosts(inventories)

    def command(executor: str, ident: str) -> Worker:
        if executor == CONTROLLER:
            workdir = str(local_root / ident)
            return Worker([sys.executable, "-m", "ansible_runner", *worker_argv(workdir)[1:]], workdir)
        workdir = f"/var/tmp/gigafactory/{plan.site}/{ident}"
        here = connections.get(executor, {})
        address = str(here.get("ansible_host") or plan.hosts[executor].address("management"))
        files, key = executor_view(plan, connections, workdir)
        return Worker(["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", *_ssh_options(here),
                       "-l", str(here.get("ansible_user") or user), address, "--",
                       shlex.join(worker_argv(workdir, f"{EXECUTION_VENV}/bin/ansible-runner"))], workdir,
                      project=f"{EXECUTION_PROJECT}/current", bin_dir=f"{EXECUTION_VENV}/bin", files=files, ssh_key=key)
    return command
