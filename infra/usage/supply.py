"""The hourly energy supply file (energy.supply): each hour's renewable share, for hour-by-hour matching.

CSV with a header: ``hour,grid_kwh,onsite_renewable_kwh,contracted_renewable_kwh,carbon_g_per_kwh``; ``hour`` is
the hour's start (epoch seconds or ISO 8601, read in the billing time zone without an offset). An hour's
consumption is grid + on-site; its renewable energy is on-site + contracted, the contracted part matched only
within the hour (a surplus in one hour covers no other): min(contracted, grid).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from zoneinfo import ZoneInfo

from .periods import Period
from .sacct import UsageInvalid, _time

SUPPLY_FIELDS = ("hour", "grid_kwh", "onsite_renewable_kwh", "contracted_renewable_kwh", "carbon_g_per_kwh")


def hourly_renewable_share(lines: Iterable[str], period: Period, source: str = "energy.supply") -> list[float | None]:
    """Per hour of ``period``, the renewable share of what the site consumed (None where the file has no row)."""
    zone = ZoneInfo(period.timezone)
    hours = round(period.hours)
    share: list[float | None] = [None] * hours
    reader = csv.DictReader(lines)
    missing = [f for f in SUPPLY_FIELDS if f not in (reader.fieldnames or [])]
    if missing:
        raise UsageInvalid(f"{source} line 1", f"the header lacks {', '.join(missing)}; expected {','.join(SUPPLY_FIELDS)}")
    for row in reader:
        where = f"{source} line {reader.line_num}"
        start = _time(row["hour"] or "", zone, f"{where}, hour")
        if start is None:
            raise UsageInvalid(f"{where}, hour", "empty")
        values = {}
        for name in SUPPLY_FIELDS[1:]:
            try:
                values[name] = float(row[name])
            except (TypeError, ValueError):
                raise UsageInvalid(f"{where}, {name}", f"{row[name]!r} is not a number") from None
            if values[name] < 0:
                raise UsageInvalid(f"{where}, {name}", f"{row[name]!r} is negative")
        index = int((start - period.start) // 3600)
        if 0 <= index < hours:
            consumed = values["grid_kwh"] + values["onsite_renewable_kwh"]
            renewable = values["onsite_renewable_kwh"] + min(values["contracted_renewable_kwh"], values["grid_kwh"])
            share[index] = renewable / consumed if consumed else 0.0
    return share
