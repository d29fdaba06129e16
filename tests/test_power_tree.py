"""The power tree (issue 26): domains below the facility, the GPU power limits the plan chooses to keep every budget,
and the sites refused because no limit can (site/power.py)."""

from __future__ import annotations

import copy
import json
import random
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, site_data
from infra.plan import build_plan
from infra.render.files import plan_as_dict
from infra.render.summary import power_lines
from infra.site.load import validate_data
from infra.site.power import FACILITY, planned_kw, switch_trays_kw
from test_site_validation import problems_of

NVL72 = ROOT / "inventories" / "nvl72-gigafactory" / "site.yml"
H200 = {"min": 200, "max": 700, "default": 700}


def nameplate_kw(site, host_types, fabrics) -> tuple[float, float]:
    """(IT load, facility load) with every node at its power_kw, NVLink switch trays and fabric switches: the site's
    draw as it was computed before the power tree (the test's own oracle)."""
    node_kw = sum(site.node_types[t].power_kw for t in host_types.values() if t in site.node_types)
    for t, nt in site.node_types.items():
        node_kw += switch_trays_kw(nt, sum(1 for name in host_types.values() if name == t))
    it_kw = round(node_kw + sum(f.power_kw for f in fabrics), 3)
    return it_kw, round(it_kw * site.site.power.pue, 3)


def with_halls(riga: dict, hall_a_kw: float, row_kw: float | None = None) -> dict:
    """A copy of riga-1 with H200 power-limit ranges, its a-racks in hall-a (their first 8 in row-a1 when ``row_kw``)."""
    riga = copy.deepcopy(riga)
    riga["node_types"]["hgx-h200"]["gpu"]["power_limit_w"] = H200
    domains = [{"name": "hall-a", "kw": hall_a_kw}]
    a = riga["racks"][0]
    assert a["names"] == "a[01-32]"
    if row_kw is None:
        a["domain"] = "hall-a"
    else:
        domains.append({"name": "row-a1", "kw": row_kw, "parent": "hall-a"})
        riga["racks"][0:1] = [{**a, "names": "a[01-08]", "domain": "row-a1"}, {**a, "names": "a[09-32]", "domain": "hall-a"}]
    riga["site"]["power"]["domains"] = domains
    return riga


def worst_with(site, plan, extra_w: int) -> dict[str, float]:
    """Every domain's worst case with each limited GPU at its planned limit plus ``extra_w`` watts (switches included)."""
    domain_of = {name: site.racks[i].domain for i, entry in enumerate(site.racks) for name in entry.names}
    parents = {d.name: d.parent for d in plan.power.domains}
    out = dict.fromkeys(parents, 0.0)
    for host in plan.hosts.values():
        nt = site.node_types[host.node_type]
        kw = planned_kw(nt, plan.power.share)
        if host.node_type in plan.power.limits_w:
            kw += nt.gpu.count * extra_w / 1000
        at = domain_of.get(host.rack)
        chain = []
        while at is not None:
            chain.append(at)
            at = parents.get(at) if parents.get(at) != FACILITY else None
        for name in [*chain, FACILITY]:
            out[name] += kw
    trays = sum(f.power_kw for f in plan.fabrics)
    out[FACILITY] += trays
    for d in plan.domains:                      # NVLink switch trays, in their racks
        nv = site.node_types[plan.hosts[d.hosts[0]].node_type].nvlink
        at, chain = domain_of.get(d.rack), []
        while at is not None:
            chain.append(at)
            at = parents.get(at) if parents.get(at) != FACILITY else None
        for name in [*chain, FACILITY]:
            out[name] += nv.switch_trays * nv.switch_tray_kw
    return out


def test_reference_site_limits_keep_every_hall_and_are_the_highest_that_do():
    site = validate_data(site_data(NVL72))
    plan = build_plan(site)
    assert plan.power.limits_w == {"gb300": 1342}
    budgets = {d.name: d.budget_kw for d in plan.power.domains}
    planned = {d.name: d.worst_kw for d in plan.power.domains}
    at_limit = worst_with(site, plan, 0)
    assert at_limit == pytest.approx(planned, abs=1e-6)         # the plan's figures, recomputed host by host
    assert all(planned[n] <= budgets[n] for n in budgets)
    one_more = worst_with(site, plan, 1)                         # one watt more on every GB300: a hall is over
    assert any(one_more[n] > budgets[n] for n in ("hall-1", "hall-2", "hall-3"))
    assert [d.name for d in plan.power.domains] == [FACILITY, "hall-1", "hall-2", "hall-3", "hall-4"]
    assert [d.racks for d in plan.power.domains] == [1401, 350, 350, 350, 350]


