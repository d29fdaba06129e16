"""VM specs for a site's hosts: the test bed boots what the plan says.

Each host gets one NIC per planned network that names an ``interface`` and one
per fabric rail, each on a private segment named after the network or rail, with
the address the plan gives it. Size comes from the site's ``testbed`` section. They reboot in place, as a site's
hosts do when a day-two rollout reboots them.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..plan import Plan
from ..site.model import Site
from .spec import NicSpec, VMSpec


def specs_for_site(site: Site, plan: Plan, hosts: Iterable[str] | None = None) -> list[VMSpec]:
    """One VMSpec per host of the plan (or of ``hosts``), in plan order."""
    testbed = site.testbed
    memory, cpus = (testbed.memory_mb, testbed.cpus) if testbed else (2048, 2)
    wanted = set(hosts) if hosts is not None else None
    rails = {(r.fabric, r.rail): r for f in plan.fabrics for r in f.rails}
    specs = []
    for host in plan.hosts.values():
        if wanted is not None and host.name not in wanted:
            continue
        nics = [NicSpec(segment=net.name, interface=net.interface, address=host.addresses[net.name])
                for net in plan.networks.values() if net.interface and net.name in host.addresses]
        for r, address in enumerate(host.rails):
            rail = rails[(host.fabric, r)]
            nics.append(NicSpec(segment=f"{rail.fabric}-rail{r}", interface=rail.interface, address=address))
        specs.append(VMSpec(name=host.name, memory_mb=memory, cpus=cpus, nics=nics, reboot=True))
    return specs
