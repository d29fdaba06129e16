"""riga-1 with its inference pool as trays of rack-scale NVLink domains: the Kubernetes ComputeDomain tests' site."""

from __future__ import annotations

TRAYS = 4           # riga-1's racks hold 4 inference nodes (45 kW, 10.2 kW each): one domain per rack


def with_nvlink_inference(data: dict, trays: int = TRAYS) -> dict:
    """riga-1's data with pool ``infer`` of node type ``nvl-tray``: hgx-h200's figures (so quotas and racks stay
    riga-1's) as a tray of ``trays``-tray NVLink domains; its cluster on Kubernetes 1.34 with the compute-domains add-on."""
    tray = {**data["node_types"]["hgx-h200"], "model": "NVL-TRAY"}
    data["node_types"]["nvl-tray"] = {**tray, "gpu": {**tray["gpu"], "nvswitch": False}, "nvlink": {"trays": trays}}
    infer = next(p for p in data["pools"] if p["name"] == "infer")
    infer["type"] = "nvl-tray"
    cluster = next(c for c in data["kubernetes"] if "infer" in c["workers"])
    cluster.update(version="1.34", addons=[*cluster["addons"], "compute-domains"])
    return data


def doubled_inference(data: dict) -> dict:
    """with_nvlink_inference with twice the inference trays (64 in racks a25 to a40) and the power for them."""
    data = with_nvlink_inference(data)
    data["site"]["power"]["facility_kw"] *= 2
    data["racks"][0]["names"] = "a[01-40]"
    infer = next(p for p in data["pools"] if p["name"] == "infer")
    infer.update(hosts="gpu[0097-0160]", racks="a[25-40]")
    return data


def riga_of_trays(data: dict) -> dict:
    """riga-1's data whose H200 servers are trays of NVLink domains of 2 (one switch tray each, two domains per rack):
    train on Slurm, infer on Kubernetes 1.34 with the compute-domains add-on."""
    data["node_types"]["hgx-h200"]["gpu"].update(model="GB200", nvswitch=False)
    data["node_types"]["hgx-h200"]["nvlink"] = {"trays": 2, "switch_trays": 1}
    cluster = next(c for c in data["kubernetes"] if "infer" in c["workers"])
    cluster.update(version="1.34", addons=[*cluster["addons"], "compute-domains"])
    return data
