"""Flexible capacity (docs/power.md): each flexible Slurm partition's windows, the hours ahead in which the renewable
supply (energy.forecast, else energy.supply) covers its declared share; the controllers' ``flexible.json``."""

from __future__ import annotations

from typing import Any

from ..site.model import Site
from .sacct import UsageInvalid
from .supply import renewable_windows


def flexible_config(site: Site, now: float) -> dict[str, Any] | None:
    """``{"partitions": {name: {"windows": [[start, end], ...]}}}`` for role slurm_flexible, None on a site without
    Slurm; a file that cannot be read, or a bad line of it, is a UsageInvalid naming the file and the line."""
    if site.slurm is None:
        return None
    flexible = [p for p in site.slurm.partitions if p.flexible is not None]
    partitions: dict[str, Any] = {}
    if flexible:
        energy = site.energy
        field = "energy.forecast" if energy and energy.forecast else "energy.supply"
        path = energy.forecast or energy.supply if energy else None
        if path is None:                     # the site's checks refuse it (flexible_partitions_resolve)
            raise UsageInvalid("energy.forecast", "a flexible partition needs energy.forecast or energy.supply")
        timezone = (site.billing.timezone if site.billing else None) or site.site.timezone
        try:
            with open(path, encoding="utf-8", newline="") as handle:
                lines = handle.readlines()
        except OSError as err:
            raise UsageInvalid(field, f"cannot read {str(path)!r}: {err.strerror}") from None
        except UnicodeDecodeError:
            raise UsageInvalid(field, f"{str(path)!r} is not UTF-8 text") from None
        for p in flexible:
            windows = renewable_windows(lines, p.flexible.renewable_share, now, timezone, field)
            partitions[p.name] = {"windows": [list(w) for w in windows]}
    return {"partitions": partitions}
