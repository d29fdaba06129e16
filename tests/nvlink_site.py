"""A small NVLink site for tests: the demo with two racks of 18 GB300 trays each (two NVLink domains of 18)."""

from __future__ import annotations

import copy


def nvlink_site(demo: dict) -> dict:
    """demo whose compute pool is 36 trays of an NVL72-like domain of 18, one domain per rack (nvl1, nvl2)."""
    data = copy.deepcopy(demo)
    data["site"]["power"]["facility_kw"] = 100
    data["software"]["nvidia_driver"] = {"branch": "580", "flavor": "open", "source": "repository"}
    data["repositories"]["cuda"] = "http://10.0.2.2:3142/cuda"
    data["node_types"]["vm-compute"].update(
        gpu={"model": "GB300", "count": 4}, nvlink={"trays": 18, "switch_trays": 9},
        cpu={"sockets": 1, "cores_per_socket": 2, "threads_per_core": 1, "arch": "aarch64"}, power_kw=1)
    # 18 trays by power (18.5 kW), 18 trays and 9 switch trays by space
    data["racks"].append({"names": "nvl[1-2]", "power_kw": 18.5, "units": 27})
    data["slurm"]["topology"] = "auto"                           # block: one per rack's domain
    pools = {p["name"]: p for p in data["pools"]}
    pools["compute"].update(hosts="node[01-36]", racks="nvl[1-2]")
    for tenant in data.get("tenants", []):
        tenant.get("slurm", {}).pop("nodes", None)
    return data
