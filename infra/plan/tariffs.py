"""Prices derived from ``billing.tariffs``, for both schedulers: Slurm's billing weights and OpenCost's custom prices.

The tariffs' units (site file): GPU-hour per GPU model, CPU-hour per hardware thread, memory GB-hour with
GB = GiB (2**30 bytes, as Slurm's ``G`` and OpenCost's RAM price count it), storage TB-month per storage
system with TB = 10**12 bytes (as the tenants' ``storage_tb`` become volume sizes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from .model import ClusterPricing

HOURS_PER_MONTH = 8760 / 12     # 730: the mean month, OpenCost's own; twelve months of hourly prices make 12 tariffs
GIB_PER_TB = 10**12 / 2**30     # 931.32...: a TB-month of storage is this many GiB-months
SIGNIFICANT_DIGITS = 10         # OpenCost's prices as written: relative rounding error below 5e-10


def gpu_hour_prices(tariffs, models: Iterable[str]) -> dict[str, float]:
    """Each of ``models`` (in order, once) that the tariffs price above zero, with its price per GPU-hour."""
    return {m: tariffs.gpu_hour[m] for m in dict.fromkeys(models) if tariffs.gpu_hour.get(m)}


def storage_gib_hour(tb_month: float) -> float:
    """A price per TB-month as OpenCost's storage price: per GiB-hour, over the mean month of 730 hours.

    OpenCost multiplies this by a volume's GiB and its hours; a month of 720 or 744 hours therefore costs
    720/730 or 744/730 of the tariff, a year exactly twelve tariffs. ``gigafactory usage`` charges whole months.
    """
    return tb_month / GIB_PER_TB / HOURS_PER_MONTH


def _weighted_mean(prices: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """The mean of ``prices`` weighted by ``weights`` (a key without a price counts at 0, i.e. free); 0 without weight."""
    total = sum(weights.values())
    return sum(prices.get(k, 0.0) * w for k, w in weights.items()) / total if total else 0.0


def price_text(value: float) -> str:
    """A price as OpenCost reads it (a string parsed as float64): ``SIGNIFICANT_DIGITS`` significant digits, no exponent."""
    text = format(Decimal(f"{value:.{SIGNIFICANT_DIGITS}g}"), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def cluster_pricing(billing, gpus_by_model: Mapping[str, int], storage_tb: Mapping[str, float],
                    storage_capacity_tb: Mapping[str, float]) -> ClusterPricing:
    """OpenCost's custom prices for a cluster whose workers hold ``gpus_by_model`` and whose tenants are allotted
    ``storage_tb`` per storage system.

    OpenCost's custom pricing holds one GPU price and one storage price per cluster. Where the cluster has GPUs of
    one model, and its tenants storage on one system, they are the tariffs. Otherwise they are the tariffs' mean
    weighted by the cluster's GPUs of each model, and by the tenants' allotments on each storage system (without
    allotments: by the systems' capacity), so the cluster's total at full use equals the tariffs' total; a model or
    system without a tariff counts as free, as in Slurm's billing weights. The site check
    ``opencost_prices_match_tariffs`` warns when that mean is used.
    """
    t = billing.tariffs
    weights = {k: v for k, v in storage_tb.items() if v} or dict(storage_capacity_tb)
    return ClusterPricing(
        currency=billing.currency,
        cpu_hour=t.cpu_hour,
        ram_gib_hour=t.memory_gb_hour,
        gpu_hour=_weighted_mean(t.gpu_hour, gpus_by_model),
        storage_gib_hour=storage_gib_hour(_weighted_mean(t.storage_tb_month, weights)),
        gpu_tariffs={m: t.gpu_hour.get(m, 0.0) for m in gpus_by_model},
        storage_tariffs={s: t.storage_tb_month.get(s, 0.0) for s in weights},
    )
