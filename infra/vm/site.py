"""VM specs for a site's hosts: the test bed boots what the plan says.

Each host gets one NIC per planned network that names an ``interface`` and one
per fabric rail, each on a private segment named after the network or rail, with
the address the plan gives it (and the boot MAC the site declares, on the management NIC). Size comes from the
site's ``testbed`` section. They reboot in place, as a site's
hosts do when a day-two rollout reboots them.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..plan import Plan
from ..site.model import Site
from .spec import NicSpec, VMSpec

MANAGEMENT = "management"       # the planned network hosts boot from (the boot server's, provisioning.images)


def specs_for_site(site: Site, plan: Plan, hosts: Iterable[str] | None = None,
                   network_boot: Iterable[str] = ()) -> list[VMSpec]:
    """One VMSpec per host of the plan (or of ``hosts``), in plan order. A host with a boot MAC declared in the
    site (``pools[].macs``) has it on its management NIC; a host of ``network_boot`` has no disk and boots from that
    NIC (through the site's boot server, ``provisioning.images``): a ValueError when it has no declared MAC."""
    testbed = site.testbed
    memory, cpus = (testbed.memory_mb, testbed.cpus) if testbed else (2048, 2)
    wanted = set(hosts) if hosts is not None else None
    diskless = set(network_boot)
    macs = {name: mac for pool in site.pools for name, mac in pool.macs.items()}
    undeclared = sorted(diskless - set(macs))
    if undeclared:
        raise ValueError(f"network boot of {', '.join(undeclared)}: no boot MAC declared in pools[].macs")
    rails = {(r.fabric, r.rail): r for f in plan.fabrics for r in f.rails}
    specs = []
    for host in plan.hosts.values():
        if wanted is not None and host.name not in wanted:
            continue
        nics = [NicSpec(segment=net.name, interface=net.interface, address=host.addresses[net.name],
                        mac=macs.get(host.name) if net.name == MANAGEMENT else None)
                for net in plan.networks.values() if net.interface and net.name in host.addresses]
        for r, address in enumerate(host.rails):
            rail = rails[(host.fabric, r)]
            nics.append(NicSpec(segment=f"{rail.fabric}-rail{r}", interface=rail.interface, address=address))
        boot = {"boot": "network", "boot_interface": plan.networks[MANAGEMENT].interface} \
            if host.name in diskless else {}
        specs.append(VMSpec(name=host.name, memory_mb=memory, cpus=cpus, nics=nics, reboot=True, **boot))
    return specs
