"""The provisioning phases, in the order they run. Later roles add a phase here."""

from __future__ import annotations

from dataclasses import dataclass

from ..plan import Plan


@dataclass(frozen=True)
class Phase:
    """One playbook, ``<playbook_dir>/<name>.yml``, applied to the hosts of ``groups`` (empty: every host)."""
    name: str
    groups: tuple[str, ...] = ()

    def hosts(self, plan: Plan) -> list[str]:
        """The site's hosts this phase touches, in plan order."""
        if not self.groups:
            return list(plan.hosts)
        members = {h for g in self.groups for h in plan.groups.get(g, ())}
        return [h for h in plan.hosts if h in members]


PHASES: tuple[Phase, ...] = (
    Phase("base"),
    Phase("rdma", ("rdma",)),
    Phase("gpu", ("gpu",)),
    Phase("slurm", ("slurm",)),
    Phase("health"),
)
