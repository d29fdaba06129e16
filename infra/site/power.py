"""The site's power draw: every host's node type, NVLink switch trays and fabric switches, then the facility's PUE."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .fabric import FabricPlan
from .model import Site


def site_power_kw(site: Site, host_types: Mapping[str, str], fabrics: Iterable[FabricPlan]) -> tuple[float, float]:
    """(IT load, facility load) in kW for hosts of ``host_types`` (host -> node type) and the fabrics' switches."""
    node_kw = sum(site.node_types[t].power_kw for t in host_types.values() if t in site.node_types)
    for t, nt in site.node_types.items():          # an NVLink domain's switch trays
        if nt.nvlink is not None and nt.nvlink.switch_tray_kw:
            trays = sum(1 for name in host_types.values() if name == t)
            node_kw += trays // nt.nvlink.trays * nt.nvlink.switch_trays * nt.nvlink.switch_tray_kw
    it_kw = round(node_kw + sum(f.power_kw for f in fabrics), 3)
    return it_kw, round(it_kw * site.site.power.pue, 3)
