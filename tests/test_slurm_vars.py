"""What the Slurm roles receive: the rendered files as data, the tenants, and the sacctmgr filters' reading of the database."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from infra.plan import build_plan
from infra.render.files import HEALTH_CHECK_PROGRAM, slurm_files
from infra.render.inventory import slurm_vars
from infra.site import load_site
from conftest import DEMO, RIGA

FILTERS = Path(__file__).parent.parent / "playbooks/roles/slurm_tenants/filter_plugins/sacctmgr.py"


def _filters():
    spec = importlib.util.spec_from_file_location("sacctmgr_filters", FILTERS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_nodes_get_the_rendered_slurm_files_with_the_health_gate():
    for path in (RIGA, DEMO):
        site = load_site(path)
        plan = build_plan(site)
        rendered = {k.removeprefix("slurm/"): v for k, v in slurm_files(plan, HEALTH_CHECK_PROGRAM).items()}
        files = slurm_vars(site, plan)["gf_slurm_files"]
        assert files == rendered and set(files) >= {"slurm.conf", "gres.conf", "cgroup.conf"}
        assert f"HealthCheckProgram={HEALTH_CHECK_PROGRAM}" in files["slurm.conf"]


def test_tenants_and_layout_come_from_the_site():
    site = load_site(RIGA)
    v = slurm_vars(site, build_plan(site))
    assert v["gf_slurm"]["controllers"] == list(site.slurm.controllers)
    assert v["gf_slurm"]["accounting_host"] == site.slurm.accounting.host
    assert [t["account"] for t in v["gf_slurm_tenants"]] == [t.slurm.account for t in site.tenants if t.slurm]
    assert [t["gpus"] for t in v["gf_slurm_tenants"]] == [t.slurm.gpus for t in site.tenants if t.slurm]


def test_sacctmgr_output_parses_and_caps_compare():
    f = _filters()
    qos = f.sacctmgr_tres("normal|\nacme|node=2\nsmall|cpu=1,node=1,gres/gpu=8\n")
    assert qos == {"normal": {}, "acme": {"node": "2"}, "small": {"cpu": "1", "node": "1", "gres/gpu": "8"}}
    tenant = {"account": "small", "cpus": 1, "nodes": 1, "gpus": 8}
    assert f.tenant_grptres(tenant) == qos["small"]                     # unchanged: no sacctmgr call
    assert f.tenant_grptres({**tenant, "gpus": 16}) != qos["small"]     # changed quota: modified in place
    assert f.tenant_grptres_arg({"nodes": 2, "cpus": None, "gpus": None}) == "cpu=-1,node=2,gres/gpu=-1"
    assoc = f.sacctmgr_associations("root||1|normal|\nacme||60|acme|acme\nacme|root|1|acme|acme\n")
    assert assoc["acme|"] == ["60", "acme", "acme"] and "acme|root" in assoc
