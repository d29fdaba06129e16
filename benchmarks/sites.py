"""Sites for benchmarks and scale tests: the repository's own, and riga-1's shape grown to 100,000 GPUs."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
# The repository's own sites a benchmark may name (site_scale.py --site NAME).
SITES = {
    "riga-1": ROOT / "inventories" / "riga-1" / "site.yml",
    "nvl72": ROOT / "inventories" / "nvl72-gigafactory" / "site.yml",     # 100,800 GB300 GPUs, 1,400 NVL72 racks
}


def large_site(nodes: int = 12_500) -> dict:
    """riga-1 grown to ``nodes`` eight-GPU nodes (12,500 = 100,000 GPUs), same clusters and tenants."""
    data = copy.deepcopy(yaml.safe_load((ROOT / "inventories" / "riga-1" / "site.yml").read_text()))
    infer = nodes // 5
    train = nodes - infer
    racks = -(-nodes // 4)
    train_racks = -(-train // 4)
    width = len(str(nodes))
    rwidth = len(str(racks))
    data["site"]["name"] = "scale-100k"
    data["site"]["power"]["facility_kw"] = round(nodes * 10.2 * 1.25 * 1.2 + 10_000)
    data["racks"][0]["names"] = f"a[{1:0{rwidth}d}-{racks:0{rwidth}d}]"
    data["pools"][0]["hosts"] = f"gpu[{1:0{width}d}-{train:0{width}d}]"
    data["pools"][0]["racks"] = f"a[{1:0{rwidth}d}-{train_racks:0{rwidth}d}]"
    data["pools"][1]["hosts"] = f"gpu[{train + 1:0{width}d}-{nodes:0{width}d}]"
    data["pools"][1]["racks"] = f"a[{train_racks + 1:0{rwidth}d}-{racks:0{rwidth}d}]"
    data["fabrics"][0]["ipoib"]["cidr"] = "10.64.0.0/12"
    data["tenants"][0]["slurm"]["gpus"] = train * 8 // 2
    data["tenants"][1]["slurm"]["gpus"] = train * 8 // 4
    data["tenants"][0]["kubernetes"]["gpus"] = infer * 8 // 2
    data["tenants"][2]["kubernetes"]["gpus"] = infer * 8 // 4
    return data
