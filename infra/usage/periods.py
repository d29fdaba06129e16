"""Billing periods: a month ('2026-11') or a year ('2026'), cut at midnight in the billing time zone."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from .sacct import UsageInvalid

_PERIOD = re.compile(r"(\d{4})(?:-(\d{2}))?")


@dataclass(frozen=True)
class Period:
    name: str           # '2026-11' or '2026'
    start: float        # epoch seconds, inclusive
    end: float          # epoch seconds, exclusive
    timezone: str

    @property
    def hours(self) -> float:
        return (self.end - self.start) / 3600

    @property
    def months(self) -> int:
        return 1 if "-" in self.name else 12


def parse_period(text: str, timezone: str, field: str = "--period") -> Period:
    """The period ``text`` names, in ``timezone``; raises UsageInvalid naming ``field`` if it names none."""
    match = _PERIOD.fullmatch(text)
    if not match or not 1970 <= int(match[1]) <= 9998 or (match[2] and not 1 <= int(match[2]) <= 12):
        raise UsageInvalid(field, f"{text!r} is not a period: write a month as '2026-11' or a year as '2026'")
    zone = ZoneInfo(timezone)
    year = int(match[1])
    if match[2]:
        month = int(match[2])
        start = datetime(year, month, 1, tzinfo=zone)
        end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=zone)
    else:
        start, end = datetime(year, 1, 1, tzinfo=zone), datetime(year + 1, 1, 1, tzinfo=zone)
    return Period(text, start.timestamp(), end.timestamp(), timezone)


def period_days(period: Period) -> list[tuple[str, int]]:
    """Each day of ``period`` in its time zone: its date ('2026-11-01') and its first hour, counted from the
    period's start (a day of a clock change has 23 or 25 hours)."""
    zone = ZoneInfo(period.timezone)
    day = datetime.fromtimestamp(period.start, zone).date()
    out = []
    while (start := datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()) < period.end:
        out.append((day.isoformat(), round((start - period.start) / 3600)))
        day += timedelta(days=1)
    return out
