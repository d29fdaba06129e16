"""Rolling out a change by its impact class without killing jobs.

A change arrives as a plain mapping ``host -> (impact class, reasons)`` (``gigafactory diff`` computes it). Hosts
whose class is ``drain`` or ``reboot`` go through ``roll_out``: never more than ``max_unavailable_percent`` of any
availability domain's nodes (a Slurm partition, a Kubernetes cluster's workers, else the host's pool; at least one
node) are out of service at once. Each node is taken out (Slurm: drained with a reason naming the change;
Kubernetes: cordoned and drained through the eviction API, PodDisruptionBudgets respected), waits until its jobs
have finished, is updated (``apply``), rebooted if its class says so (Slurm: ``scontrol reboot ASAP
nextstate=DOWN``: it comes back down, no job lands on it), passes the health gate, and only then is put back. A node
whose update, reboot or health gate fails stays out with the reason.

Every command is an argument vector run on the scheduler's control host through a ``NodeControl`` (production:
ansible-runner's ad-hoc ``command`` module, ``AnsibleCommand``); no shell ever sees a site value.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

import ansible_runner

from ..plan import Plan, group_name
from ..plan import diff
from ..plan.model import REBOOT_TIMEOUT_S
from ..site.hostlists import expand
from ..site.impact import Impact

IMPACTS = tuple(str(i) for i in Impact)       # the site model's classes (infra/site/impact.py), weakest first
NEW = diff.NEW         # a host the earlier site did not have: every phase, nothing to drain (``up --against``)
ROLLED = (str(Impact.DRAIN), str(Impact.REBOOT))                        # the classes roll_out sequences
REASON_MAX = 200
_REASON_UNSAFE = re.compile(r"[^A-Za-z0-9 _.,:;/=+@()\[\]<>'-]")     # no braces, %, #, quotes, $ or control chars
KUBECONFIG = "/etc/kubernetes/admin.conf"
AD_HOC_STRATEGY = "linear"      # one module on a few hosts: Ansible's own strategy, whatever provisioning.strategy is


class RolloutError(ValueError):
    """An impact mapping the rollout cannot take (unknown class or host)."""


@dataclass(frozen=True)
class HostImpact:
    host: str
    impact: str                     # one of IMPACTS, or NEW
    reasons: tuple[str, ...] = ()


def host_impacts(impacts: Mapping[str, tuple[Any, Sequence[str]]], known: Iterable[str]) -> dict[str, HostImpact]:
    """``host -> (class, reasons)`` as HostImpacts; a class may be a string, an enum whose value is one, or an
    enum whose member name is one (``infra.site.impact.Impact.DRAIN``, an IntEnum)."""
    known = set(known)
    out: dict[str, HostImpact] = {}
    for host, (impact, reasons) in impacts.items():
        value = getattr(impact, "value", impact)
        name = value if isinstance(value, str) else impact.name.lower() if isinstance(impact, Enum) else str(impact)
        if name not in (*IMPACTS, NEW):
            raise RolloutError(f"{host}: impact class {name!r} is not one of {', '.join((*IMPACTS, NEW))}")
        if host not in known:
            raise RolloutError(f"{host}: not a host of the site")
        out[host] = HostImpact(host, name, tuple(str(r) for r in reasons))
    return out


def reason_text(reasons: Sequence[str], prefix: str = "gigafactory") -> str:
    """A Slurm reason naming the change: ``gigafactory: <reasons>``, characters a template or shell could read
    (braces, %, #, $, quotes, control characters) replaced, at most REASON_MAX characters."""
    text = f"{prefix}: {'; '.join(reasons) if reasons else 'update'}"
    text = _REASON_UNSAFE.sub("_", " ".join(text.split()))
    return text if len(text) <= REASON_MAX else text[:REASON_MAX - 3] + "..."


# --- commands on a control host ----------------------------------------------------------------------------------

@dataclass
class CommandResult:
    rc: int
    stdout: str = ""
    stderr: str = ""


class NodeControl(Protocol):
    """Runs an argument vector on one control host (the Slurm controller, a Kubernetes control plane)."""
    def run(self, argv: Sequence[str]) -> CommandResult: ...


@dataclass
class AnsibleCommand:
    """``argv`` on ``host`` through ansible-runner's ad-hoc ``ansible.builtin.command`` (argv form, no shell),
    with the inventories and ansible.cfg ``up`` uses; each call is an ansible-runner job in ``private_data_dir``."""
    host: str
    inventories: list[Path]
    private_data_dir: Path
    ansible_config: Path
    calls: int = 0
    cancel: Callable[[], bool] = lambda: False   # the run's cancellation (never ansible-runner's signal handlers)
    become_user: str | None = None               # run argv as this user (Ansible's become), e.g. Slurm's own

    def run(self, argv: Sequence[str]) -> CommandResult:
        from ..runner.ansible import _envvars
        if self.cancel():
            return CommandResult(1, "", f"interrupted: {' '.join(argv[:2])} not run")
        self.calls += 1
        results: list[dict[str, Any]] = []

        def keep(event: dict[str, Any]) -> bool:
            if event.get("event") in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable"):
                results.append(event.get("event_data") or {})
            return False   # no file per event: a rollout polls often

        self.private_data_dir.mkdir(parents=True, exist_ok=True)
        # JSON module arguments: ansible reads them as data, never as key=value text; reason_text keeps out the
        # characters a template could start with.
        runner = ansible_runner.run(
            private_data_dir=str(self.private_data_dir), ident=f"control-{self.host}-{self.calls:05d}",
            host_pattern=self.host, module="ansible.builtin.command", module_args=json.dumps({"argv": list(argv)}),
            inventory=[str(i) for i in self.inventories], envvars=_envvars(str(self.ansible_config), AD_HOC_STRATEGY),
            cmdline=f"--become --become-user {shlex.quote(self.become_user)}" if self.become_user else None,
            suppress_env_files=True, quiet=True, event_handler=keep, rotate_artifacts=20, cancel_callback=self.cancel)
        if not results:
            return CommandResult(runner.rc if runner.rc else 1, "", f"ansible {runner.status}: no result from {self.host}")
        res = results[-1].get("res") or {}
        rc = res.get("rc")
        if rc is None:
            rc = 0 if not res.get("failed") and not res.get("unreachable") else 1
        return CommandResult(int(rc), str(res.get("stdout", "")), str(res.get("stderr") or res.get("msg") or ""))


# --- schedulers -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NodeState:
    base: str                      # IDLE, MIXED, ALLOCATED, DOWN, ...
    flags: frozenset[str]          # DRAIN, COMPLETING, REBOOT_REQUESTED, REBOOT_ISSUED, NOT_RESPONDING, ...
    reason: str = ""

    @property
    def text(self) -> str:
        return "+".join([self.base, *sorted(self.flags)])


_NODE = re.compile(r"^NodeName=(\S+)")
_STATE = re.compile(r"\bState=(\S+)")
_REASON = re.compile(r"\bReason=(.*?)(?: \[[^\]]*\])?\s*$")


def parse_nodes(text: str) -> dict[str, NodeState]:
    """``scontrol show node ... --oneliner``: node -> state."""
    out: dict[str, NodeState] = {}
    for line in text.splitlines():
        node, state = _NODE.search(line), _STATE.search(line)
        if not node or not state:
            continue
        base, *flags = state.group(1).split("+")
        reason = _REASON.search(line)
        out[node.group(1)] = NodeState(base.rstrip("*~#!%$@^-"), frozenset(flags), reason.group(1) if reason else "")
    return out


class CommandFailed(RuntimeError):
    pass


def _check(result: CommandResult, argv: Sequence[str]) -> CommandResult:
    if result.rc != 0:
        raise CommandFailed(f"{' '.join(argv[:2])} failed (rc {result.rc}): {(result.stderr or result.stdout).strip()[:300]}")
    return result


class Scheduler(Protocol):
    """What a rollout asks of the system that places work on a node."""
    name: str
    def take_out(self, node: str, reason: str) -> None: ...
    def busy(self, nodes: list[str]) -> dict[str, str]: ...          # node -> what it waits for ("" when free)
    def reboot(self, node: str, reason: str) -> bool: ...            # True: the scheduler reboots it (poll back())
    def back(self, nodes: list[str]) -> dict[str, str | None]: ...   # node -> None still rebooting, "" back, else error
    def put_back(self, node: str) -> None: ...
    def keep_out(self, node: str, reason: str) -> None: ...


@dataclass
class Slurm:
    """Slurm's drain / reboot / resume through ``scontrol`` on the controller."""
    control: NodeControl
    name: str = "slurm"

    def run(self, *argv: str) -> CommandResult:
        return _check(self.control.run(list(argv)), argv)

    def take_out(self, node: str, reason: str) -> None:
        self.run("scontrol", "update", f"nodename={node}", "state=drain", f"reason={reason}")

    def states(self, nodes: list[str]) -> dict[str, NodeState]:
        return parse_nodes(self.run("scontrol", "show", "node", ",".join(nodes), "--oneliner").stdout)

    def jobs_on(self, node: str) -> list[str]:
        return self.run("squeue", "-h", "-w", node, "-o", "%i").stdout.split()

    def busy(self, nodes: list[str]) -> dict[str, str]:
        states = self.states(nodes)
        out: dict[str, str] = {}
        for node in nodes:
            state = states.get(node)
            if state is None:
                out[node] = "not known to slurmctld"
            elif state.base not in ("IDLE", "DOWN", "FUTURE") or "COMPLETING" in state.flags:
                out[node] = f"jobs ({state.text})"
            else:
                jobs = self.jobs_on(node)
                out[node] = f"jobs {','.join(jobs)}" if jobs else ""
        return out

    def idle(self, nodes: list[str]) -> set[str]:
        """Those of ``nodes`` running no job."""
        return {n for n, s in self.states(nodes).items() if s.base == "IDLE" and "COMPLETING" not in s.flags}

    def reboot(self, node: str, reason: str) -> bool:
        # nextstate=DOWN: the node comes back down with the reason, so no job lands on it before the rollout's
        # health gate has passed; the rollout resumes it then (put_back), or leaves it down and drained.
        self.run("scontrol", "reboot", "ASAP", "nextstate=DOWN", f"reason={reason}", node)
        return True

    def back(self, nodes: list[str]) -> dict[str, str | None]:
        """After ``reboot``: None while rebooting (a REBOOT_* flag, or slurmd not registered yet), "" once slurmd
        registered (DOWN, as asked), an error when slurmctld gave up on it (the reboot timed out)."""
        states = self.states(nodes)
        out: dict[str, str | None] = {}
        for node in nodes:
            state = states.get(node)
            if state is None or any(f.startswith("REBOOT") for f in state.flags) or "NOT_RESPONDING" in state.flags:
                out[node] = None
            elif "timed out" in state.reason.lower() or "not responding" in state.reason.lower():
                out[node] = f"down after its reboot: {state.reason}"
            else:
                out[node] = ""
        return out

    def put_back(self, node: str) -> None:
        self.run("scontrol", "update", f"nodename={node}", "state=resume")

    def keep_out(self, node: str, reason: str) -> None:
        self.run("scontrol", "update", f"nodename={node}", "state=drain", f"reason={reason}")

    def reconfigure(self) -> None:
        self.run("scontrol", "reconfigure")


@dataclass
class Kubernetes:
    """cordon / drain / uncordon through ``kubectl`` on a control-plane host (its admin kubeconfig).

    ``kubectl drain`` evicts through the eviction API, so PodDisruptionBudgets hold; it is called with a short
    timeout each poll until it succeeds, so the rollout can show how long a node has waited for its pods.
    """
    control: NodeControl
    drain_timeout_s: int = 30
    name: str = "kubernetes"

    def kubectl(self, *argv: str) -> CommandResult:
        return self.control.run(["kubectl", f"--kubeconfig={KUBECONFIG}", *argv])

    def take_out(self, node: str, reason: str) -> None:
        argv = ("cordon", node)
        _check(self.kubectl(*argv), ["kubectl", *argv])

    def busy(self, nodes: list[str]) -> dict[str, str]:
        out = {}
        for node in nodes:
            r = self.kubectl("drain", node, "--ignore-daemonsets", "--delete-emptydir-data",
                             f"--timeout={self.drain_timeout_s}s")
            out[node] = "" if r.rc == 0 else "pods (eviction pending)"
        return out

    def reboot(self, node: str, reason: str) -> bool:
        return False

    def back(self, nodes: list[str]) -> dict[str, str | None]:
        return dict.fromkeys(nodes, "")

    def put_back(self, node: str) -> None:
        argv = ("uncordon", node)
        _check(self.kubectl(*argv), ["kubectl", *argv])

    def keep_out(self, node: str, reason: str) -> None:
        pass   # stays cordoned


class Unscheduled:
    """A host no scheduler places work on (a controller, a storage server): nothing to wait for."""
    name = "none"

    def take_out(self, node: str, reason: str) -> None: pass
    def busy(self, nodes: list[str]) -> dict[str, str]: return dict.fromkeys(nodes, "")
    def reboot(self, node: str, reason: str) -> bool: return False
    def back(self, nodes: list[str]) -> dict[str, str | None]: return dict.fromkeys(nodes, "")
    def put_back(self, node: str) -> None: pass
    def keep_out(self, node: str, reason: str) -> None: pass


# --- where each node belongs --------------------------------------------------------------------------------------

def availability_domains(plan: Plan) -> dict[str, tuple[str, ...]]:
    """Every group of nodes whose share out of service is bounded: each Slurm partition, each Kubernetes cluster's
    workers, and the pool of each host in neither. A node may be in several."""
    domains: dict[str, tuple[str, ...]] = {}
    covered: set[str] = set()
    if plan.slurm is not None:
        for part in plan.slurm.partitions:
            domains[f"partition {part.name}"] = tuple(expand(part.nodes))
            covered.update(domains[f"partition {part.name}"])
    workers = set(plan.groups.get("k8s_worker", ()))
    for cluster in plan.kubernetes:
        members = tuple(h for h in plan.groups.get(group_name("k8s", cluster.name), ()) if h in workers)
        if members:
            domains[f"kubernetes {cluster.name}"] = members
            covered.update(members)
    for host in plan.hosts.values():
        if host.name not in covered:
            domains.setdefault(f"pool {host.pool}", ())
            domains[f"pool {host.pool}"] += (host.name,)
    return domains


def allowance(size: int, percent: float) -> int:
    """How many of a domain's ``size`` nodes may be out of service at once: ``percent`` of them, at least one."""
    return max(1, math.floor(size * percent / 100))


def schedulers_for(plan: Plan, control_for: Callable[[str], NodeControl]) -> dict[str, Scheduler]:
    """Host -> its scheduler: Slurm for slurmd nodes, Kubernetes for workers, none otherwise (one per control host)."""
    out: dict[str, Scheduler] = {}
    none = Unscheduled()
    slurm = Slurm(control_for(plan.slurm.controllers[0][0])) if plan.slurm is not None else None
    compute = set(plan.groups.get("slurm_compute", ()))
    workers = set(plan.groups.get("k8s_worker", ()))
    k8s: dict[str, Kubernetes] = {}
    for cluster in plan.kubernetes:
        k8s[cluster.name] = Kubernetes(control_for(cluster.control_plane[0]))
        for h in plan.groups.get(group_name("k8s", cluster.name), ()):
            if h in workers and h not in compute:
                out[h] = k8s[cluster.name]
    for h in plan.hosts:
        if slurm is not None and h in compute:
            out[h] = slurm
        out.setdefault(h, none)
    return out


# --- the rollout ----------------------------------------------------------------------------------------------------

Failures = dict[str, str]                        # host -> why it failed
Apply = Callable[[list[str]], Failures]          # update (or health-check) these hosts; those that failed


class RolloutProgress(Protocol):
    def message(self, text: str) -> None: ...
    def waiting(self, waits: dict[str, tuple[str, float]]) -> None: ...   # node -> (what for, seconds waited)


@dataclass
class NodeOutcome:
    host: str
    impact: str
    status: str = "pending"          # pending, ok, failed
    message: str = ""
    waited_s: float = 0.0            # from taken out of service to free of jobs
    steps: list[str] = field(default_factory=list)


@dataclass
class RolloutResult:
    nodes: dict[str, NodeOutcome]
    stopped: str | None = None
    left_out: list[str] = field(default_factory=list)   # taken out of service by this rollout and not put back

    @property
    def failed(self) -> list[str]:
        return [h for h, n in self.nodes.items() if n.status == "failed"]


@dataclass
class _Underway:
    """Where the nodes of one ``Rollout.run`` stand: what is left to take out, what waits for its jobs or its
    reboot, what is out of service now, and each node's outcome so far."""
    order: list[str]                       # the rolled nodes, in the impacts' order
    result: RolloutResult
    limit: dict[str, int]                  # domain -> how many of its nodes may be out at once
    domains_of: dict[str, list[str]]       # node -> the domains it is in
    pending: list[str]                     # not taken out yet
    out: set[str] = field(default_factory=set)                # out of service now (failed nodes stay out)
    waiting: dict[str, float] = field(default_factory=dict)   # node -> when it was taken out, until free of its jobs
    rebooting: dict[str, float] = field(default_factory=dict)  # node -> when its scheduler was asked to reboot it

    @property
    def nodes(self) -> dict[str, NodeOutcome]:
        return self.result.nodes


@dataclass
class Rollout:
    """One rollout of drain- and reboot-class hosts; ``run()`` drives it to the end (poll, apply, health, resume)."""
    impacts: dict[str, HostImpact]
    domains: Mapping[str, Sequence[str]]
    schedulers: Mapping[str, Scheduler]
    apply: Apply
    health: Apply
    reboot: Apply                                # reboot hosts no scheduler reboots (blocking, e.g. Ansible's reboot)
    max_unavailable_percent: float = 10
    max_fail: float = 100
    progress: RolloutProgress | None = None
    poll_s: float = 10
    reboot_timeout_s: float = REBOOT_TIMEOUT_S
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    stop_reason: Callable[[int, int, int], str | None] | None = None   # (failed, started, total) -> why to stop
    cancelled: Callable[[], bool] = lambda: False    # asked to stop (SIGINT/SIGTERM): nothing more starts or resumes

    def _say(self, text: str) -> None:
        if self.progress:
            self.progress.message(text)

    def run(self) -> RolloutResult:
        order = [h for h, i in self.impacts.items() if i.impact in ROLLED]
        result = RolloutResult({h: NodeOutcome(h, self.impacts[h].impact) for h in order})
        if not order:
            return result
        s = _Underway(order, result, limit={d: allowance(len(m), self.max_unavailable_percent)
                                            for d, m in self.domains.items()},
                      domains_of={h: [d for d, m in self.domains.items() if h in m] for h in order}, pending=list(order))
        self._say(f"rollout: {len(order)} node(s); at most {self.max_unavailable_percent:g}% of a domain out at once: "
                  + ", ".join(f"{d} {s.limit[d]}/{len(self.domains[d])}" for d in
                              dict.fromkeys(d for h in order for d in s.domains_of[h])))
        while (s.pending or s.waiting or s.rebooting) and not self._interrupted(s):
            if not self._step(s):
                break
        for h in s.pending:
            s.nodes[h].message = f"not started: {result.stopped}"
        result.left_out = [h for h in order if h in s.out]
        return result

    def _step(self, s: _Underway) -> bool:
        """One round: stop if told to, take out what the domains allow, update the nodes free of their jobs, put
        back those that passed the gate; wait a poll if nothing moved. False: the rollout ends here."""
        self._check_stop(s)
        if s.pending and not s.result.stopped:
            self._take_out(s)
        if not s.waiting and not s.rebooting:
            self._stop_without_room(s)
            return False
        waits: dict[str, tuple[str, float]] = {}
        free = self._free_of_jobs(s, waits)
        if free and not self._update(s, free):
            return False
        back = self._back_from_reboot(s, waits)
        self._finish(s, back)
        if self.progress:
            self.progress.waiting(waits)
        if (s.waiting or s.rebooting) and not free and not back:
            self.sleep(self.poll_s)
        return True

    def _room(self, s: _Underway, h: str) -> bool:
        """Whether taking ``h`` out keeps every domain it is in within its allowance."""
        return all(sum(1 for o in s.out if o in self.domains[d]) < s.limit[d] for d in s.domains_of[h])

    def _fail(self, s: _Underway, hosts: Iterable[str], why: str | Mapping[str, str]) -> None:
        """Mark ``hosts`` failed (``why``: one reason, or one per host) and keep them out of service."""
        for h in hosts:
            n = s.nodes[h]
            n.status, n.message = "failed", why if isinstance(why, str) else why[h]
            n.steps.append("failed")
            try:
                self.schedulers[h].keep_out(h, reason_text([f"update failed: {n.message}"]))
            except CommandFailed as err:
                n.message += f" (and could not be kept out: {err})"
            self._say(f"rollout: {h} failed and stays out of service: {n.message}")

    def _interrupted(self, s: _Underway) -> bool:
        if self.cancelled() and not s.result.stopped:
            s.result.stopped = "interrupted: no more nodes taken out, updated or put back"
            self._say(f"rollout: {s.result.stopped}")
        return self.cancelled()

    def _check_stop(self, s: _Underway) -> None:
        """Once nodes have started: whether ``stop_reason`` stops the rollout from taking out more."""
        started = len(s.order) - len(s.pending)
        if self.stop_reason and not s.result.stopped and started:
            s.result.stopped = self.stop_reason(len(s.result.failed), started, len(s.order))
            if s.result.stopped:
                self._say(f"rollout: stopping, no more nodes taken out: {s.result.stopped}")

    def _take_out(self, s: _Underway) -> None:
        """Take out as many pending nodes as the domains allow, nodes running no job first."""
        for h in self._idle_first(s.pending):
            if not self._room(s, h) or self._interrupted(s):
                continue
            s.pending.remove(h)
            s.out.add(h)
            try:
                self.schedulers[h].take_out(h, reason_text(self.impacts[h].reasons))
            except CommandFailed as err:
                self._fail(s, [h], str(err))
                continue
            s.waiting[h] = self.clock()
            s.nodes[h].steps.append("drained")

    def _stop_without_room(self, s: _Underway) -> None:
        """Nothing in progress: nodes still pending have no room (failed nodes hold it), so the rollout stops."""
        if s.pending and not s.result.stopped:
            blocked = sorted(set(d for h in s.pending for d in s.domains_of[h] if not self._room(s, h)))
            s.result.stopped = (f"no room left in {', '.join(blocked)}: failed nodes "
                                f"{', '.join(sorted(s.out))} stay out of service")
            self._say(f"rollout: stopping: {s.result.stopped}")

    def _read(self, nodes: Iterable[str], ask: Callable[[Scheduler, list[str]], dict[str, Any]]
              ) -> Iterator[tuple[list[str], dict[str, Any]]]:
        """``ask`` each scheduler about its nodes of ``nodes`` (grouped before the first answer): its nodes and its
        answer; a scheduler that cannot be read is said and skipped this round."""
        for hosts in _by_scheduler(nodes, self.schedulers):
            try:
                answer = ask(self.schedulers[hosts[0]], hosts)
            except CommandFailed as err:
                self._say(f"rollout: could not read {', '.join(hosts)}: {err}")
                continue
            yield hosts, answer

    def _free_of_jobs(self, s: _Underway, waits: dict[str, tuple[str, float]]) -> list[str]:
        """The waiting nodes free of jobs now, no longer waiting; what the others wait for goes into ``waits``."""
        now = self.clock()
        free: list[str] = []
        for hosts, busy in self._read(s.waiting, lambda scheduler, hosts: scheduler.busy(hosts)):
            for h in hosts:
                if busy.get(h, "?"):
                    waits[h] = (busy.get(h, "?"), now - s.waiting[h])
                else:
                    free.append(h)
        for h in free:
            s.nodes[h].waited_s = now - s.waiting.pop(h)
            s.nodes[h].steps.append("idle")
        return free

    def _update(self, s: _Underway, free: list[str]) -> bool:
        """Update ``free`` together, reboot those whose class says so, gate and put back the rest. False: the
        update was interrupted (no node goes back)."""
        self._say(f"rollout: updating {', '.join(free)}")
        failed = self.apply(free)
        if self._interrupted(s):
            return False
        self._fail(s, [h for h in free if h in failed], failed)
        updated = [h for h in free if h not in failed]
        for h in updated:
            s.nodes[h].steps.append("updated")
        self._finish(s, self._reboot_updated(s, updated))
        return True

    def _reboot_updated(self, s: _Underway, updated: list[str]) -> list[str]:
        """Reboot the reboot-class nodes of ``updated``: through their scheduler (polled later by ``back``), else at
        once. Returns the nodes ready for the health gate now: the drain-class ones and those rebooted at once."""
        direct, plain_reboot = [], []
        for h in updated:
            if self.impacts[h].impact != "reboot":
                direct.append(h)
                continue
            try:
                if self.schedulers[h].reboot(h, reason_text(self.impacts[h].reasons)):
                    s.rebooting[h] = self.clock()
                    s.nodes[h].steps.append("reboot requested")
                else:
                    plain_reboot.append(h)
            except CommandFailed as err:
                self._fail(s, [h], str(err))
        if plain_reboot:
            failed = self.reboot(plain_reboot)
            self._fail(s, [h for h in plain_reboot if h in failed], {h: f"reboot: {m}" for h, m in failed.items()})
            for h in plain_reboot:
                if h not in failed:
                    s.nodes[h].steps.append("rebooted")
                    direct.append(h)
        return direct

    def _back_from_reboot(self, s: _Underway, waits: dict[str, tuple[str, float]]) -> list[str]:
        """The rebooting nodes back now, no longer rebooting; those the scheduler gave up on, or not back within
        ``reboot_timeout_s``, failed; what the others wait for goes into ``waits``."""
        back: list[str] = []
        for hosts, state in self._read(s.rebooting, lambda scheduler, hosts: scheduler.back(hosts)):
            for h in hosts:
                if state.get(h) == "":
                    back.append(h)
                elif state.get(h):
                    del s.rebooting[h]
                    self._fail(s, [h], state[h])
                elif self.clock() - s.rebooting[h] > self.reboot_timeout_s:
                    del s.rebooting[h]
                    self._fail(s, [h], f"not back {self.reboot_timeout_s:g} s after its reboot was requested")
                else:
                    waits[h] = ("its reboot", self.clock() - s.rebooting[h])
        for h in back:
            del s.rebooting[h]
            s.nodes[h].steps.append("rebooted")
        return back

    def _finish(self, s: _Underway, hosts: list[str]) -> None:
        """Health gate, then back into service."""
        failed = self.health(hosts) if hosts else {}
        if self._interrupted(s):
            return          # the gate did not finish: no node goes back
        self._fail(s, [h for h in hosts if h in failed], {h: f"health gate: {failed[h]}" for h in failed})
        for h in hosts:
            if h in failed:
                continue
            try:
                self.schedulers[h].put_back(h)
            except CommandFailed as err:
                self._fail(s, [h], str(err))
                continue
            s.nodes[h].status = "ok"
            s.nodes[h].steps.append("resumed")
            s.out.discard(h)
            self._say(f"rollout: {h} updated and back in service")

    def _idle_first(self, pending: list[str]) -> list[str]:
        """``pending`` with the nodes that run no job first, as far as their scheduler can tell (Slurm)."""
        idle: set[str] = set()
        for hosts in _by_scheduler(pending, self.schedulers):
            ask = getattr(self.schedulers[hosts[0]], "idle", None)
            try:
                idle |= ask(hosts) if ask else set(hosts)
            except CommandFailed:
                idle |= set(hosts)
        return sorted(pending, key=lambda h: h not in idle)


def _by_scheduler(hosts: Iterable[str], schedulers: Mapping[str, Scheduler]) -> list[list[str]]:
    """``hosts`` grouped by the scheduler object that owns them, in order."""
    groups: dict[int, list[str]] = {}
    for h in hosts:
        groups.setdefault(id(schedulers[h]), []).append(h)
    return list(groups.values())


def ansible_reboot(hosts: list[str], inventories: list[Path], private_data_dir: Path, ansible_config: Path,
                   cancel: Callable[[], bool] = lambda: False) -> Failures:
    """Reboot ``hosts`` no scheduler reboots through ansible-runner's ad-hoc ``ansible.builtin.reboot``
    (it waits until each is back); the hosts it failed on, with the reason."""
    from ..runner.ansible import _envvars, failure_message
    failed: Failures = {}
    reached: set[str] = set()

    def keep(event: dict[str, Any]) -> bool:
        data = event.get("event_data") or {}
        if event.get("event") in ("runner_on_failed", "runner_on_unreachable") and data.get("host"):
            failed[data["host"]] = failure_message(data.get("res") or {})
        if event.get("event") == "runner_on_ok" and data.get("host"):
            reached.add(data["host"])
        return False

    private_data_dir.mkdir(parents=True, exist_ok=True)
    ansible_runner.run(private_data_dir=str(private_data_dir), host_pattern=",".join(hosts),
                       module="ansible.builtin.reboot", module_args=json.dumps({"reboot_timeout": REBOOT_TIMEOUT_S}),
                       inventory=[str(i) for i in inventories], envvars=_envvars(str(ansible_config), AD_HOC_STRATEGY),
                       suppress_env_files=True, quiet=True, event_handler=keep, rotate_artifacts=20,
                       cancel_callback=cancel)
    for h in hosts:
        if h not in reached and h not in failed:
            failed[h] = "no result from the reboot"
    return failed
