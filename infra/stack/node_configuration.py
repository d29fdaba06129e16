"""NodeConfiguration: the Ansible phases on the site's hosts, as Pulumi dynamic resources.

A phase is one of the orchestration's phases (infra/plan/phases.py): one playbook
run against its inventory groups. Its resource carries only a hash of what the phase
reads (its playbooks, and every role it applies, depends on or includes, found by reading
the playbooks; of the inventory its hosts receive, the variables and groups those files
name); ``diff`` compares
hashes, so a phase re-runs exactly when one of those changed. One resource per phase,
whatever the number of hosts.

The run itself goes through the project's orchestration layer, reached through
the narrow interface below (``PhaseRequest`` in, ``PhaseResult`` out).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Iterable, Mapping, Sequence, Set

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult

from ..plan.phases import KUBERNETES, PHASES as ORCHESTRATION_PHASES, Phase
from ..plan import Plan
from ..runner.execution import controller_inventory
from ..site.model import Site
from ..runner.phase_files import (PhaseInputError, files_digest, files_groups, files_references, phase_files,  # noqa: F401 - re-exported
                                     site_inventory_files)

ORCHESTRATION_MODULE = "infra.orchestrate"
KUBECONFIG_VAR = "kubernetes_kubeconfig_dest"   # where the kubernetes role writes the admin kubeconfig


CLUSTER_PHASE = KUBERNETES              # declared once per cluster by KubernetesCluster, limited to its group


def node_phases() -> tuple[Phase, ...]:
    """The orchestration's phases in their order, but the per-cluster one; each runs on its own hosts (Phase.pattern)."""
    return tuple(p for p in ORCHESTRATION_PHASES if p.name != CLUSTER_PHASE.name)


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
        if request.phase == CLUSTER_PHASE.name:
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
    if request.phase == CLUSTER_PHASE.name and kubeconfig is None:
        raise RuntimeError(f"the kubernetes phase wrote no kubeconfig to {KUBECONFIG_VAR}; see {outcome.run_dir}")
    return PhaseResult(ok=True, summary=f"{len(outcome.hosts)} host(s); run {outcome.run_dir}", kubeconfig=kubeconfig)


# --- what a phase reads -------------------------------------------------------------


def phase_hosts(plan: Plan, phase: Phase, limit: str | None = None) -> list[str]:
    """The hosts the phase touches: its hosts, within ``limit`` (groups joined by ``:``; None: the phase's own)."""
    hosts = phase.hosts(plan)
    if limit is None or limit == "all":
        return hosts
    allowed = {h for group in limit.split(":") for h in plan.groups.get(group, ())}
    return [h for h in hosts if h in allowed]


MAPPING_METHODS = frozenset({"get", "items", "keys", "values"})   # an attribute that reads a whole mapping


def read_of(value: Any, attributes: Set[tuple[str, ...]]) -> Any:
    """What is read of a variable's ``value`` through ``attributes`` (``()``: the whole value; ``("cuda",)``: its
    ``cuda`` key, absent as None): a mapping narrowed to the keys read, anything else whole."""
    if () in attributes or not isinstance(value, Mapping) or MAPPING_METHODS.intersection(a[0] for a in attributes):
        return value
    keys = sorted({a[0] for a in attributes})
    return {k: read_of(value.get(k), {a[1:] for a in attributes if a[0] == k}) for k in keys}


def phase_reads(references: Set[str]) -> dict[str, frozenset[tuple[str, ...]]]:
    """name -> the attributes the phase's files read of it (files_references: ``gf_software.cuda`` and ``gf_site``
    give ``{"gf_software": {("cuda",)}, "gf_site": {()}}``)."""
    out: dict[str, set[tuple[str, ...]]] = {}
    for ref in references:
        name, *attributes = ref.split(".")
        out.setdefault(name, set()).add(tuple(attributes))
    return {name: frozenset(attributes) for name, attributes in out.items()}


def phase_variables(inventory: Mapping[str, Any], hosts: Sequence[str],
                    reads: Mapping[str, Set[tuple[str, ...]]], groups: Set[str]) -> dict[str, Any]:
    """What the phase reads of what Ansible gives its hosts from the site (``reads``: phase_reads of its files): of
    the shared variables, each host's own and those of every group one of them is in (with those of its hosts in the
    group), the ones its files name, as far as they read them, and each host's connection variables (``ansible_*``);
    the members of the groups its files address (``groups``: files_groups), and each host's groups where they read
    ``group_names`` as a whole."""
    everyone = inventory["all"]
    wanted = set(hosts)
    children = everyone["children"]

    def read(variables: Mapping[str, Any], connection: bool = False) -> dict[str, Any]:
        return {k: v if connection and k.startswith("ansible_") else read_of(v, reads[k])
                for k, v in variables.items() if k in reads or (connection and k.startswith("ansible_"))}

    out = {
        "all": read(everyone["vars"]),
        "hosts": {h: read(everyone["hosts"][h], connection=True) for h in hosts},
        "group_vars": {g: {"vars": read(c["vars"]), "hosts": [h for h in c["hosts"] if h in wanted]}
                       for g, c in children.items() if read(c.get("vars", {})) and wanted.intersection(c["hosts"])},
        "groups": {g: list(c["hosts"]) for g, c in children.items() if g in groups},
    }
    if "group_names" in groups:
        out["group_names"] = {h: sorted(g for g, c in children.items() if h in c["hosts"]) for h in hosts}
    return out


