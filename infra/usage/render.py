"""A usage report as a table for people, JSON or CSV for programs."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from .report import FLAGS, Report, TenantUsage


def _row_dict(r: TenantUsage) -> dict[str, Any]:
    return {
        "tenant": r.name, "account": r.account, "class": r.tenant_class, "price_factor": r.price_factor,
        "declared_tenant": r.known, "jobs": r.jobs,
        "gpu_hours": {m: round(h, 6) for m, h in sorted(r.gpu_hours.items())},
        "gpu_hours_by_day": {m: [round(h, 6) for h in days] for m, days in sorted(r.gpu_hours_by_day.items())},
        "cpu_hours": round(r.cpu_hours, 6), "memory_gb_hours": round(r.memory_gb_hours, 6),
        "storage_tb_months": {n: round(v, 6) for n, v in sorted(r.storage_tb_months.items())},
        "it_energy_kwh": {flag: round(r.energy_kwh[flag], 6) for flag in FLAGS},
        "it_energy_gpu_dcgm_kwh": round(r.gpu_dcgm_kwh, 6),
        "facility_energy_kwh": round(r.facility_kwh, 6), "renewable_kwh": round(r.renewable_kwh, 6),
        "renewable_share": round(r.renewable_kwh / r.facility_kwh, 6) if r.facility_kwh else None,
        "costs": {k: round(v, 2) for k, v in r.costs.items()},
        "total": round(r.total, 2) if r.total is not None else None,
        "budget": r.budget, "budget_share": round(r.budget_share, 6) if r.budget_share is not None else None,
        "flexible_of": r.flexible_of,
    }


def report_dict(report: Report) -> dict[str, Any]:
    return {
        "site": report.site, "period": report.period.name, "timezone": report.period.timezone,
        "currency": report.currency, "pue": report.pue, "pue_source": report.pue_source,
        "renewable_basis": report.renewable_basis, "kubernetes_from_prometheus": report.kubernetes,
        "days": report.days,
        "tenants": [_row_dict(r) for r in report.tenants],
        "idle": _row_dict(report.idle) if report.idle else None,
        "total": _row_dict(report.total) if report.total else None,
        **({"gpu_power_limits_w": report.gpu_power_limits_w} if report.gpu_power_limits_w else {}),
    }


def as_json(report: Report) -> str:
    return json.dumps(report_dict(report), indent=1) + "\n"


def _models(report: Report) -> list[str]:
    rows = [*report.tenants, *([report.idle] if report.idle else [])]
    return sorted({m for r in rows for m in r.gpu_hours})


def _lines(report: Report) -> list[TenantUsage]:
    return [*report.tenants, *([report.idle] if report.idle else []), *([report.total] if report.total else [])]


def as_csv(report: Report) -> str:
    models = _models(report)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    cost_lines = ["gpu", "cpu", "memory", "storage", "energy"] if report.currency else []
    writer.writerow(["period", "tenant", "account", "class", "jobs", *(f"gpu_hours_{m}" for m in models), "cpu_hours",
                     "memory_gb_hours", "storage_tb_months", *(f"it_kwh_{f}" for f in FLAGS), "facility_kwh",
                     "renewable_kwh", *(f"cost_{c}" for c in cost_lines), *(["total", "currency", "budget_share"] if report.currency else [])])
    for r in _lines(report):
        writer.writerow([report.period.name, r.name, r.account or "", r.tenant_class or "", r.jobs,
                         *(f"{r.gpu_hours.get(m, 0.0):.3f}" for m in models), f"{r.cpu_hours:.3f}",
                         f"{r.memory_gb_hours:.3f}", f"{sum(r.storage_tb_months.values()):.3f}",
                         *(f"{r.energy_kwh[f]:.3f}" for f in FLAGS), f"{r.facility_kwh:.3f}", f"{r.renewable_kwh:.3f}",
                         *(f"{r.costs.get(c, 0.0):.2f}" for c in cost_lines),
                         *([f"{r.total:.2f}" if r.total is not None else "", report.currency,
                            f"{r.budget_share:.4f}" if r.budget_share is not None else ""] if report.currency else [])])
    return out.getvalue()


def _budget_cell(r: TenantUsage, budgeted: set[str]) -> str:
    """The table's budget column: the share spent; a flexible line's cost counts in its tenant's budget."""
    if r.budget_share is not None:
        return f"{r.budget_share:.1%}"
    return f"within {r.flexible_of}'s" if r.flexible_of in budgeted else "-"


