"""The site's power draw: every host's node type and every fabric switch, then the facility's PUE."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .fabric import FabricPlan
from .model import Site


def site_power_kw(site: Site, host_types: Mapping[str, str], fabrics: Iterable[FabricPlan]) -> tuple[float, float]:
    """(IT load, facility load) in kW for hosts of ``host_types`` (host -> node type) and the fabrics' switches."""
    node_kw = sum(site.node_types[t].power_kw for t in host_types.values() if t in site.node_types)
    it_kw = round(node_kw + sum(f.power_kw for f in fabrics), 3)
    return it_kw, round(it_kw * site.site.power.pue, 3)
