"""Hosts placed in racks: in pool order, each rack filled as far as power and space allow."""

from __future__ import annotations

from dataclasses import dataclass

from .hostlists import compress
from .index import SiteIndex
from .problems import Problem, field_path as fp


@dataclass(slots=True)
class _RackState:
    power_kw: float
    units: int
    used_kw: float = 0.0
    used_units: int = 0


def place_hosts(index: SiteIndex, problems: list[Problem]) -> dict[str, tuple[str, int]]:
    """host -> (rack, lowest rack unit). Appending hosts or pools never moves a placed host."""
    site = index.site
    racks = {name: _RackState(site.racks[i].power_kw, site.racks[i].units) for name, i in index.racks.items()}
    placed: dict[str, tuple[str, int]] = {}
    for i, pool in enumerate(site.pools):
        node_type = index.node_type(pool)
        if node_type is None:
            continue
        pool_racks = [racks[name] for name in pool.racks if name in racks]
        names = [name for name in pool.racks if name in racks]
        cursor = 0
        for n, host in enumerate(pool.hosts):
            if host in placed:
                continue
            while cursor < len(pool_racks):
                rack = pool_racks[cursor]
                if (rack.used_kw + node_type.power_kw <= rack.power_kw + 1e-9
                        and rack.used_units + node_type.rack_units <= rack.units):
                    placed[host] = (names[cursor], rack.used_units + 1)
                    rack.used_kw += node_type.power_kw
                    rack.used_units += node_type.rack_units
                    break
                cursor += 1
            else:
                left = len(pool.hosts) - n
                problems.append(Problem(
                    fp("pools", i, "racks"),
                    f"racks {compress(pool.racks)} hold only {n} of pool {pool.name!r}'s {len(pool.hosts)} "
                    f"{pool.type} hosts ({node_type.power_kw:g} kW, {node_type.rack_units} U each); "
                    f"{left} more need racks with room"))
                break
    return placed
