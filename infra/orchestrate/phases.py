"""The provisioning phases, in the order they run. Later roles add a phase here."""

from __future__ import annotations

from dataclasses import dataclass

from ..plan import Plan


@dataclass(frozen=True)
class Phase:
    """One playbook, ``<playbook_dir>/<name>.yml``, applied to the hosts of ``groups`` (empty: every host).

    Hosts come group by group, in plan order within a group, so a phase's first waves take the
    first group's hosts (the kubernetes phase: control planes before the workers that join them).
    """
    name: str
    groups: tuple[str, ...] = ()

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
    Phase("base"),
    Phase("rdma", ("rdma",)),
    Phase("gpu", ("gpu",)),
    Phase("slurm", ("slurm",)),
    Phase("kubernetes", ("k8s_control_plane", "k8s_worker")),
    Phase("health"),
)
