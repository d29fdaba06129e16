"""riga-1 with a billing and an energy section: the metering tests' site."""

from __future__ import annotations


def with_billing(data: dict) -> dict:
    """Add billing (EUR tariffs, two classes) and energy to riga-1's data; tenants get classes, one a budget."""
    data["billing"] = {
        "currency": "EUR",
        "tariffs": {"gpu_hour": {"H200": 2.5}, "cpu_hour": 0.01, "memory_gb_hour": 0.001,
                    "storage_tb_month": {"datasets": 20.0, "home": 30.0}, "energy_kwh": 0.12},
        "classes": [{"name": "academic", "price_factor": 0.5}, {"name": "commercial", "price_factor": 1.0}],
    }
    data["energy"] = {"node": "pm_counters", "gpu": "dcgm-job-stats", "node_frequency_s": 30,
                      "pue": [{"period": "2026", "pue": 1.15}]}
    tenants = {t["name"]: t for t in data["tenants"]}
    tenants["acme-ai"]["billing"] = {"class": "commercial"}
    tenants["univ-latvia"]["billing"] = {"class": "academic", "prepaid": {"amount": 100000, "currency": "EUR"}}
    return data
