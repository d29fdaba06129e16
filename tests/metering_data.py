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


def with_two_gpu_models(data: dict) -> dict:
    """with_billing, and riga-1's training nodes split between two GPU models: 80 H200 nodes (10.2 kW) in train and
    16 B200 nodes (11 kW) in train-b; partition batch spans both, interactive is H200 only, b200 is B200 only."""
    data = with_billing(data)
    data["node_types"]["hgx-b200"] = dict(data["node_types"]["hgx-h200"], power_kw=11.0,
                                          gpu={"model": "B200", "count": 8, "memory_gb": 180, "nvswitch": True})
    data["pools"][0].update(hosts="gpu[0001-0080]", racks="a[01-20]")
    data["pools"].insert(1, {"name": "train-b", "type": "hgx-b200", "hosts": "gpu[0081-0096]", "racks": "a[21-24]"})
    data["slurm"]["partitions"][0]["pools"] = ["train", "train-b"]
    data["slurm"]["partitions"].append({"name": "b200", "pools": ["train-b"], "max_time": "1-00:00:00"})
    data["billing"]["tariffs"]["gpu_hour"]["B200"] = 4.0
    return data