def test_nested_domains_the_tightest_decides(riga):
    plan = build_plan(validate_data(with_halls(riga, hall_a_kw=1400, row_kw=300)))
    # row-a1: 8 racks x 4 hosts = 32 H200 servers: 32 x (10.2 - 8 x 0.7) = 147.2 kW fixed at 0 W, + 32 x 8 x W
    # at min 200 W: 147.2 + 51.2 = 198.4 kW; 300 kW allows W = (300 - 147.2) / 256 kW = 596.9 W -> 596 W
    assert plan.power.limits_w == {"hgx-h200": 596}
    row = next(d for d in plan.power.domains if d.name == "row-a1")
    assert row.parent == "hall-a" and row.worst_kw == pytest.approx(147.2 + 32 * 8 * 0.596) and row.racks == 8
    lines = power_lines(plan)
    assert lines[0].startswith("facility: ") and lines[1].startswith("  hall-a: ") and lines[2].startswith("    row-a1: ")
    assert "GPU power limit of hgx-h200: 596 W" in lines[-1]
    data = json.loads(json.dumps(plan_as_dict(plan)))
    assert data["power"]["gpu_power_limits_w"] == {"hgx-h200": 596}
    assert {d["name"]: d["parent"] for d in data["power"]["domains"]} == {FACILITY: None, "hall-a": FACILITY, "row-a1": "hall-a"}


def test_a_budget_no_limit_can_hold_is_refused_with_its_figures(riga):
    # row-a1 at min 200 W needs 198.4 kW
    found = problems_of(with_halls(riga, hall_a_kw=1400, row_kw=198))
    assert found == ["site.power.domains[1].kw: power domain 'row-a1' needs 198.4 kW with every GPU at its minimum power "
                     "limit (its racks' worst case), more than its 198 kW"]
    assert problems_of(with_halls(riga, hall_a_kw=1400, row_kw=198.4)) == []


def test_facility_lowers_limits_where_nameplate_would_exceed_it(riga):
    riga["node_types"]["hgx-h200"]["gpu"]["power_limit_w"] = H200
    riga["site"]["power"]["facility_kw"] = 1500               # nameplate 1,399.4 kW x 1.2 = 1,679 kW: over
    site = validate_data(riga)
    plan = build_plan(site)
    assert plan.power.limits_w["hgx-h200"] < 700
    assert plan.capacity.facility_kw <= 1500 and plan.capacity.headroom_kw >= 0
    riga["site"]["power"]["facility_kw"] = 1000
    assert any(p.startswith("site.power.facility_kw: the site needs") and "every GPU at its minimum power limit" in p
               for p in problems_of(riga))


def test_without_ranges_the_plan_is_the_nameplate(riga):
    site = validate_data(riga)
    plan = build_plan(site)
    assert plan.power.limits_w == {} and plan.power.share == 1.0
    host_types = {h.name: h.node_type for h in plan.hosts.values()}
    assert (plan.capacity.it_kw, plan.capacity.facility_kw) == nameplate_kw(site, host_types, plan.fabrics)


def test_random_trees_keep_every_budget_or_are_refused(riga):
    """Budgets drawn at random around the loads: either a problem, or every domain within its budget and one watt
    more on every GPU puts one over (the limit is the highest), unless the limit is already the default."""
    rng = random.Random(26)
    base = with_halls(riga, 1400, 300)
    for _ in range(25):
        data = json.loads(json.dumps(base))
        data["site"]["power"]["domains"][0]["kw"] = rng.uniform(900, 1400)
        data["site"]["power"]["domains"][1]["kw"] = rng.uniform(150, 400)
        found = problems_of(data)
        if found:
            assert all("with every GPU at its minimum power limit" in p for p in found), found
            continue
        site = validate_data(data)
        plan = build_plan(site)
        budgets = {d.name: d.budget_kw for d in plan.power.domains}
        assert all(d.worst_kw <= d.budget_kw + 1e-9 for d in plan.power.domains)
        if plan.power.limits_w["hgx-h200"] < 700:
            more = worst_with(site, plan, 1)
            assert any(more[n] > budgets[n] for n in budgets)


def test_validate_cli_exit_2_names_the_domain(tmp_path, riga):
    path = tmp_path / "site.yml"
    path.write_text(yaml.safe_dump(with_halls(riga, hall_a_kw=100)))
    done = subprocess.run([sys.executable, "-m", "infra.cli", "validate", str(path)], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "site.power.domains[0].kw" in done.stdout + done.stderr and "Traceback" not in done.stderr