@dataclass(frozen=True)
class PhaseInputs:
    """Everything the phases of one site read: the inventory Ansible builds from the site, and per phase the digest
    of its playbooks and roles (and the group_vars/, host_vars/ beside the site file)."""
    root: Path
    site_file: str                      # relative to root
    plan: Plan
    inventory: Mapping[str, Any]        # infra.render.inventory.site_inventory: what the inventory plugin gives Ansible
    files: Mapping[str, str]            # phase name -> digest of the files it reads
    reads: Mapping[str, Mapping[str, frozenset[tuple[str, ...]]]]  # phase name -> phase_reads of its files
    groups: Mapping[str, frozenset[str]]  # phase name -> files_groups of its files: the groups it addresses

    @classmethod
    def of(cls, site: Site, plan: Plan, root: Path, site_file: str, playbooks: Path | None = None) -> PhaseInputs:
        """Reads every phase's files now: a missing one raises PhaseInputError before anything is declared.
        ``playbooks``: the directory holding playbooks/ (default ``root``; an installed package's infra/_ansible)."""
        books = playbooks or root
        beside = site_inventory_files(root, site_file)
        if books != root:
            beside = tuple((root / rel).as_posix() for rel in beside)
        files: dict[str, str] = {}
        reads: dict[str, dict[str, frozenset[tuple[str, ...]]]] = {}
        groups: dict[str, frozenset[str]] = {}
        for spec in ORCHESTRATION_PHASES:
            try:
                paths = phase_files(books, spec.playbook) + beside
                files[spec.name] = files_digest(books, paths)
                reads[spec.name] = phase_reads(files_references(books, paths))
                groups[spec.name] = files_groups(books, paths)
            except PhaseInputError as err:
                raise PhaseInputError(f"phase {spec.name!r}: {err}") from None
        return cls(root, site_file, plan, controller_inventory(site, plan), files, reads, groups)

    def digest(self, phase: Phase, extra_vars: Mapping[str, Any] | None = None, limit: str | None = None) -> str:
        """The phase's inputs hash (within ``limit``, as phase_hosts): what it reads of the variables its hosts
        receive, its extra variables, its files."""
        hosts = phase_hosts(self.plan, phase, limit)
        view = {"variables": phase_variables(self.inventory, hosts, self.reads[phase.name], self.groups[phase.name]),
                "extra_vars": dict(extra_vars or {})}
        digest = hashlib.sha256(json.dumps(view, sort_keys=True, default=str).encode())
        digest.update(self.files[phase.name].encode())
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
    """One phase, run by the orchestration layer on its hosts within ``limit`` (default: all of them, Phase.pattern);
    ``kubeconfig`` is set by the kubernetes phase."""

    inputs_hash: pulumi.Output[str]
    kubeconfig: pulumi.Output[str | None]

    def __init__(self, name: str, phase: Phase, request: Mapping[str, Any], digest: str,
                 opts: pulumi.ResourceOptions | None = None, limit: str | None = None):
        props = {
            "phase": phase.name,
            "playbook": phase.playbook,
            "limit": limit or phase.pattern,
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
    inputs: PhaseInputs                 # the site's plan, inventory and phase files (PhaseInputs.of)


class NodeConfiguration(pulumi.ComponentResource):
    """The orchestration's phases in its order, one dynamic resource each; the per-cluster kubernetes phase is
    KubernetesCluster's, so the phases after it are declared by ``after_clusters`` once the clusters exist."""

    def __init__(self, name: str, args: NodeConfigurationArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gigafactory:infra:NodeConfiguration", name, None, opts)
        self.name = name
        self.inputs = args.inputs
        self.phases: dict[str, AnsiblePhase] = {}
        self._previous: list[pulumi.Resource] = []
        self._declare(self._order(p.name) < self._order(CLUSTER_PHASE.name) for p in node_phases())

    @staticmethod
    def _order(phase: str) -> int:
        return [p.name for p in ORCHESTRATION_PHASES].index(phase)

    def _declare(self, wanted: Iterable[bool]) -> None:
        request = {"site_file": self.inputs.site_file, "root": str(self.inputs.root)}
        for phase, want in zip(node_phases(), wanted, strict=True):
            if not want or not phase_hosts(self.inputs.plan, phase):
                continue
            resource = AnsiblePhase(f"{self.name}-{phase.name}", phase, request, self.inputs.digest(phase),
                                    pulumi.ResourceOptions(parent=self, depends_on=self._previous))
            self.phases[phase.name] = resource
            self._previous = [resource]

    def before_clusters(self) -> list[pulumi.Resource]:
        """What a cluster's bootstrap waits for: the last phase the orchestration runs before it."""
        return list(self._previous)

    def after_clusters(self, bootstraps: Sequence[pulumi.Resource]) -> None:
        """Declares the phases the orchestration runs after the clusters' bootstraps, waiting for them; then the outputs."""
        self._previous = list(bootstraps) or self._previous      # each bootstrap waits for the phases before it
        self._declare(self._order(p.name) > self._order(CLUSTER_PHASE.name) for p in node_phases())
        self.register_outputs({"phases": {n: p.inputs_hash for n, p in self.phases.items()}})
