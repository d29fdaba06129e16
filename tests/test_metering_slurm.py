"""Slurm configured from the billing and energy sections: TRES recorded, billing weights, budgets on the QOS."""

from __future__ import annotations

import re

from metering_data import with_billing
from test_slurm_vars import _filters

from infra.plan import build_plan
from infra.render.files import render_all
from infra.render.inventory import slurm_vars
from infra.site.load import validate_data


def _conf(data: dict) -> str:
    site = validate_data(data)
    return render_all(site, build_plan(site))["slurm/slurm.conf"]


def _settings(conf: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in conf.splitlines() if "=" in line and not line.startswith(("#", "NodeName", "PartitionName")))


def test_without_billing_gpus_are_recorded_per_model_and_nothing_is_priced(riga):
    settings = _settings(_conf(riga))
    assert settings["AccountingStorageTRES"] == "gres/gpu,gres/gpu:h200"
    assert settings["AccountingStorageEnforce"] == "associations,limits,qos"
    assert settings["JobAcctGatherType"] == "jobacct_gather/cgroup"
    conf = _conf(riga)
    assert "TRESBillingWeights" not in conf and "PriorityWeightTRES" not in conf and "AcctGatherEnergyType" not in conf


def _billing_rate(weights: str, cpus: int, mem_gb: float, gpus: int) -> float:
    """A job's billing TRES as Slurm computes it from TRESBillingWeights (sum of weight × TRES, Mem per G)."""
    total = 0.0
    for item in weights.split(","):
        name, value = item.split("=")
        if name == "CPU":
            total += float(value) * cpus
        elif name == "Mem":
            assert value.endswith("G")
            total += float(value[:-1]) * mem_gb
        elif name.startswith("GRES/gpu:"):
            total += float(value) * gpus
    return total


def test_billing_weights_make_one_billing_unit_one_euro_per_hour(riga):
    conf = _conf(with_billing(riga))
    partitions = re.findall(r'^PartitionName=(\S+) .*TRESBillingWeights="([^"]+)"', conf, re.MULTILINE)
    assert [name for name, _ in partitions] == ["batch", "interactive"]
    for _, weights in partitions:
        # a whole H200 node: 8 GPUs × 2.5 + 224 CPUs × 0.01 + 2048 GB × 0.001 EUR per hour
        assert abs(_billing_rate(weights, 224, 2048, 8) - (20 + 2.24 + 2.048)) < 1e-9


def test_priority_weights_follow_what_each_tres_costs(riga):
    settings = _settings(_conf(with_billing(riga)))
    weights = dict(item.split("=") for item in settings["PriorityWeightTRES"].split(","))
    assert set(weights) == {"CPU", "Mem", "GRES/gpu:h200"}
    assert int(weights["GRES/gpu:h200"]) > int(weights["CPU"]) > 0
    assert abs(sum(map(int, weights.values())) - 1000) <= 2


def test_energy_section_sets_the_gather_plugin_and_budgets_make_limits_safe(riga):
    settings = _settings(_conf(with_billing(riga)))
    assert settings["AcctGatherEnergyType"] == "acct_gather_energy/pm_counters"
    assert settings["AcctGatherNodeFreq"] == "30"
    assert settings["AccountingStorageEnforce"] == "associations,limits,qos,safe"
    # slurmctld records a job's energy from its extern step only (a batch step's never reaches the job's record):
    # every node energy plugin brings Contain, which starts that step; without a node meter there is no PrologFlags
    for node in ("pm_counters", "ipmi"):
        data = with_billing(riga)
        data["energy"] = {"node": node}
        assert _settings(_conf(data))["PrologFlags"] == "Contain"
    data["energy"] = {"node": "none"}
    assert "PrologFlags" not in _conf(data) and "PrologFlags" not in _conf(riga)


def test_a_prepaid_budget_becomes_billing_minutes_at_list_price(riga):
    site = validate_data(with_billing(riga))
    tenants = {t["account"]: t for t in slurm_vars(site, build_plan(site))["gf_slurm_tenants"]}
    # 100,000 EUR at the academic factor 0.5 buys 200,000 EUR of list price: 12,000,000 billing-minutes
    assert tenants["univ-latvia"]["budget_billing_minutes"] == 12_000_000
    assert tenants["acme-ai"]["budget_billing_minutes"] is None


def test_budget_filters_read_sacctmgr_and_say_what_to_set():
    f = _filters()
    now = f.sacctmgr_budgets("normal|||\nuniv-latvia|billing=12000000|NoDecay\nacme-ai|cpu=10|\n")
    assert now == {"normal": {"billing": None, "nodecay": False},
                   "univ-latvia": {"billing": "12000000", "nodecay": True},
                   "acme-ai": {"billing": None, "nodecay": False}}
    prepaid = {"account": "univ-latvia", "budget_billing_minutes": 12_000_000}
    assert f.tenant_budget(prepaid) == now["univ-latvia"]
    assert f.tenant_budget({"account": "acme-ai", "budget_billing_minutes": None}) == now["acme-ai"]
    assert f.tenant_budget_args(prepaid) == "GrpTRESMins=billing=12000000 Flags+=NoDecay"
    assert f.tenant_budget_args({"budget_billing_minutes": None}) == "GrpTRESMins=billing=-1 Flags-=NoDecay"


def test_dcgm_job_stats_adds_the_prolog_epilog_folders_and_nothing_else_does(riga):
    from pathlib import Path

    import yaml

    from infra.render.files import EPILOG_DIR, PROLOG_DIR
    data = with_billing(riga)
    assert data["energy"]["gpu"] == "dcgm-job-stats"
    site = validate_data(data)
    plan = build_plan(site)
    conf = render_all(site, plan)["slurm/slurm.conf"]
    settings = _settings(conf)
    # Alloc for the prologs; Contain for the node meter (energy.node: pm_counters here too)
    assert (settings["Prolog"], settings["Epilog"], settings["PrologFlags"]) == (f"{PROLOG_DIR}/*", f"{EPILOG_DIR}/*", "Alloc,Contain")
    assert slurm_vars(site, plan)["gf_slurm"]["job_scripts"] == ["dcgm-energy"]
    # the role installs into the folders slurm.conf reads
    defaults = yaml.safe_load((Path(__file__).parent.parent / "playbooks/roles/slurm_compute/defaults/main.yml").read_text())
    assert (defaults["slurm_compute_prolog_dir"], defaults["slurm_compute_epilog_dir"]) == (PROLOG_DIR, EPILOG_DIR)
    for other in ("none", "dcgm-exporter"):
        data["energy"]["gpu"] = other
        site = validate_data(data)
        plan = build_plan(site)
        conf = render_all(site, plan)["slurm/slurm.conf"]
        settings = _settings(conf)
        assert "Prolog" not in settings and "Epilog" not in settings and settings["PrologFlags"] == "Contain", other
        assert slurm_vars(site, plan)["gf_slurm"]["job_scripts"] == [], other
