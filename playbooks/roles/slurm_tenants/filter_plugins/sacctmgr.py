"""Filters for the slurm_tenants role: sacctmgr's parsable output as data, a tenant's caps as GrpTRES."""

from __future__ import annotations

TRES = (("cpu", "cpus"), ("node", "nodes"), ("gres/gpu", "gpus"))


def sacctmgr_tres(text: str) -> dict[str, dict[str, str]]:
    """``name|cpu=4,node=2`` lines (show qos format=name,grptres) -> {name: {tres: value}}."""
    out: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, _, tres = line.partition("|")
        out[name] = dict(item.split("=", 1) for item in tres.split(",") if "=" in item)
    return out


def sacctmgr_associations(text: str) -> dict[str, list[str]]:
    """``account|user|fairshare|qos|defaultqos`` lines -> {"account|user": [fairshare, qos, defaultqos]}."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) >= 5:
            out[f"{fields[0]}|{fields[1]}"] = fields[2:5]
    return out


def tenant_grptres(tenant: dict) -> dict[str, str]:
    """The GrpTRES a tenant's caps mean, as sacctmgr shows it (uncapped TRES absent)."""
    return {tres: str(tenant[key]) for tres, key in TRES if tenant.get(key) is not None}


def tenant_grptres_arg(tenant: dict) -> str:
    """The GrpTRES argument that sets every cap, clearing (-1) the ones the tenant does not have."""
    return ",".join(f"{tres}={tenant[key] if tenant.get(key) is not None else -1}" for tres, key in TRES)


class FilterModule:
    def filters(self):
        return {
            "sacctmgr_tres": sacctmgr_tres,
            "sacctmgr_associations": sacctmgr_associations,
            "tenant_grptres": tenant_grptres,
            "tenant_grptres_arg": tenant_grptres_arg,
        }
