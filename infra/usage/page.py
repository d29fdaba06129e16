"""The usage of a period as one self-contained HTML page (``gigafactory usage SITE --period P --html FILE``,
docs/pages.md): per tenant line (and the idle line, and the total) its GPU-hours by day and by GPU model as an
inline SVG bar chart, its energy and renewable share, its cost against its budget. Every number comes from
``report_dict``, the dictionary ``--format json`` prints: the page cannot say other than the JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..render.page import PALETTE, page_environment
from .render import report_dict
from .report import Report

CHART_H = 120             # the bars' height at the chart's largest day, in SVG pixels
AXIS_W = 44               # room for the scale's labels left of the bars
CHART_MAX_W = 930         # a month's days 18 px wide; a year's 365 days 2 px


@dataclass(frozen=True, slots=True)
class Bar:
    """A model's GPU-hours of one day, a rectangle stacked on the day's other models."""
    day: str
    model: str
    gpu_hours: float          # as the JSON has it (rounded as it is)
    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True, slots=True)
class DayChart:
    width: int
    height: int
    peak: float               # the largest day's GPU-hours, the scale's top
    bars: tuple[Bar, ...]
    labels: tuple[tuple[float, str], ...]     # (x, text) under the bars: days of the month, or months of a year


def day_chart(days: list[str], by_day: dict[str, list[float]]) -> DayChart:
    """The stacked bars of a line's ``gpu_hours_by_day`` (model -> a value per day of ``days``), scaled to the
    largest day; a day without GPU-hours draws no rectangle."""
    day_w = max(2, min(18, CHART_MAX_W // max(len(days), 1)))
    totals = [sum(v[i] for v in by_day.values()) for i in range(len(days))]
    peak = max(totals, default=0.0)
    bars = []
    for i, day in enumerate(days):
        top = CHART_H + 4.0
        for model, values in sorted(by_day.items()):
            value = values[i]
            if value <= 0:
                continue
            h = CHART_H * value / peak
            top -= h
            bars.append(Bar(day, model, value, AXIS_W + i * day_w, round(top, 2), max(day_w - 1, 1), round(h, 2)))
    every_day = day_w >= 14
    labels = tuple((AXIS_W + i * day_w + day_w / 2, day[8:].lstrip("0") if every_day else day[5:7])
                   for i, day in enumerate(days) if every_day or day.endswith("-01"))
    return DayChart(AXIS_W + len(days) * day_w + 4, CHART_H + 20, peak, tuple(bars), labels)


def usage_page(report: Report) -> str:
    """The whole page, one self-contained HTML document, from the report's JSON dictionary."""
    data: dict[str, Any] = report_dict(report)
    lines = [*data["tenants"], *(line for line in (data["idle"], data["total"]) if line is not None)]
    models = sorted({m for line in lines for m in line["gpu_hours"]})
    colours = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models)}
    charts = {line["tenant"]: day_chart(data["days"], line["gpu_hours_by_day"]) for line in lines}
    return page_environment().get_template("usage_page.html.j2").render(
        r=data, lines=lines, models=models, colours=colours, charts=charts, idle=data["idle"], total=data["total"])
