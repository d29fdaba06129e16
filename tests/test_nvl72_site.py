"""The reference GB300 NVL72 gigafactory (inventories/nvl72-gigafactory): it validates and plans at 100,800 GPUs, one
NVLink domain whole in each rack within its limits; the fabric's counts at 25,200 trays; the plan report's racks."""

from __future__ import annotations

import io
import itertools

import pytest
from rich.console import Console

from infra.plan import build_plan
from infra.render.files import plan_as_dict
from infra.render.summary import domain_lines, print_summary, rack_lines
from infra.site.fabric import fat_tree
from infra.site import load_site, validate_data
from conftest import RIGA, ROOT, site_data
from test_nvlink_placement import nvl72_riga

NVL72 = ROOT / "inventories" / "nvl72-gigafactory" / "site.yml"
RACK_KIND = ("1,400 racks n[0001-1400]: 1 NVLink domain each, 141.3 of 150 kW (feed; 8 x 33 kW shelves), 27 of 48 U, "
             "liquid 115.2 of 125 kW, air 26.1 of 30 kW")


@pytest.fixture(scope="module")
def reference():
    site = load_site(str(NVL72))
    return site, build_plan(site, str(NVL72))


def test_the_reference_site_plans_100800_gpus_one_whole_domain_per_rack_within_its_limits(reference):
    site, plan = reference
    assert (plan.capacity.gpus, len(plan.hosts)) == (100_800, 25_213)
    assert plan.capacity.facility_kw <= site.site.power.facility_kw
    assert len(plan.domains) == 1_400
    for domain in plan.domains:
        assert len(domain.hosts) == 18 and {plan.hosts[h].rack for h in domain.hosts} == {domain.rack}
    nvl72 = {name: use for name, use in plan.racks.items() if name.startswith("n")}
    assert len(nvl72) == 1_400 and all(len(use.domains) == 1 for use in nvl72.values())
    assert all(use.limits.holds(use.used) for use in plan.racks.values())
    assert [(d.name, d.pool, d.hosts[0]) for d in (plan.domains[0], plan.domains[1200])] == [
        ("n0001", "train", "gb00001"), ("n1201", "infer", "gb21601")]


def test_the_fabric_at_25200_trays_four_rails_each(reference):
    _, plan = reference
    fabric = plan.fabrics[0]
    assert fabric.tiers == 3
    # 350 scalable units of 72 trays x 4 rails = 1,400 rail leaves (72 down, 72 up of 144 ports), one service leaf;
    # pods of 72 leaves: 20 pods x 72 spines; every spine's 72 up-links on 144-port cores: 720
    assert fabric.switches == {"leaf": 1_400, "service-leaf": 1, "spine": 1_440, "core": 720}
    assert fabric.cables == {"node-leaf": 25_200 * 4 + 13, "leaf-spine": 1_401 * 72, "spine-core": 1_440 * 72}
    assert len(fabric.scalable_units) == 350 and {len(u) for u in fabric.scalable_units} == {72}
    assert [len(r.blocks) > 0 for r in fabric.rails] == [True] * 4
    assert len(plan.hosts["gb25200"].rails) == 4 and len(plan.hosts["ctl01"].rails) == 1


def test_a_fabric_past_what_three_tiers_join_gets_a_fourth_with_room_for_every_link():
    # riga-1 grown to 12,500 eight-rail nodes on 64-port switches: 100,011 ports, more than 64^3 / 4 = 65,536
    tiers, switches, cables = fat_tree(3_128, 1, 64)
    assert tiers == 4 and switches == {"leaf": 3_128, "service-leaf": 1, "spine": 98 * 32, "super-spine": 4 * 32 * 32,
                                       "core": 4 * 32 ** 3 // 64}
    assert cables == {"leaf-spine": 3_129 * 32, "spine-super-spine": 98 * 32 * 32, "super-spine-core": 4 * 32 ** 3}
    for tiny in (fat_tree(259, 0, 8), fat_tree(3_129, 0, 64), fat_tree(1_401, 0, 144), fat_tree(33, 0, 64)):
        tiers, switches, cables = tiny
        roles = [r for r in switches if r != "service-leaf"]
        assert len(roles) == tiers
        ports = {259: 8, 3_129: 64, 1_401: 144, 33: 64}[switches["leaf"]]
        for (lower, upper), links in zip(itertools.pairwise(roles), cables.values(), strict=True):
            down = ports if upper == roles[-1] else ports // 2          # the top tier has no up-links
            assert links == (switches[lower] + (switches["service-leaf"] if lower == "leaf" else 0)) * (ports // 2)
            assert switches[upper] * down >= links, (tiny, upper)


def test_the_plan_report_summarises_1400_racks_by_kind(reference):
    site, plan = reference
    assert rack_lines(site, plan) == [RACK_KIND, "rack c01: 11.7 of 20 kW (feed), 13 of 48 U, air 11.7 of 20 kW",
                                      "rack c02: 0.0 of 20 kW (feed), 0 of 48 U, air 0.0 of 20 kW"]
    assert domain_lines(plan) == ["pool train: 1,200 NVLink domains of 18 trays in racks n[0001-1200]",
                                  "pool infer: 200 NVLink domains of 18 trays in racks n[1201-1400]"]
    out = io.StringIO()
    print_summary(site, plan, Console(file=out, width=100))
    assert "racks (1,402, by kind)" in out.getvalue() and f"  {RACK_KIND}\n" in out.getvalue()


def test_the_plan_report_lists_each_rack_at_riga_size_with_its_domains_and_limits():
    riga = validate_data(site_data(RIGA))
    lines = rack_lines(riga, build_plan(riga))
    assert len(lines) == 34 and lines[0] == "rack a01: 40.8 of 45 kW (feed), 32 of 48 U, air 40.8 of 45 kW"
    rack = {"power_kw": 200, "units": 48, "power_shelves": {"count": 5, "kw": 33}, "cooling": {"liquid_kw": 125, "air_kw": 30}}
    site = validate_data(nvl72_riga(racks=4, hosts=72, rack=rack))
    lines = rack_lines(site, build_plan(site))
    assert lines[-4:] == [f"rack n0{i}: NVLink domain n0{i}, 141.3 of 165 kW (5 x 33 kW shelves; feed 200 kW), 27 of 48 U, "
                          "liquid 115.2 of 125 kW, air 26.1 of 30 kW" for i in range(1, 5)]


def test_the_plan_json_holds_racks_and_domains(reference):
    _, plan = reference
    data = plan_as_dict(plan)
    assert data["domains"][0] == {"name": "n0001", "pool": "train", "rack": "n0001", "hosts": "gb[00001-00018]"}
    assert data["racks"]["n1400"] == {"limits": {"kw": 150.0, "units": 48, "liquid_kw": 125.0, "air_kw": 30.0},
                                      "used": {"kw": 141.3, "units": 27, "liquid_kw": 115.2, "air_kw": 26.1},
                                      "domains": ["n1400"]}


def test_a_host_brings_its_node_types_hcas_to_the_fabric_not_the_fabrics_rails():
    data = site_data(RIGA)
    data["fabrics"][0]["topology"] = "fat-tree"
    data["node_types"]["hgx-h200"]["hca"]["count"] = 4                      # four of the fabric's eight rails
    fabric = build_plan(validate_data(data)).fabrics[0]
    assert fabric.cables["node-leaf"] == 128 * 4 + 11 and fabric.switches["leaf"] == 128 * 4 // 32
