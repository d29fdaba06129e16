"""Hosts placed in racks: in pool order, each rack filled as far as its power, space and cooling allow.

A host of an ordinary node type is placed alone. A tray of a rack-scale NVLink domain (``node_types.*.nvlink``) is
placed with its whole domain: ``trays`` consecutive hosts of the pool and the domain's switch trays stand in one
rack, never across two, and a rack's domains keep the pool's order (so Slurm's blocks follow the racks).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .hostlists import compress
from .index import SiteIndex
from .model import NodeType, Rack
from .problems import Problem, field_path as fp


@dataclass(frozen=True, slots=True)
class Load:
    """What a host or a domain takes from its rack (or what a rack can give): power, units, liquid and air heat."""
    kw: float = 0.0
    units: int = 0
    liquid_kw: float = 0.0

    @property
    def air_kw(self) -> float:
        return self.kw - self.liquid_kw

    def __add__(self, other: Load) -> Load:
        return Load(self.kw + other.kw, self.units + other.units, self.liquid_kw + other.liquid_kw)


def item_load(node_type: NodeType) -> tuple[int, Load]:
    """(hosts, load) of the unit placed at once: a host, or a whole NVLink domain with its switch trays."""
    host = Load(node_type.power_kw, node_type.rack_units, node_type.liquid_kw)
    nv = node_type.nvlink
    if nv is None:
        return 1, host
    return nv.trays, Load(nv.trays * host.kw + nv.switch_trays * nv.switch_tray_kw,
                          nv.trays * host.units + nv.switch_trays * nv.switch_tray_units,
                          nv.trays * host.liquid_kw)


def describe_load(node_type_name: str, node_type: NodeType) -> str:
    """A host's or a domain's figures, as a problem names them."""
    hosts, load = item_load(node_type)
    nv = node_type.nvlink
    if nv is None:
        return f"{node_type_name} ({load.kw:g} kW, {load.units} U)"
    return (f"NVLink domain of {node_type_name} ({nv.trays} trays x {node_type.power_kw:g} kW + {nv.switch_trays} switch trays x "
            f"{nv.switch_tray_kw:g} kW = {load.kw:g} kW, {load.units} U, {load.liquid_kw:g} kW liquid / {load.air_kw:g} kW air)")


@dataclass(frozen=True, slots=True)
class RackLimits:
    """What a rack can hold: the smaller of its feed and its power shelves; its liquid and air cooling."""
    kw: float
    units: int
    liquid_kw: float
    air_kw: float

    @classmethod
    def of(cls, rack: Rack) -> RackLimits:
        kw = rack.power_kw
        if rack.power_shelves is not None:
            kw = min(kw, rack.power_shelves.count * rack.power_shelves.kw)
        if rack.cooling is None:               # air only, as much as the rack may draw
            return cls(kw, rack.units, 0.0, kw)
        return cls(kw, rack.units, rack.cooling.liquid_kw, rack.cooling.air_kw)

    def holds(self, load: Load) -> bool:
        eps = 1e-9
        return (load.kw <= self.kw + eps and load.units <= self.units and load.liquid_kw <= self.liquid_kw + eps
                and load.air_kw <= self.air_kw + eps)

    def short_of(self, load: Load) -> str:
        """What the rack lacks for ``load``, in its own figures."""
        out = []
        if load.kw > self.kw + 1e-9:
            out.append(f"{self.kw:g} kW of power")
        if load.units > self.units:
            out.append(f"{self.units} U")
        if load.liquid_kw > self.liquid_kw + 1e-9:
            out.append(f"{self.liquid_kw:g} kW of liquid cooling")
        if load.air_kw > self.air_kw + 1e-9:
            out.append(f"{self.air_kw:g} kW of air cooling")
        return ", ".join(out)


@dataclass(frozen=True, slots=True)
class Domain:
    """One rack-scale NVLink domain: a Slurm block, one IMEX domain."""
    name: str
    pool: str
    rack: str
    hosts: tuple[str, ...]


@dataclass(slots=True)
class RackUse:
    limits: RackLimits
    used: Load = field(default_factory=Load)
    domains: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Placement:
    hosts: dict[str, tuple[str, int]]            # host -> (rack, lowest rack unit)
    racks: dict[str, RackUse]                    # every declared rack, in the order the site declares them
    domains: tuple[Domain, ...] = ()             # in the order the racks stand, then the order within a rack


def place(index: SiteIndex, problems: list[Problem]) -> Placement:
    """Every pool's hosts in its racks (computed once per index, its problems added to ``problems`` each call).
    Appending hosts or pools never moves a placed host."""
    if not index.placements:
        found: list[Problem] = []
        index.placements.append((_place(index, found), tuple(found)))
    placement, found = index.placements[0]
    problems.extend(found)
    return placement


def _place(index: SiteIndex, problems: list[Problem]) -> Placement:
    site = index.site
    racks = {name: RackUse(RackLimits.of(site.racks[i])) for name, i in index.racks.items()}
    placed: dict[str, tuple[str, int]] = {}
    domains: list[tuple[str, str, tuple[str, ...]]] = []        # (rack, pool, hosts)
    for i, pool in enumerate(site.pools):
        node_type = index.node_type(pool)
        if node_type is None:
            continue
        size, load = item_load(node_type)
        hosts = [h for h in pool.hosts if h not in placed]
        if len(hosts) % size:
            problems.append(Problem(fp("pools", i, "hosts"), f"pool {pool.name!r} has {len(hosts)} {pool.type} trays: not whole "
                                    f"NVLink domains of {size}; add or remove {len(hosts) % size} hosts"))
            continue
        names = [name for name in pool.racks if name in racks]
        cursor = 0
        for start in range(0, len(hosts), size):
            item = tuple(hosts[start:start + size])
            while cursor < len(names) and not racks[names[cursor]].limits.holds(racks[names[cursor]].used + load):
                cursor += 1
            if cursor == len(names):
                problems.append(Problem(
                    fp("pools", i, "racks"),
                    f"racks {compress(pool.racks)} hold only {start} of pool {pool.name!r}'s {len(pool.hosts)} "
                    f"{pool.type} hosts ({'each ' if size == 1 else 'in '}{describe_load(pool.type, node_type)}{'' if size == 1 else ' each'}); "
                    f"{len(hosts) - start} more need racks with room"))
                break
            use = racks[names[cursor]]
            per_host = node_type.rack_units
            for n, host in enumerate(item):
                placed[host] = (names[cursor], use.used.units + 1 + n * per_host)
            use.used = use.used + load
            if size > 1:
                domains.append((names[cursor], pool.name, item))
    order = {name: n for n, name in enumerate(racks)}
    domains.sort(key=lambda d: order[d[0]])                       # stable: a rack's domains keep the pools' order
    per_rack: dict[str, int] = {}
    for rack, _, _ in domains:
        per_rack[rack] = per_rack.get(rack, 0) + 1
    named: list[Domain] = []
    seen: dict[str, int] = {}
    for rack, pool_name, item in domains:
        seen[rack] = seen.get(rack, 0) + 1
        name = rack if per_rack[rack] == 1 else f"{rack}-{seen[rack]}"
        if name != rack and name in racks:             # a rack of that name: two domains would share a Slurm block's name
            problems.append(Problem("racks", f"rack {rack} holds {per_rack[rack]} NVLink domains, named {rack}-1 to "
                                    f"{rack}-{per_rack[rack]}, but a rack is named {name}: rename that rack"))
        racks[rack].domains.append(name)
        named.append(Domain(name, pool_name, rack, item))
    return Placement(placed, racks, tuple(named))

