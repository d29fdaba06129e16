"""NodeConfiguration: the Ansible phases on the site's hosts, as Pulumi dynamic resources.

A phase is one playbook run against one inventory group. Its resource carries only
a hash of what the phase reads (the plan's view of its hosts and the playbook and
role files it uses); ``diff`` compares hashes, so a phase re-runs exactly when one
of those changed. One resource per phase, whatever the number of hosts.

The run itself goes through the project's orchestration layer, reached through
the narrow interface below (``PhaseRequest`` in, ``PhaseResult`` out).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Iterable, Mapping, Sequence

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult

from ..plan import Plan

ORCHESTRATION_MODULE = "infra.orchestrate"
KUBECONFIG_VAR = "kubernetes_kubeconfig_dest"   # where the kubernetes role writes the admin kubeconfig


@dataclass(frozen=True)
class Phase:
    name: str
    group: str                          # inventory group the playbook is limited to
    roles: tuple[str, ...]              # roles under playbooks/roles/ the playbook applies

    @property
    def playbook(self) -> str:
        return f"playbooks/{self.name}.yml"

    def files(self) -> tuple[str, ...]:
        """Repository paths whose content the phase depends on: its playbook, the shared validation play, its roles."""
        return (self.playbook, "playbooks/validated.yml") + tuple(f"playbooks/roles/{role}" for role in self.roles)


# In the order they run. Slurm only on sites with a slurm section.
PHASES: tuple[Phase, ...] = (
    Phase("base", "all", ("base",)),
    Phase("rdma", "rdma", ("rdma",)),
    Phase("gpu", "gpu", ("gpu",)),
    Phase("slurm", "slurm", ("slurm",)),
    Phase("health", "all", ("health",)),
)


def kubernetes_phase(group: str) -> Phase:
    """The kubeadm bootstrap of one cluster: the ``kubernetes`` role on the cluster's group."""
    return Phase("kubernetes", group, ("kubernetes",))


# --- the interface to the orchestration layer -----------------------------------------


@dataclass(frozen=True)
class PhaseRequest:
    """What the orchestration layer needs to run one phase."""
    phase: str
    playbook: str                       # path relative to the repository root
    limit: str                          # inventory group (Ansible --limit)
    site_file: str                      # the site file the inventory is built from
    root: str                           # repository root
    extra_vars: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PhaseResult:
    """What a phase hands back; ``kubeconfig`` only from the ``kubernetes`` phase."""
    ok: bool
    summary: str = ""
    kubeconfig: str | None = None


class OrchestrationMissing(NotImplementedError):
    """The orchestration layer (``infra.orchestrate``: ``up``, ``UpOptions``, ``Phase``) is not installed."""


def _orchestration():
    try:
        module = importlib.import_module(ORCHESTRATION_MODULE)
    except ModuleNotFoundError as err:
        if err.name is None or not ORCHESTRATION_MODULE.startswith(err.name):
            raise
        module = None
    if module is None or not all(hasattr(module, n) for n in ("up", "UpOptions", "Phase")):
        return None
    return module


def run_phase(request: PhaseRequest) -> PhaseResult:
    """Run one phase through the orchestration layer: ``up(UpOptions(site, phases=(Phase,), ...))``.

    The ``kubernetes`` phase is told (``kubernetes_kubeconfig_dest``) where to write the admin
    kubeconfig, which comes back in the result. Raises OrchestrationMissing when the layer is
    absent, RuntimeError when the phase fails; the provider turns either into a failed step.
    """
    module = _orchestration()
    if module is None:
        raise OrchestrationMissing(
            f"phase {request.phase!r}: the orchestration layer ({ORCHESTRATION_MODULE}) is not available; "
            f"run it by hand (ansible-playbook {request.playbook} --limit {request.limit}) and then `pulumi refresh`")
    root = Path(request.root)
    extravars = dict(request.extra_vars)
    with tempfile.TemporaryDirectory(prefix="gigafactory-phase-") as scratch:
        kubeconfig_path = Path(scratch) / "kubeconfig"
        if request.phase == "kubernetes":
            extravars[KUBECONFIG_VAR] = str(kubeconfig_path)
        everyone = request.limit == "all"
        # The orchestration's own groups for the phase set its host order (the kubernetes phase: control planes
        # first); the limit keeps the request's group (one cluster's hosts).
        groups = next((p.groups for p in getattr(module, "PHASES", ()) if p.name == request.phase),
                      () if everyone else (request.limit,))
        options = module.UpOptions(site=root / request.site_file,
                                   phases=(module.Phase(request.phase, groups),),
                                   limit=None if everyone else request.limit, extravars=extravars,
                                   runs_root=root / "runs", out=sys.stderr)
        outcome = module.up(options)
        if outcome.exit_code != 0:
            raise RuntimeError(f"phase {request.phase!r} on {request.limit!r} failed (exit {outcome.exit_code}); "
                               f"see {outcome.run_dir}")
        kubeconfig = kubeconfig_path.read_text(encoding="utf-8") if kubeconfig_path.is_file() else None
    if request.phase == "kubernetes" and kubeconfig is None:
        raise RuntimeError(f"the kubernetes phase wrote no kubeconfig to {KUBECONFIG_VAR}; see {outcome.run_dir}")
    return PhaseResult(ok=True, summary=f"{len(outcome.hosts)} host(s); run {outcome.run_dir}", kubeconfig=kubeconfig)


