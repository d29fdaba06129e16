"""The provisioning phases, in the order they run, each with the plan's groups whose hosts the others depend on."""

from __future__ import annotations

from dataclasses import dataclass

from ..plan import Plan


@dataclass(frozen=True)
class Phase:
    """One playbook, ``<playbook_dir>/<name>.yml``, applied to the hosts of ``groups`` (empty: every host).

    Hosts come group by group, in plan order within a group. ``first`` names the plan's groups whose hosts the
    phase's other hosts depend on (Slurm's accounting host and controllers before any slurmd, control planes before
    the workers that join them, subnet managers before the nodes of their fabric): they form the phase's first
    wave, and the canary comes from the rest. This table is the one place that says who depends on whom.

    ``local`` names the plan's groups whose hosts the phase runs from the controller even where execution hosts are
    declared: the base phase prepares the execution hosts (role execution_host), which cannot run it for themselves
    before it ran. Those hosts then have a wave of their own, even in a small phase.
    """
    name: str
    groups: tuple[str, ...] = ()
    first: tuple[str, ...] = ()
    local: tuple[str, ...] = ()

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


PHASES: tuple[Phase, ...] = (
    Phase("base", first=("execution",), local=("execution",)),
    Phase("boot", ("boot_server",), first=("boot_server",)),
    Phase("rdma", ("rdma",), first=("subnet_manager",)),
    Phase("gpu", ("gpu",)),
    Phase("slurm", ("slurm",), first=("slurm_dbd", "slurm_controller")),
    Phase("kubernetes", ("k8s_control_plane", "k8s_worker"), first=("k8s_control_plane",)),
    Phase("health"),
)
