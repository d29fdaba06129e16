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


def _count(tenant: dict, key: str) -> int:
    """A tenant's number as an integer of at least -1 (sacctmgr's "no limit"), refused if it is anything else: a word
    or a blank in a number would become another sacctmgr argument or TRES."""
    value = tenant.get(key)
    text = str(value)
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not text.lstrip("-").isdigit() or not text.isascii() \
            or int(text) < -1:
        raise ValueError(f"tenant {tenant.get('account')!r}: {key} {value!r} is not a whole number")
    return int(text)


def tenant_grptres(tenant: dict) -> dict[str, str]:
    """The GrpTRES a tenant's caps mean, as sacctmgr shows it (uncapped TRES absent)."""
    return {tres: str(tenant[key]) for tres, key in TRES if tenant.get(key) is not None}


def tenant_grptres_arg(tenant: dict) -> str:
    """The GrpTRES argument that sets every cap, clearing (-1) the ones the tenant does not have."""
    return ",".join(f"{tres}={_count(tenant, key) if tenant.get(key) is not None else -1}" for tres, key in TRES)


def sacctmgr_budgets(text: str) -> dict[str, dict]:
    """``name|billing=600,cpu=5|NoDecay`` lines (show qos format=name,grptresmins,flags) -> {name: budget}.

    A budget is ``{"billing": minutes or None, "nodecay": bool}``, as ``tenant_budget`` returns it.
    """
    out: dict[str, dict] = {}
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) < 3 or not fields[0]:
            continue
        mins = dict(item.split("=", 1) for item in fields[1].split(",") if "=" in item)
        flags = {f.strip().lower() for f in fields[2].split(",") if f.strip()}
        out[fields[0]] = {"billing": mins.get("billing"), "nodecay": "nodecay" in flags}
    return out


def tenant_budget(tenant: dict) -> dict:
    """What a tenant's prepaid budget means on its QOS: GrpTRESMins=billing=<minutes> with Flags=NoDecay.

    NoDecay keeps spent billing-minutes spent (PriorityDecayHalfLife would otherwise refill the budget).
    """
    minutes = tenant.get("budget_billing_minutes")
    return {"billing": str(minutes) if minutes is not None else None, "nodecay": minutes is not None}


def tenant_budget_argv(tenant: dict) -> list[str]:
    """The sacctmgr ``set`` arguments, one per argv word, that make a QOS match ``tenant_budget`` (-1 clears the
    limit); the budget is refused unless it is a whole number."""
    if tenant.get("budget_billing_minutes") is None:
        return ["GrpTRESMins=billing=-1", "Flags-=NoDecay"]
    return [f"GrpTRESMins=billing={_count(tenant, 'budget_billing_minutes')}", "Flags+=NoDecay"]


def tenant_budget_args(tenant: dict) -> str:
    """``tenant_budget_argv`` as one line (for people; the role passes the list as argv)."""
    return " ".join(tenant_budget_argv(tenant))


class FilterModule:
    def filters(self):
        return {
            "sacctmgr_tres": sacctmgr_tres,
            "sacctmgr_associations": sacctmgr_associations,
            "tenant_grptres": tenant_grptres,
            "tenant_grptres_arg": tenant_grptres_arg,
            "sacctmgr_budgets": sacctmgr_budgets,
            "tenant_budget": tenant_budget,
            "tenant_budget_args": tenant_budget_args,
            "tenant_budget_argv": tenant_budget_argv,
        }
