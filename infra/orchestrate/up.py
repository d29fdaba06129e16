"""``gigafactory up``: validate the site, then run each phase in waves, leaving failed hosts out of later phases."""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import time
import dataclasses
from dataclasses import asdict, dataclass, field
from datetime import datetime, UTC
from pathlib import Path, PurePosixPath
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from ..image.cache import ImageInputError, netboot_bundles, served_node_types
from ..plan import Plan, build_plan
from ..plan.model import REBOOT_TIMEOUT_S
from ..render.files import render_all, write_all
from ..site import Site, parse_site
from ..site.load import read_site_text
from ..site.model import CONTROLLER, Execution
from ..site.hostlists import HostlistError, compress, expand
from ..usage.flexible import flexible_config
from ..usage.sacct import UsageInvalid
from ..runner.cancel import Cancellation
from ..plan.phases import BOOT, HEALTH, PHASES, PLAYBOOK_DIR, SLURM, Phase
from ..project import REPO_ROOT, ansible_root, project_archive
from .progress import Progress, print_summary, progress_for
from ..runner.execution import Shard, WorkerCommand, default_worker_command, shards
from .rollout import (NEW, ROLLED, AnsibleCommand, CommandFailed, HostImpact, NodeControl, Rollout, RolloutError,
                      Slurm, ansible_reboot, availability_domains, host_impacts, schedulers_for)
from ..runner.ansible import EventSink, HostFailure, WaveResult, run_shard, run_wave
from .state import (FAILED, OK, PENDING, UNREACHABLE, HostResult, new_run_dir, previous_run, read_hosts,
                    record_site_file, retry_starts, write_hosts, write_json)
from .waves import BatchInvalid, phase_waves, waves

class OrchestrationError(ValueError):
    """Invalid input to a run (unknown phase or host, bad batch, missing playbook, nothing to retry from)."""


@dataclass
class UpOptions:
    site: Path
    phases: tuple[Phase, ...] = PHASES
    only: list[str] | None = None            # --phase: run only these phases
    limit: str | None = None
    check: bool = False
    max_fail: float | None = None            # percent; default: the site's provisioning.max_fail_percent
    batch: list[str] | None = None           # wave sizes; default: the site's provisioning.batch
    retry: bool = False
    run_dir: Path | None = None
    runs_root: Path = Path("runs")
    inventories: list[Path] = field(default_factory=list)
    playbook_dir: Path = ansible_root() / PLAYBOOK_DIR      # stands for PLAYBOOK_DIR in each Phase.playbook
    ansible_config: Path = ansible_root() / "ansible.cfg"
    extravars: dict[str, Any] = field(default_factory=dict)
    out: TextIO | None = None
    progress: Progress | None = None
    worker_command: WorkerCommand | None = None  # how a shard reaches its execution host (tests: local processes)
    # Day two: host -> (impact class, reasons), e.g. from ``gigafactory diff``. Only these hosts run: none-class
    # hosts are left alone, live and restart ones run the phases as usual (live: then ``scontrol reconfigure``),
    # drain and reboot ones go through the rollout (rollout.py); replace is refused unless force_replace.
    impacts: Mapping[str, tuple[Any, Sequence[str]]] | None = None
    force_replace: bool = False              # --force-replace: replace-class hosts are applied like new ones instead
    site_text: str | None = None             # the site file's text as the caller already read it (``up --against``:
                                             # the diff it printed); None: read ``site`` here
    node_control: Callable[[str], NodeControl] | None = None   # how scontrol/kubectl reach a host (default ansible-runner)
    rollout_poll_s: float = 10
    rollout_reboot_timeout_s: float = REBOOT_TIMEOUT_S
    # SIGINT/SIGTERM (installed by the command line around the run): every ansible-runner job and rollout wait polls it
    cancel: Cancellation = field(default_factory=Cancellation)

    def playbook(self, phase: Phase) -> Path:
        """The phase's playbook (Phase.playbook) in ``playbook_dir``."""
        return self.playbook_dir / PurePosixPath(phase.playbook).relative_to(PLAYBOOK_DIR)


