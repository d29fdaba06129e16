"""The VM spec: what a test asks the launcher for, validated with field paths in errors."""

from __future__ import annotations

import hashlib
import json
import re
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

# Slot 2 is the disk, 3 the management NIC (enp0s3), 30 the RNG, 31 the q35 LPC bridge.
FIRST_NIC_SLOT = 4
LAST_NIC_SLOT = 29
_INTERFACE = re.compile(r"^enp0s([0-9]+)$")

Name = Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")]
Mac = Annotated[str, Field(pattern=r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")]


class SpecError(ValueError):
    """A spec file that cannot be used; the message names the file and the field."""


def derived_mac(*parts: str) -> str:
    """A stable locally administered unicast MAC for the given names."""
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return "52:54:" + ":".join(f"{b:02x}" for b in digest[:4])


class NicSpec(BaseModel):
    """One NIC on a private layer-2 segment; `interface` fixes its PCI slot (enp0sN -> slot N)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    segment: Name
    interface: str
    mac: Mac | None = None
    address: IPv4Interface | None = None

    @model_validator(mode="after")
    def _interface_names_a_free_slot(self) -> NicSpec:
        match = _INTERFACE.match(self.interface)
        if not match or not FIRST_NIC_SLOT <= int(match.group(1)) <= LAST_NIC_SLOT:
            raise ValueError(
                f"interface {self.interface!r} must be enp0sN with N from "
                f"{FIRST_NIC_SLOT} to {LAST_NIC_SLOT} (N is the PCI slot)"
            )
        return self

    @property
    def slot(self) -> int:
        return int(_INTERFACE.match(self.interface).group(1))  # type: ignore[union-attr]


class VMSpec(BaseModel):
    """One VM: name (also its hostname), size, NICs on private segments, and what it boots from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    memory_mb: int = Field(default=1024, ge=256, le=16384)
    cpus: int = Field(default=1, ge=1, le=8)
    nics: list[NicSpec] = []
    # False: a reboot (or a panic) ends QEMU, which the launcher reports as 'exited' at once. True: the guest
    # restarts in place like a real host (day-two rollouts reboot nodes), and a panic still ends QEMU (pvpanic).
    reboot: bool = False
    # disk: the image's kernel, initrd and a throw-away overlay of its disk. network: no disk, no kernel given; the
    # firmware boots iPXE (QEMU's ROM, Debian's ipxe-qemu) from the NIC ``boot_interface`` names, and only from it.
    boot: Literal["disk", "network"] = "disk"
    boot_interface: str | None = None

    @model_validator(mode="after")
    def _interfaces_unique(self) -> VMSpec:
        names = [nic.interface for nic in self.nics]
        if len(names) != len(set(names)):
            raise ValueError(f"VM {self.name!r} uses an interface twice: {names}")
        return self

    @model_validator(mode="after")
    def _network_boot_names_one_of_its_nics(self) -> VMSpec:
        names = [nic.interface for nic in self.nics]
        if self.boot == "network" and self.boot_interface not in names:
            raise ValueError(f"VM {self.name!r} boots from the network: boot_interface must name one of its NICs "
                             f"({', '.join(names) or 'it has none'}), not {self.boot_interface!r}")
        if self.boot == "disk" and self.boot_interface is not None:
            raise ValueError(f"VM {self.name!r} boots from its disk: boot_interface is only for boot: network")
        return self

    @property
    def boot_nic(self) -> NicSpec | None:
        """The NIC a disk-less VM boots from (None for a disk boot)."""
        return next((n for n in self.nics if n.interface == self.boot_interface), None)

    def mac_of(self, nic: NicSpec) -> str:
        return nic.mac or derived_mac(self.name, nic.segment, nic.interface)

    @property
    def mgmt_mac(self) -> str:
        return derived_mac(self.name, "mgmt")


_SPECS = TypeAdapter(list[VMSpec])


def _location(loc: tuple) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path.lstrip(".") or "(top level)"


def _unique_across(specs: list[VMSpec]) -> list[str]:
    problems = []
    names = [s.name for s in specs]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"name: {name!r} is used by more than one VM")
    macs = [s.mac_of(n) for s in specs for n in s.nics]
    for mac in sorted({m for m in macs if macs.count(m) > 1}):
        problems.append(f"nics.mac: {mac} is used by more than one NIC")
    addrs = [str(n.address.ip) for s in specs for n in s.nics if n.address]
    for addr in sorted({a for a in addrs if addrs.count(a) > 1}):
        problems.append(f"nics.address: {addr} is given to more than one NIC")
    return problems


def parse_specs(data: object, source: str = "spec") -> list[VMSpec]:
    """Validate a list of VMSpec dicts; raise SpecError naming every bad field."""
    try:
        specs = _SPECS.validate_python(data)
    except ValidationError as exc:
        lines = [f"{source}: {_location(e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise SpecError("\n".join(lines)) from None
    problems = _unique_across(specs)
    if not specs:
        problems.append("(top level): the spec lists no VM")
    if problems:
        raise SpecError("\n".join(f"{source}: {p}" for p in problems))
    return specs


def load_specs(path: Path) -> list[VMSpec]:
    """Read a JSON spec file (a list of VMSpec dicts)."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path}: not JSON: {exc.msg} at line {exc.lineno}") from None
    return parse_specs(data, str(path))