def as_table(report: Report) -> str:
    models = _models(report)
    head = ["tenant", "class", "jobs", *(f"{m} GPU-h" for m in models), "CPU-h", "mem GB-h", "storage TB-mo",
            "IT kWh", "energy flags", "facility kWh", "renewable", *([f"total {report.currency}", "budget"] if report.currency else [])]
    body = []
    budgeted = {r.name for r in report.tenants if r.budget}
    for r in _lines(report):
        flags = "/".join(f[0] for f in FLAGS if r.energy_kwh[f] > 0) or "-"
        share = f"{r.renewable_kwh / r.facility_kwh:.0%}" if r.facility_kwh else "-"
        body.append([r.name, r.tenant_class or "-", str(r.jobs), *(f"{r.gpu_hours.get(m, 0.0):,.1f}" for m in models),
                     f"{r.cpu_hours:,.1f}", f"{r.memory_gb_hours:,.1f}", f"{sum(r.storage_tb_months.values()):,.1f}",
                     f"{r.it_kwh:,.1f}", flags, f"{r.facility_kwh:,.1f}", share,
                     *([f"{r.total:,.2f}" if r.total is not None else "-",
                        _budget_cell(r, budgeted)] if report.currency else [])])
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]

    def fmt(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=False)))

    title = (f"{report.site} usage {report.period.name} ({report.period.timezone}); PUE {report.pue:g} "
             f"({report.pue_source}); renewable share: {report.renewable_basis}"
             + (f"; Kubernetes from Prometheus: {', '.join(report.kubernetes)}" if report.kubernetes else ""))
    lines = [title,
             fmt(head), fmt(["-" * w for w in widths]), *map(fmt, body),
             "energy flags: m measured, a apportioned from node meters by GPU/CPU share, e estimated from power ratings"
             + ("; measured on Kubernetes: the GPUs' own energy (DCGM exporter)" if report.kubernetes else "")]
    if report.gpu_power_limits_w:
        lines.append("planned GPU power limit (plan.power): "
                     + ", ".join(f"{t} {w:,} W per GPU" for t, w in report.gpu_power_limits_w.items()))
    return "\n".join(lines) + "\n"


def eed_table(inputs: dict[str, Any]) -> str:
    def declared(value: float | None, fmt: str, unit: str) -> str:
        return f"{value:{fmt}}{unit}" if value is not None else "not declared (energy.facility)"
    return "\n".join([
        f"EED inputs for {inputs['period']} (Delegated Regulation (EU) 2024/1364), every host of the site file: "
        f"{' and '.join(inputs['metered_by']) or 'no meter'} for their nodes, power ratings for the "
        f"{inputs['other_hosts']} other hosts:",
        f"  IT energy (kWh)                 {inputs['it_energy_kwh']:,.1f} ({inputs['it_energy_metered_nodes_kwh']:,.1f} "
        f"metered nodes, {inputs['it_energy_other_hosts_kwh']:,.1f} other hosts)",
        f"  total energy (kWh)              {inputs['total_energy_kwh']:,.1f}",
        f"  PUE                             {inputs['pue']:g} ({inputs['pue_source']})",
        f"  renewable energy (kWh)          {inputs['renewable_energy_kwh']:,.1f}",
        f"  renewable energy factor (REF)   {inputs['renewable_energy_factor']:.3f} ({inputs['renewable_basis']})",
        f"  reused energy (kWh)             {declared(inputs['reused_energy_kwh'], ',.1f', '')}",
        f"  energy reuse factor (ERF)       {declared(inputs['energy_reuse_factor'], '.3f', '')}",
        f"  water input (m³)                {declared(inputs['water_input_m3'], ',.1f', '')}",
        f"  water usage effectiveness (WUE) {declared(inputs['water_usage_effectiveness_l_per_kwh'], '.3f', ' L/kWh')}",
        "  not from the site file: " + "; ".join(inputs["not_in_site_file"]),
    ]) + "\n"