@dataclass
class PhaseReport:
    name: str
    hosts: list[str]
    waves: list[list[str]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    changed: int = 0
    note: str = ""
    ansible_seconds: float = 0.0
    task_seconds: float = 0.0
    host_tasks: int = 0
    controller_seconds: float = 0.0     # sharded runs: CPU time here to send shards and read their events

    def add_wave(self, result: WaveResult) -> None:
        """A wave's failed hosts, changes and times added to the phase's."""
        self.failed += list(result.failed)
        self.changed += sum(result.changed.values())
        self.ansible_seconds += result.ansible_seconds
        self.task_seconds += result.task_seconds
        self.host_tasks += result.host_tasks
        self.controller_seconds += result.controller_seconds


@dataclass
class RunOutcome:
    run_dir: Path
    hosts: dict[str, HostResult]
    phases: list[PhaseReport]
    exit_code: int
    stopped: str | None = None
    wall_seconds: float = 0.0
    left_drained: list[str] = field(default_factory=list)   # taken out of service by this run's rollout, not put back


def boot_bundles(site: Site, plan: Plan, site_path: Path) -> dict[str, str]:
    """What the boot phase serves (role boot_server's ``gf_boot_bundles``): each served node type's network-boot
    bundle in this machine's image cache, by node type; none built is an OrchestrationError naming the command."""
    try:
        return {t: str(p) for t, p in netboot_bundles(site, plan, site_path, served_node_types(site, plan)).items()}
    except ImageInputError as err:
        raise OrchestrationError(str(err)) from None


def flexible_windows(site: Site, now: float) -> dict[str, Any] | None:
    """What phase slurm writes to the controllers' flexible.json (role slurm_flexible's ``gf_flexible``): each
    flexible partition's windows from ``now`` on; a bad forecast or supply file is an OrchestrationError naming
    the file and line."""
    try:
        return flexible_config(site, now)
    except UsageInvalid as err:
        raise OrchestrationError(str(err)) from None


def selected_phases(phases: tuple[Phase, ...], only: list[str] | None) -> list[Phase]:
    if not only:
        return list(phases)
    names = [p.name for p in phases]
    unknown = [n for n in only if n not in names]
    if unknown:
        raise OrchestrationError(f"--phase: unknown phase {', '.join(unknown)}; phases are {', '.join(names)}")
    return [p for p in phases if p.name in only]


def selected_hosts(plan: Plan, limit: str | None) -> list[str]:
    """Hosts named by ``--limit``: comma-separated host names, group names or hostlist expressions."""
    if not limit:
        return list(plan.hosts)
    wanted: set[str] = set()
    for item in (s.strip() for s in limit.split(",")):
        if not item:
            continue
        if item in plan.groups:
            wanted.update(plan.groups[item])
            continue
        try:
            names = expand(item)
        except HostlistError as err:
            raise OrchestrationError(f"--limit: {item!r}: {err}") from err
        unknown = [n for n in names if n not in plan.hosts]
        if unknown:
            raise OrchestrationError(f"--limit: {', '.join(unknown[:5])} not a host or group of the site")
        wanted.update(names)
    return [h for h in plan.hosts if h in wanted]


def _record_wave(hosts: dict[str, HostResult], phase: str, result: WaveResult) -> None:
    for name in result.hosts:
        r = hosts[name]
        r.phase = phase
        r.changed += result.changed.get(name, 0)
        failure = result.failed.get(name)
        if failure:
            r.status = UNREACHABLE if failure.unreachable else FAILED
            r.failed_task, r.message = failure.task, failure.message
        elif result.cancelled:
            r.message = f"interrupted during {phase}"      # pending: --retry starts it from this phase
        else:
            r.phases_done.append(phase)


def _final_status(hosts: dict[str, HostResult], plan_of: dict[str, list[str]]) -> None:
    """A host that did not fail is ok once every phase planned for it is done; pending otherwise."""
    for name, r in hosts.items():
        if r.status in (FAILED, UNREACHABLE):
            continue
        r.status = OK if all(p in r.phases_done for p in plan_of[name]) else PENDING


def stop_reason(phase: str, wave_failed: int, wave_hosts: int, phase_failed: int, phase_hosts: int,
                max_fail: float) -> str | None:
    """Why the run stops after this wave: more than ``max_fail`` percent of the wave's or the phase's hosts failed."""
    for which, failed, total in (("wave", wave_failed, wave_hosts), ("phase", phase_failed, phase_hosts)):
        pct = 100 * failed / total
        if pct > max_fail:
            return (f"{phase}: {pct:.0f}% of the {which}'s hosts failed (more than --max-fail {max_fail:g}%); "
                    "later waves and phases not run")
    return None


def _run_sharded(plan: Plan, execution: Execution, worker_command: WorkerCommand, wave: list[str], ident: str,
                 sink: EventSink, local: list[str] = (), **job) -> WaveResult:
    """One wave as shards, one per execution host, run at once; their results merged as one wave's. The hosts in
    ``local`` go to the controller's shard, whoever the execution hosts are (Phase.local)."""
    lock = threading.Lock()

    def locked(event: dict) -> None:
        with lock:
            sink(event)

    here = [h for h in wave if h in set(local)]
    parts = shards(plan, [h for h in wave if h not in set(here)], execution)
    if here:
        mine = next((p for p in parts if p.executor == CONTROLLER), None)
        parts = [Shard(CONTROLLER, here + (mine.hosts if mine else []))] + [p for p in parts if p is not mine]
    results: list[WaveResult | None] = [None] * len(parts)

    def run(i: int) -> None:
        name = f"{ident}-{parts[i].executor}"
        try:
            results[i] = run_shard(executor=parts[i].executor, worker=worker_command(parts[i].executor, name),
                                   hosts=parts[i].hosts, ident=name, sink=locked, idle_timeout=execution.idle_timeout,
                                   **job)
        except Exception as exc:  # noqa: BLE001 - a broken executor fails its shard's hosts, never the others'
            results[i] = WaveResult(parts[i].hosts, {h: HostFailure(None, f"execution host {parts[i].executor}: {exc}",
                                                                     unreachable=True) for h in parts[i].hosts})

    threads = [threading.Thread(target=run, args=(i,), name=f"shard-{p.executor}") for i, p in enumerate(parts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    merged = WaveResult(hosts=list(wave))
    for r in results:
        assert r is not None
        merged.failed.update(r.failed)
        merged.changed.update(r.changed)
        merged.ansible_seconds = max(merged.ansible_seconds, r.ansible_seconds)
        merged.task_seconds += r.task_seconds
        merged.host_tasks += r.host_tasks
        merged.controller_seconds += r.controller_seconds
        merged.cancelled = merged.cancelled or r.cancelled
    merged.status = "failed" if merged.failed else "successful"
    return merged


def _reconfigure(slurm: Slurm, progress: Progress) -> str | None:
    """``scontrol reconfigure`` once on the controller after a live-class change; why the run stops if it failed."""
    try:
        slurm.reconfigure()
    except CommandFailed as err:
        return f"live-class change: {err}"
    progress.message("live-class change applied: scontrol reconfigure on the Slurm controller")
    return None


def _roll_out(run: _Run, rolled: list[str]) -> tuple[dict[str, Any], str | None, list[str]]:
    """The drain- and reboot-class hosts ``rolled`` through the rollout: each selected phase but health as the
    update, the health phase as the gate. Returns the rollout's record for summary.json, why the run stopped, and
    the hosts it left out of service."""
    options, plan, progress = run.options, run.plan, run.progress
    health = next((p for p in options.phases if p.name == HEALTH.name), None)     # the gate before a node is back
    updates = [p for p in run.inputs.phases if p.name != HEALTH.name]
    members = {p.name: set(p.hosts(plan)) for p in options.phases}
    runs = iter(range(1, 10**6))

    def run_phases(which: list[Phase], targets: list[str]) -> dict[str, str]:
        failed: dict[str, str] = {}
        for phase in which:
            if options.cancel.requested:
                break                       # the rollout sees it and stops; no further phase starts
            index = run.phase_names.index(phase.name)
            wave = [h for h in targets if h in members[phase.name] and run.start[h] <= index and h not in failed]
            if not wave:
                continue
            progress.wave_start(phase.name, 0, wave)
            result = run.run_one(phase, wave, f"rollout-{next(runs):03d}-{phase.name}")
            progress.wave_end(phase.name, result.ok, list(result.failed))
            failed.update({h: f"{phase.name}: {f.task or ''}: {f.message}" for h, f in result.failed.items()})
        return failed

    max_fail = run.inputs.max_fail
    rollout = Rollout(
        impacts={h: run.impacts[h] for h in rolled}, domains=availability_domains(plan),
        schedulers=schedulers_for(plan, run.control),
        apply=lambda targets: run_phases(updates, targets),
        health=lambda targets: run_phases([health], targets) if health else {},
        reboot=run.reboot, max_unavailable_percent=run.inputs.site.provisioning.max_unavailable_percent,
        max_fail=max_fail, progress=progress,
        poll_s=options.rollout_poll_s, reboot_timeout_s=options.rollout_reboot_timeout_s,
        cancelled=options.cancel, sleep=options.cancel.wait,
        stop_reason=lambda failed, started, total: stop_reason("rollout", failed, started, failed, total, max_fail))
    result = rollout.run()
    for h, node in result.nodes.items():
        if node.status == "failed" and run.hosts[h].status not in (FAILED, UNREACHABLE):
            run.hosts[h].status, run.hosts[h].message = FAILED, node.message
    return {h: asdict(n) for h, n in result.nodes.items()}, result.stopped, result.left_out


RUN_UMASK = 0o077   # run directories 0700, files 0600: ansible-runner's artifacts, events and stdout included


def up(options: UpOptions) -> RunOutcome:
    """Run the site's phases; raises SiteInvalid or OrchestrationError on invalid input, before anything runs.

    Everything the run writes (its directory, ansible-runner's private data directory and artifacts, and whatever
    ansible-playbook creates on this machine) is readable by its owner only: the umask is 077 for the run.
    """
    previous = os.umask(RUN_UMASK)
    try:
        return _up(options)
    finally:
        os.umask(previous)


def _up(options: UpOptions) -> RunOutcome:
    """Inputs checked, hosts chosen and where each starts, the run directory opened; then the phases and the
    rollout (``_Run.execute``), and the run's record and summary, also when a second signal stops it at once."""
    started_at, t0 = datetime.now(UTC), time.monotonic()
    inputs = _checked_inputs(options)
    site, plan = inputs.site, inputs.plan
    impacts, chosen = _selected_impacts(options, plan, selected_hosts(plan, options.limit))
    runs = Path(options.run_dir).parent if options.run_dir else options.runs_root / site.site.name
    start, previous = _first_phases(options, runs, chosen)
    boot = [p for p in inputs.phases if p.name == BOOT.name]      # it serves the node types' bundles from the image cache
    bundles = boot_bundles(site, plan, inputs.site_path) if boot and set(boot[0].hosts(plan)) & set(start) else None
    # the flexible partitions' windows from now on (docs/power.md): read before anything runs, a bad file refused
    flexible = flexible_windows(site, time.time()) if any(p.name == SLURM.name for p in inputs.phases) else None
    run_dir = Path(options.run_dir) if options.run_dir else new_run_dir(runs)
    run_dir.mkdir(parents=True, exist_ok=True)
    run_dir.chmod(0o700)          # also a --run-dir that existed before

    out = options.out or sys.stdout
    progress = options.progress or progress_for([p.name for p in inputs.phases], out)
    progress.message(f"run directory: {run_dir}")
    if previous:
        progress.message(f"retrying {len(start)} host(s) from {previous}")
    record_site_file(run_dir, inputs.site_text)     # what `gigafactory diff --against RUN_DIR` compares with
    write_all(render_all(site, plan), run_dir / "rendered")
    rolled, after = _rollout_order(options, inputs, impacts, start, progress)
    run = _Run(options, inputs, impacts, start, run_dir, progress, _ansible_for(options, inputs, run_dir, bundles, flexible))
    head = {
        "site": site.site.name, "site_file": str(inputs.site_path), "started": started_at.isoformat(),
        "check": options.check, "retry_of": str(previous) if previous else None, "limit": options.limit,
        "max_fail_percent": inputs.max_fail, "batch": inputs.sizes,
        "inventories": [str(i) for i in run.ansible.inventories], "playbook_dir": str(options.playbook_dir)}
    try:
        stopped = run.execute(rolled, after)
    except KeyboardInterrupt:
        # the second signal: stopped at once; the record is still written, then the command line exits
        progress.close()
        _conclude_run(run, "interrupted at once: the running tasks were killed", out, head, t0)
        raise
    finally:
        progress.close()
    return _conclude_run(run, stopped, out, head, t0)


@dataclass
class _Inputs:
    """What ``up`` checked before anything runs: the site as read and validated, its plan, the phases to run and
    the run's limits."""
    site_path: Path
    site_text: str                  # the text validated: the copy the run records
    site: Site
    plan: Plan
    phases: list[Phase]             # the phases selected (--phase), in order
    sizes: list[str]                # wave sizes: --batch, else the site's provisioning.batch
    max_fail: float                 # percent: --max-fail, else the site's provisioning.max_fail_percent


def _checked_inputs(options: UpOptions) -> _Inputs:
    """The site read, validated and planned, and every option checked against it: SiteInvalid or
    OrchestrationError before anything runs."""
    site_path = Path(options.site).resolve()
    # read once: the copy the run records is the text validated (and the text the caller's diff was computed from)
    site_text = read_site_text(site_path) if options.site_text is None else options.site_text
    site: Site = parse_site(site_text, str(site_path), site_path.parent)
    plan = build_plan(site, str(site_path))
    phases = selected_phases(options.phases, options.only)
    for phase in phases:
        if not options.playbook(phase).is_file():
            raise OrchestrationError(f"phase {phase.name}: no playbook {options.playbook(phase)}")
    for inv in options.inventories:
        if not Path(inv).exists():
            raise OrchestrationError(f"--inventory: {inv} does not exist")
    sizes = options.batch or list(site.provisioning.batch)
    try:
        waves(["x"], sizes)
    except BatchInvalid as err:
        raise OrchestrationError(str(err)) from err
    max_fail = site.provisioning.max_fail_percent if options.max_fail is None else options.max_fail
    if not 0 <= max_fail <= 100:
        raise OrchestrationError(f"--max-fail: {max_fail} is not a percentage (0-100)")
    if site.provisioning.strategy.startswith("mitogen_") and importlib.util.find_spec("ansible_mitogen") is None:
        raise OrchestrationError(f"provisioning.strategy: {site.provisioning.strategy} needs the mitogen package beside "
                                 "Ansible (pip install 'gigafactory[mitogen]')")
    return _Inputs(site_path, site_text, site, plan, phases, sizes, max_fail)


def _selected_impacts(options: UpOptions, plan: Plan, chosen: list[str]) -> tuple[dict[str, HostImpact], list[str]]:
    """The day-two impacts (``options.impacts``) by host, and those of the ``chosen`` hosts that run: none-class
    hosts are left alone, replace-class ones refused unless --force-replace (then applied like new ones). Without
    impacts, every chosen host runs."""
    impacts: dict[str, HostImpact] = {}
    if options.impacts is None:
        return impacts, chosen
    try:
        impacts = host_impacts(options.impacts, plan.hosts)
    except RolloutError as err:
        raise OrchestrationError(f"impacts: {err}") from err
    replaced = [h for h in chosen if h in impacts and impacts[h].impact == "replace"]
    if replaced and not options.force_replace:
        by_reason: dict[str, list[str]] = {}
        for h in replaced:
            for reason in impacts[h].reasons or ("replace",):
                by_reason.setdefault(reason, []).append(h)
        raise OrchestrationError("\n".join(
            [f"{reason} is a replace-class change of {compress(hosts)}: they cannot be updated in place"
             for reason, hosts in by_reason.items()]
            + ["refused, nothing touched; --force-replace applies those hosts like new ones (every phase, "
               "nothing drained)"]))
    for h in replaced:                          # forced: like a new host, every phase, nothing drained
        impacts[h] = dataclasses.replace(impacts[h], impact=NEW)
    return impacts, [h for h in chosen if h in impacts and impacts[h].impact != "none"]


def _first_phases(options: UpOptions, runs: Path, chosen: list[str]) -> tuple[dict[str, int], Path | None]:
    """Host -> the index in ``options.phases`` of its first phase: 0 for each chosen host, or with --retry where
    the previous run of the site (in ``runs``) left it, for the chosen hosts that run left unfinished; and that run."""
    start = {h: 0 for h in chosen}
    previous = None
    if options.retry:
        previous = previous_run(runs, options.check, exclude=options.run_dir and Path(options.run_dir))
        if previous is None:
            raise OrchestrationError(f"--retry: no earlier {'check ' if options.check else ''}run of this site in {runs}")
        again = retry_starts(read_hosts(previous), [p.name for p in options.phases])
        start = {h: again[h] for h in chosen if h in again}
    return start, previous


def _rollout_order(options: UpOptions, inputs: _Inputs, impacts: dict[str, HostImpact], start: dict[str, int],
                   progress: Progress) -> tuple[list[str], list[str]]:
    """The hosts that go through the rollout (drain- and reboot-class), and the live-class hosts that run after it;
    in check mode none rolls (a rollout changes nothing there) and the progress says which would."""
    # drain- and reboot-class hosts go through the rollout, after the others' phases (not in check mode: it changes nothing)
    rolled = [h for h in start if h in impacts and impacts[h].impact in ROLLED] if not options.check else []
    # When Slurm nodes roll, the live-class hosts (the controllers, whose slurm.conf gains the nodes' new
    # definitions) run after the rollout: slurmctld learns a definition only once every affected node has it
    # (docs/day-two.md, "Order"). Restart-class and new hosts run before, as Slurm's upgrade order wants.
    compute = set(inputs.plan.groups.get("slurm_compute", ()))
    after = [h for h in start if impacts.get(h) and impacts[h].impact == "live"] \
        if any(h in compute for h in rolled) else []
    if options.check and impacts:
        would = [h for h in start if h in impacts and impacts[h].impact in ROLLED]
        if would:
            progress.message(f"check mode: {len(would)} drain- or reboot-class host(s) would roll out at most "
                             f"{inputs.site.provisioning.max_unavailable_percent:g}% of a partition, pool or cluster "
                             f"at a time ({', '.join(would[:8])}{' ...' if len(would) > 8 else ''}); nothing is "
                             "drained, their phases run in check mode with the others'")
    return rolled, after


@dataclass
class _Ansible:
    """How the run's waves reach Ansible: the inventories, the extra variables, and where playbooks run (as shards
    on the execution hosts through ``worker_command``, or here)."""
    inventories: list[Path]         # the site file first, then --inventory's connection inventories
    extravars: dict[str, Any]
    execution: Execution
    sharded: bool
    worker_command: WorkerCommand


def _ansible_for(options: UpOptions, inputs: _Inputs, run_dir: Path, bundles: dict[str, str] | None,
                 flexible: dict[str, Any] | None = None) -> _Ansible:
    """How this run reaches Ansible; the project archive for the execution hosts is written into ``run_dir``,
    ``bundles`` (the boot phase's) go to the playbooks as ``gf_boot_bundles``, ``flexible`` (phase slurm's) as
    ``gf_flexible``."""
    inventories = [inputs.site_path, *(Path(i).resolve() for i in options.inventories)]
    # Declared execution hosts (or a test's worker command): each wave runs as shards through ansible-runner's
    # transmit / worker / process; otherwise ansible-runner runs each wave here, as it always did.
    execution = inputs.site.provisioning.execution
    sharded = list(execution.hosts) != [CONTROLLER] or options.worker_command is not None
    extravars = dict(options.extravars)
    if "execution" in inputs.plan.groups and any(p.local for p in inputs.phases):
        # The base phase installs the project on the execution hosts from this archive (role execution_host).
        extravars["gf_project_archive"] = project_archive(REPO_ROOT, (run_dir / "project").resolve()).extravars()
    if bundles is not None:
        extravars["gf_boot_bundles"] = bundles
    if flexible is not None:
        extravars["gf_flexible"] = flexible
    worker_command = options.worker_command or default_worker_command(
        inputs.plan, inputs.site.provisioning.user, (run_dir / "ansible" / "work").resolve(), inventories[1:])
    return _Ansible(inventories, extravars, execution, sharded, worker_command)


@dataclass
class _Run:
    """One run under way: what its waves need, and what it has recorded so far (each host's result, each phase's
    report, the rollout's record and the nodes it left out of service)."""
    options: UpOptions
    inputs: _Inputs
    impacts: dict[str, HostImpact]
    start: dict[str, int]           # host -> the index in options.phases of its first phase
    run_dir: Path
    progress: Progress
    ansible: _Ansible
    hosts: dict[str, HostResult] = field(init=False)
    reports: list[PhaseReport] = field(default_factory=list)
    rollout_report: dict[str, Any] | None = None
    left_drained: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.hosts = {h: HostResult(h) for h in self.start}

    @property
    def plan(self) -> Plan:
        return self.inputs.plan

    @property
    def phase_names(self) -> list[str]:
        return [p.name for p in self.options.phases]

    def execute(self, rolled: list[str], after: list[str]) -> str | None:
        """The phases on the hosts neither ``rolled`` nor ``after``, then the rollout of ``rolled``, then ``after``
        (the live-class hosts that follow it), each live-class change ending in ``scontrol reconfigure``; why the
        run stopped, if it did."""
        stopped = self.in_waves({h for h in self.hosts if h not in rolled and h not in after}) or self.interrupted()
        if not stopped and not after:
            stopped = self.reconfigure() or self.interrupted()
        if rolled and not stopped:
            self.rollout_report, stopped, self.left_drained = _roll_out(self, rolled)
            stopped = self.interrupted() or stopped
            write_hosts(self.run_dir, self.hosts)
        if after and stopped:
            self.progress.message(f"not run: the live-class hosts {', '.join(after)} (they follow the rollout, which "
                                  "stopped)")
        elif after:
            self.progress.message(f"after the rollout: the live-class hosts {', '.join(after)}, then scontrol "
                                  "reconfigure")
            stopped = self.in_waves(set(after), "after-rollout-") or self.reconfigure() or self.interrupted()
        return stopped

    def in_waves(self, these: set[str], prefix: str = "") -> str | None:
        """Each selected phase on those of ``these`` it plans, in waves; why the run stops, if it does."""
        for phase in self.inputs.phases:
            stopped = self._phase_in_waves(phase, these, prefix)
            if stopped:
                return stopped
        return None

    def _phase_in_waves(self, phase: Phase, these: set[str], prefix: str) -> str | None:
        """``phase`` in waves on those of ``these`` it plans from where they start and that have not failed, with
        its report; why the run stops, if it does."""
        plan, progress, index = self.plan, self.progress, self.phase_names.index(phase.name)
        targets = [h for h in phase.hosts(plan) if h in these and self.start[h] <= index
                   and self.hosts[h].status not in (FAILED, UNREACHABLE)]
        report = PhaseReport(phase.name, targets)
        self.reports.append(report)
        if not targets:
            report.note = "no hosts"
            progress.phase_end(phase.name, "no hosts")
            return None
        # The site's batch gives way to one wave for a small phase; a --batch given on the command line is kept.
        local = phase.local_hosts(plan, targets) if self.ansible.sharded else []
        report.waves = phase_waves(targets, self.inputs.sizes, phase.providers(plan, targets),
                                   one_wave_when_small=self.options.batch is None and not local)
        progress.phase_start(phase.name, targets, len(report.waves))
        stopped = None
        for k, wave in enumerate(report.waves, 1):
            stopped = self.interrupted()        # asked between waves: the next one does not start
            if stopped:
                break
            progress.wave_start(phase.name, k, wave)
            result = self.run_one(phase, wave, f"{prefix}{index + 1:02d}-{phase.name}-w{k}", local)
            report.add_wave(result)
            progress.wave_end(phase.name, result.ok, list(result.failed))
            stopped = stop_reason(phase.name, len(result.failed), len(wave), len(report.failed), len(targets),
                                  self.inputs.max_fail) or self.interrupted()
            if stopped:
                break
        report.note = "stopped" if stopped else f"done: {len(targets) - len(report.failed)} ok, {len(report.failed)} failed"
        progress.phase_end(phase.name, report.note)
        return stopped

    def run_one(self, phase: Phase, wave: list[str], ident: str, local: list[str] = ()) -> WaveResult:
        """One wave of ``phase`` on ``wave``, recorded in ``hosts`` and the run directory; ``local`` as Phase.local."""
        options, ansible = self.options, self.ansible
        job = dict(
            playbook=options.playbook(phase).resolve(), inventories=ansible.inventories,
            private_data_dir=self.run_dir / "ansible", ansible_config=options.ansible_config.resolve(),
            check=options.check, extravars={**ansible.extravars, "gf_phase": phase.name},
            strategy=self.inputs.site.provisioning.strategy, cancel=options.cancel)

        def sink(event: dict, name: str = phase.name) -> None:
            self.progress.event(name, event)

        if ansible.sharded:
            result = _run_sharded(self.plan, ansible.execution, ansible.worker_command, wave, ident, sink, local, **job)
        else:
            result = run_wave(hosts=wave, ident=ident, sink=sink, **job)
        _record_wave(self.hosts, phase.name, result)
        write_hosts(self.run_dir, self.hosts)
        return result

    def interrupted(self) -> str | None:
        if self.options.cancel.requested:
            return f"interrupted ({self.options.cancel.name}): later tasks, waves and phases not run"
        return None

    def reconfigure(self) -> str | None:
        """``scontrol reconfigure`` after live-class changes on hosts that did not fail (not in check mode); why the
        run stops if it failed."""
        live = [h for h in self.start if h in self.impacts and self.impacts[h].impact == "live"
                and self.hosts[h].status not in (FAILED, UNREACHABLE)]
        if live and self.plan.slurm is not None and not self.options.check:
            return _reconfigure(Slurm(self.control(self.plan.slurm.controllers[0][0])), self.progress)
        return None

    def control(self, host: str) -> NodeControl:
        """How scontrol and kubectl reach ``host``: ``options.node_control``, else ansible-runner's ad-hoc command."""
        if self.options.node_control:
            return self.options.node_control(host)
        return AnsibleCommand(host, self.ansible.inventories, (self.run_dir / "ansible" / "control").resolve(),
                              self.options.ansible_config.resolve(), cancel=self.options.cancel)

    def reboot(self, hosts: list[str]) -> dict[str, str]:
        """Reboot ``hosts`` that no scheduler reboots, through Ansible; those that failed, with the reason."""
        return ansible_reboot(hosts, self.ansible.inventories, (self.run_dir / "ansible" / "control").resolve(),
                              self.options.ansible_config.resolve(), self.options.cancel)

    def planned(self) -> dict[str, list[str]]:
        """Host -> the selected phases planned for it from where it starts."""
        members = {p.name: set(p.hosts(self.plan)) for p in self.inputs.phases}
        names = self.phase_names
        return {h: [p.name for p in self.inputs.phases if names.index(p.name) >= self.start[h] and h in members[p.name]]
                for h in self.start}


def resume_commands(plan: Plan, nodes: list[str]) -> list[str]:
    """How an operator puts ``nodes`` (left out of service by a rollout) back once checked: by their scheduler."""
    compute = [h for h in nodes if h in set(plan.groups.get("slurm_compute", ()))]
    workers = [h for h in nodes if h in set(plan.groups.get("k8s_worker", ())) and h not in compute]
    return ([f"scontrol update nodename={compress(compute)} state=resume"] if compute else []) \
        + [f"kubectl uncordon {h}" for h in workers]


def _conclude_run(run: _Run, stopped: str | None, out: TextIO, head: dict[str, Any], t0: float) -> RunOutcome:
    """hosts.json and summary.json, then the final message: why it stopped, the hosts left drained, the table."""
    hosts, plan, cancel, left_drained = run.hosts, run.plan, run.options.cancel, run.left_drained
    _final_status(hosts, run.planned())
    write_hosts(run.run_dir, hosts)
    if cancel.requested:                # 130 for SIGINT, 143 for SIGTERM, as the shell reports a process it killed
        exit_code = cancel.exit_code
    else:
        exit_code = 0 if all(r.status == OK for r in hosts.values()) and not stopped else 1
    outcome = RunOutcome(run.run_dir, hosts, run.reports, exit_code, stopped, time.monotonic() - t0, list(left_drained))
    write_json(run.run_dir / "summary.json", {
        **head, "finished": datetime.now(UTC).isoformat(), "phases": [asdict(r) for r in run.reports],
        "rollout": run.rollout_report, "stopped": stopped, "exit_code": exit_code,
        "left_drained": list(left_drained), "resume": resume_commands(plan, left_drained),
        "wall_seconds": outcome.wall_seconds,
        "hosts": {s: sum(1 for r in hosts.values() if r.status == s) for s in (OK, FAILED, UNREACHABLE, PENDING)},
    })
    if stopped:
        print(f"stopped: {stopped}", file=out)
    if left_drained:
        print(f"left drained by this run: {compress(left_drained)}; once checked, resume them with: "
              + "; ".join(resume_commands(plan, left_drained)), file=out)
    print_summary(hosts, out)
    print(f"run directory: {run.run_dir}", file=out)
    return outcome