# --- hashing ------------------------------------------------------------------------


def hosts_view(plan: Plan, group: str) -> list[dict[str, Any]]:
    """The plan's view of a group's hosts, as plain data (``all``: every host)."""
    names = plan.hosts if group == "all" else plan.groups.get(group, ())
    return [asdict(plan.hosts[name]) for name in names]


def files_digest(root: Path, paths: Iterable[str]) -> str:
    """Digest of the files at (or under) ``paths``; a missing path counts as absent, not as an error."""
    digest = hashlib.sha256()
    for rel in paths:
        path = root / rel
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path] if path.is_file() else []
        digest.update(f"{rel}:{len(files)}\0".encode())
        for file in files:
            digest.update(file.relative_to(root).as_posix().encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def inputs_hash(view: Any, root: Path, paths: Sequence[str]) -> str:
    """Hash of a phase's inputs: the plan's view (any JSON data) and the files it uses."""
    digest = hashlib.sha256(json.dumps(view, sort_keys=True, default=str).encode())
    digest.update(files_digest(root, paths).encode())
    return digest.hexdigest()


# --- the dynamic resource -----------------------------------------------------------


class AnsiblePhaseProvider(ResourceProvider):
    """Runs a phase on create, and again on update; ``diff`` looks at the inputs hash alone."""

    def _run(self, props: dict[str, Any]) -> dict[str, Any]:
        request = PhaseRequest(phase=props["phase"], playbook=props["playbook"], limit=props["limit"],
                               site_file=props["site_file"], root=props["root"], extra_vars=dict(props.get("extra_vars") or {}))
        result = run_phase(request)
        return {**props, "summary": result.summary, "kubeconfig": result.kubeconfig}

    def create(self, props: dict[str, Any]) -> CreateResult:
        outs = self._run(props)
        return CreateResult(id_=f"{props['phase']}:{props['limit']}", outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = olds.get("inputs_hash") != news.get("inputs_hash")
        return DiffResult(changes=changed, replaces=[], stables=["phase", "limit"], delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self._run(news))


class AnsiblePhase(pulumi.dynamic.Resource, module="gigafactory", name="AnsiblePhase"):
    """One phase, run by the orchestration layer; ``kubeconfig`` is set by the kubernetes phase."""

    inputs_hash: pulumi.Output[str]
    kubeconfig: pulumi.Output[str | None]

    def __init__(self, name: str, phase: Phase, request: Mapping[str, Any], digest: str,
                 opts: pulumi.ResourceOptions | None = None):
        props = {
            "phase": phase.name,
            "playbook": phase.playbook,
            "limit": phase.group,
            "site_file": request["site_file"],
            "root": request["root"],
            "extra_vars": dict(request.get("extra_vars") or {}),
            "inputs_hash": digest,
            "summary": None,
            "kubeconfig": None,
        }
        secret = pulumi.ResourceOptions(additional_secret_outputs=["kubeconfig"])
        super().__init__(AnsiblePhaseProvider(), name, props, pulumi.ResourceOptions.merge(opts, secret))


# --- the component --------------------------------------------------------------------


@dataclass(frozen=True)
class NodeConfigurationArgs:
    plan: Plan
    site_file: str                      # relative to root
    root: Path
    has_slurm: bool


class NodeConfiguration(pulumi.ComponentResource):
    """The Ansible phases in order (base, rdma, gpu, slurm, health), one dynamic resource each."""

    def __init__(self, name: str, args: NodeConfigurationArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gigafactory:infra:NodeConfiguration", name, None, opts)
        self.phases: dict[str, AnsiblePhase] = {}
        request = {"site_file": args.site_file, "root": str(args.root)}
        previous: list[pulumi.Resource] = []
        for phase in PHASES:
            if phase.name == "slurm" and not args.has_slurm:
                continue
            if phase.group != "all" and not args.plan.groups.get(phase.group):
                continue
            digest = inputs_hash(hosts_view(args.plan, phase.group), args.root, phase.files())
            resource = AnsiblePhase(f"{name}-{phase.name}", phase, request, digest,
                                    pulumi.ResourceOptions(parent=self, depends_on=previous))
            self.phases[phase.name] = resource
            previous = [resource]
        self.register_outputs({"phases": {n: p.inputs_hash for n, p in self.phases.items()}})
