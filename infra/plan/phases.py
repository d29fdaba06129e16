"""The phase registry: every phase, in the order it runs, with its playbook, its groups and the groups whose hosts
the others depend on. The one place a phase's name, playbook and hosts are declared (tests/test_phase_playbooks.py
ties each playbook's plays to them)."""

from __future__ import annotations

from dataclasses import dataclass

from ..plan import Plan

PLAYBOOK_DIR = "playbooks"              # the phases' playbooks, relative to the Ansible root (a checkout, infra/_ansible)


@dataclass(frozen=True)
class Phase:
    """One playbook (``playbook``) applied to the hosts of ``groups`` (empty: every host).

    Hosts come group by group, in plan order within a group. ``first`` names the plan's groups whose hosts the
    phase's other hosts depend on (Slurm's accounting host and controllers before any slurmd, control planes before
    the workers that join them, subnet managers before the nodes of their fabric): they form the phase's first
    wave, and the canary comes from the rest. This table is the one place that says who depends on whom.

    ``local`` names the plan's groups whose hosts the phase runs from the controller even where execution hosts are
    declared: the base phase prepares the execution hosts (role execution_host), which cannot run it for themselves
    before it ran. Those hosts then have a wave of their own, even in a small phase.

    ``provisions``: ``up`` runs the phase (PHASES); the acceptance phase checks a provisioned site and runs only
    when asked (the demo's last step).
    """
    name: str
    groups: tuple[str, ...] = ()
    first: tuple[str, ...] = ()
    local: tuple[str, ...] = ()
    provisions: bool = True

    @property
    def playbook(self) -> str:
        """The phase's playbook, relative to the Ansible root."""
        return f"{PLAYBOOK_DIR}/{self.name}.yml"

    @property
    def pattern(self) -> str:
        """The phase's hosts as an Ansible host pattern (its groups, or ``all``): its plays' hosts, a whole run's limit."""
        return ":".join(self.groups) or "all"

    def providers(self, plan: Plan, hosts: list[str]) -> list[str]:
        """Those of ``hosts`` in a ``first`` group, if others among ``hosts`` depend on them; in ``hosts`` order."""
        lead = {h for g in self.first for h in plan.groups.get(g, ())} & set(hosts)
        return [h for h in hosts if h in lead] if len(lead) < len(set(hosts)) else []

    def local_hosts(self, plan: Plan, hosts: list[str]) -> list[str]:
        """Those of ``hosts`` in a ``local`` group, in ``hosts`` order."""
        mine = {h for g in self.local for h in plan.groups.get(g, ())}
        return [h for h in hosts if h in mine]

    def hosts(self, plan: Plan) -> list[str]:
        """The site's hosts this phase touches: group by group, each in plan order."""
        if not self.groups:
            return list(plan.hosts)
        order = {h: i for i, h in enumerate(plan.hosts)}
        seen: dict[str, None] = {}
        for group in self.groups:
            seen.update(dict.fromkeys(sorted(plan.groups.get(group, ()), key=order.__getitem__)))
        return list(seen)


BASE = Phase("base", first=("execution",), local=("execution",))
BOOT = Phase("boot", ("boot_server",), first=("boot_server",))
RDMA = Phase("rdma", ("rdma",), first=("subnet_manager",))
GPU = Phase("gpu", ("gpu",))
POWER = Phase("power", ("gpu",))      # the planned GPU power limit, set before slurmd or kubelet take work
SLURM = Phase("slurm", ("slurm",), first=("slurm_dbd", "slurm_controller"))
KUBERNETES = Phase("kubernetes", ("k8s_control_plane", "k8s_worker"), first=("k8s_control_plane",))
HEALTH = Phase("health")                # also the rollout's gate before a node goes back into service
ACCEPTANCE = Phase("acceptance", provisions=False)

REGISTRY: tuple[Phase, ...] = (BASE, BOOT, RDMA, GPU, POWER, SLURM, KUBERNETES, HEALTH, ACCEPTANCE)
PHASES: tuple[Phase, ...] = tuple(p for p in REGISTRY if p.provisions)      # what ``up`` runs, in order


def phase_named(name: str) -> Phase:
    """The registered phase ``name``; KeyError naming the registered ones."""
    for candidate in REGISTRY:
        if candidate.name == name:
            return candidate
    raise KeyError(f"unknown phase {name!r}; phases are {', '.join(p.name for p in REGISTRY)}")
