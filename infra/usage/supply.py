"""The hourly energy supply file (energy.supply): each hour's renewable share, for hour-by-hour matching.

CSV with a header: ``hour,grid_kwh,onsite_renewable_kwh,contracted_renewable_kwh,carbon_g_per_kwh``; ``hour`` is
the hour's start (epoch seconds or ISO 8601, read in the billing time zone without an offset; the local hour the
autumn change repeats is read in the file's order, the first row the first hour). Each hour once. An hour's
consumption is grid + on-site; its renewable energy is on-site + contracted, the contracted part matched only
within the hour (a surplus in one hour covers no other): min(contracted, grid).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

from .periods import Period
from .sacct import UsageInvalid, _time, repeated_local, shown

SUPPLY_FIELDS = ("hour", "grid_kwh", "onsite_renewable_kwh", "contracted_renewable_kwh", "carbon_g_per_kwh")
# Each column's upper bound: an hour of a 10 GW site, and ten times the most carbon-intensive generation (lignite,
# about 1,200 g/kWh). Above them a figure is a typo or an attack, not a measurement.
SUPPLY_MAX = {"grid_kwh": 1e7, "onsite_renewable_kwh": 1e7, "contracted_renewable_kwh": 1e7, "carbon_g_per_kwh": 12_000}
WINDOWS_AHEAD_H = 24 * 366      # the hours ahead a forecast's windows are taken from: a year (rows beyond are ignored)


def hourly_renewable_share(lines: Iterable[str], period: Period, source: str = "energy.supply") -> list[float | None]:
    """Per hour of ``period``, the renewable share of what the site consumed (None where the file has no row)."""
    zone = ZoneInfo(period.timezone)
    hours = round(period.hours)
    share: list[float | None] = [None] * hours
    reader = csv.DictReader(lines)
    seen: dict[float, int] = {}                     # each hour's start: the line that gave it
    repeated: set[datetime] = set()                 # the repeated local hours read once (the next is the second)
    try:
        missing = [f for f in SUPPLY_FIELDS if f not in (reader.fieldnames or [])]
        if missing:
            raise UsageInvalid(f"{source} line 1", f"the header lacks {', '.join(missing)}; expected {','.join(SUPPLY_FIELDS)}")
        for row in reader:
            where = f"{source} line {reader.line_num}"
            start = _hour(row["hour"] or "", zone, where, repeated)
            if start in seen:
                raise UsageInvalid(f"{where}, hour", f"{shown(row['hour'])} is line {seen[start]}'s hour again")
            seen[start] = reader.line_num
            values = {}
            for name in SUPPLY_FIELDS[1:]:
                values[name] = _supply_value(row[name], SUPPLY_MAX[name], f"{where}, {name}")
            index = int((start - period.start) // 3600)
            if 0 <= index < hours:
                consumed = values["grid_kwh"] + values["onsite_renewable_kwh"]
                renewable = values["onsite_renewable_kwh"] + min(values["contracted_renewable_kwh"], values["grid_kwh"])
                share[index] = renewable / consumed if consumed else 0.0
    except csv.Error as error:      # a cell over csv's field limit: not the format (DictReader's line_num lags a row)
        raise UsageInvalid(f"{source} line {reader.reader.line_num}", f"not CSV: {shown(str(error))}") from None
    return share


def renewable_windows(lines: Iterable[str], share: float, now: float, timezone: str,
                      source: str = "energy.forecast") -> list[tuple[int, int]]:
    """The ``[start, end)`` windows (epoch seconds, consecutive hours merged) from the hour ``now`` is in onwards
    whose renewable share (``hourly_renewable_share``) is at least ``share``; hours the file lacks are outside."""
    zone = ZoneInfo(timezone)
    hour = datetime.fromtimestamp(now, zone).replace(minute=0, second=0, microsecond=0).timestamp()
    shares = hourly_renewable_share(lines, Period("ahead", hour, hour + WINDOWS_AHEAD_H * 3600, timezone), source)
    windows: list[tuple[int, int]] = []
    for i, covered in enumerate(shares):
        if covered is None or covered < share:
            continue
        start = int(hour) + i * 3600
        if windows and windows[-1][1] == start:
            windows[-1] = (windows[-1][0], start + 3600)
        else:
            windows.append((start, start + 3600))
    return windows


def _hour(text: str, zone: ZoneInfo, where: str, repeated: set[datetime]) -> float:
    """The start of a row's hour; a local hour the clock shows twice is the first the first time, the second after."""
    fold = 0
    if text and not text.isdigit():
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            parsed = None                           # _time says why
        if parsed is not None and parsed.tzinfo is None and repeated_local(parsed.replace(tzinfo=zone)):
            fold = 1 if parsed in repeated else 0
            repeated.add(parsed)
    start = _time(text, zone, f"{where}, hour", fold)
    if start is None:
        raise UsageInvalid(f"{where}, hour", "empty")
    return start


def _supply_value(text: str | None, maximum: float, where: str) -> float:
    """One figure of the supply file: a finite number from 0 to ``maximum`` (NaN, infinities and 300-digit numbers
    refused); the message quotes at most the figure's first 40 characters."""
    try:
        value = float(text)                         # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UsageInvalid(where, f"{shown(text)} is not a number") from None
    if not math.isfinite(value):
        raise UsageInvalid(where, f"{shown(text)} is not a finite number")
    if not 0 <= value <= maximum:
        raise UsageInvalid(where, f"{shown(text)} is not from 0 to {maximum:,.0f}")
    return value
