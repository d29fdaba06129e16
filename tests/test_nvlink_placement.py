"""Rack-scale NVLink domains in racks: a domain stands in one rack, whole, held to the rack's power, shelves and cooling."""

from __future__ import annotations

import copy

import pytest

from infra.plan import build_plan
from infra.site import SiteInvalid, validate_data
from infra.site.index import SiteIndex
from infra.site.placement import place
from conftest import RIGA, site_data

GB300 = {
    "vendor": "nvidia", "model": "GB300 NVL72 compute tray",
    "gpu": {"model": "GB300", "count": 4, "memory_gb": 288},
    "cpu": {"sockets": 2, "cores_per_socket": 72, "arch": "aarch64"},
    "memory_gb": 960,
    "hca": {"model": "ConnectX-8", "ports": ["0000:03:00.0", "0002:03:00.0", "0010:03:00.0", "0012:03:00.0"]},
    "power_kw": 7.3, "liquid_kw": 6.4, "rack_units": 1,
    "nvlink": {"trays": 18, "switch_trays": 9, "switch_tray_kw": 1.1},
}
NVL72_RACK = {"power_kw": 150, "units": 48, "power_shelves": {"count": 8, "kw": 33},
              "cooling": {"liquid_kw": 125, "air_kw": 30}}


def nvl72_riga(racks: int = 4, hosts: int = 72, rack: dict | None = None) -> dict:
    """riga-1 with its training pool replaced by GB300 NVL72 trays in racks n[01-..]."""
    data = site_data(RIGA)
    data["node_types"]["gb300"] = copy.deepcopy(GB300)
    data["fabrics"][0]["rails"] = 4                             # a tray's four ConnectX-8
    data["policy"]["approved_vendors"].append("nvidia")
    data["racks"].append({"names": f"n[01-{racks:02d}]", **copy.deepcopy(rack or NVL72_RACK)})
    data["pools"][0].update(type="gb300", hosts=f"gb[0001-{hosts:04d}]", racks=f"n[01-{racks:02d}]")
    for tenant in data.get("tenants", []):
        tenant.get("slurm", {}).pop("gpus", None)
    return data


def problems(data) -> list[str]:
    try:
        build_plan(validate_data(data))
    except SiteInvalid as err:
        return [str(p) for p in err.problems]
    return []


def test_each_domain_stands_whole_in_one_rack_in_rack_order():
    site = validate_data(nvl72_riga(racks=4, hosts=72))
    placed = place(SiteIndex(site), [])
    assert [(d.name, d.rack, d.hosts[0], d.hosts[-1], len(d.hosts)) for d in placed.domains] == [
        ("n01", "n01", "gb0001", "gb0018", 18), ("n02", "n02", "gb0019", "gb0036", 18),
        ("n03", "n03", "gb0037", "gb0054", 18), ("n04", "n04", "gb0055", "gb0072", 18)]
    for domain in placed.domains:
        assert {placed.hosts[h][0] for h in domain.hosts} == {domain.rack}
    use = placed.racks["n01"]
    assert (round(use.used.kw, 3), use.used.units, round(use.used.liquid_kw, 3)) == (141.3, 27, 115.2)
    assert use.limits.kw == 150 and use.domains == ["n01"]
    assert build_plan(site).capacity.it_kw > 4 * 141.3


def test_a_rack_with_room_for_two_domains_names_them_apart():
    rack = {"power_kw": 300, "units": 60, "power_shelves": {"count": 16, "kw": 33}, "cooling": {"liquid_kw": 250, "air_kw": 60}}
    placed = place(SiteIndex(validate_data(nvl72_riga(racks=2, hosts=72, rack=rack))), [])
    assert [(d.name, d.rack) for d in placed.domains] == [("n01-1", "n01"), ("n01-2", "n01"), ("n02-1", "n02"), ("n02-2", "n02")]


def test_a_domain_name_that_is_another_racks_name_is_refused():
    rack = {"power_kw": 300, "units": 60, "power_shelves": {"count": 16, "kw": 33}, "cooling": {"liquid_kw": 250, "air_kw": 60}}
    data = nvl72_riga(racks=2, hosts=72, rack=rack)
    data["racks"].append({"names": ["n01-2"], "power_kw": 10})
    assert any(p.startswith("racks: rack n01 holds 2 NVLink domains") and "a rack is named n01-2" in p
               for p in problems(data)), problems(data)


@pytest.mark.parametrize("rack, fragment", [
    ({"power_kw": 40, "units": 48, "cooling": {"liquid_kw": 125, "air_kw": 30}}, "rack n01 (only 40 kW of power)"),
    ({**NVL72_RACK, "power_shelves": {"count": 4, "kw": 33}}, "rack n01 (only 132 kW of power)"),
    ({**NVL72_RACK, "cooling": {"liquid_kw": 100, "air_kw": 30}}, "rack n01 (only 100 kW of liquid cooling)"),
    ({"power_kw": 150, "units": 48}, "rack n01 (only 0 kW of liquid cooling)"),
    ({**NVL72_RACK, "units": 26}, "rack n01 (only 26 U)"),
])
def test_a_rack_that_cannot_hold_one_domain_is_named_with_its_figures(rack, fragment):
    found = problems(nvl72_riga(rack=rack))
    assert any(p.startswith("pools[0].racks: ") and fragment in p and "cannot hold even one NVLink domain of gb300 "
               "(18 trays x 7.3 kW + 9 switch trays x 1.1 kW = 141.3 kW, 27 U, 115.2 kW liquid / 26.1 kW air)" in p
               for p in found), found


def test_a_pool_of_partial_domains_is_refused():
    found = problems(nvl72_riga(hosts=71))
    assert any(p.startswith("pools[0].hosts: ") and "71 gb300 trays: not whole NVLink domains of 18" in p for p in found), found


def test_too_few_racks_say_how_many_trays_are_left():
    found = problems(nvl72_riga(racks=3, hosts=72))
    assert any("hold only 54 of pool 'train''s 72 gb300 hosts" in p and "18 more need racks with room" in p for p in found), found


@pytest.mark.parametrize("change, fragment", [
    (lambda nt: nt["cpu"].update(arch="ppc64le"), "node_types.gb300.cpu.arch"),
    (lambda nt: nt.pop("gpu"), "node_types.gb300: nvlink: a tray of an NVLink domain has GPUs"),
    (lambda nt: nt.update(liquid_kw=8), "liquid_kw (8) exceeds power_kw (7.3)"),
    (lambda nt: nt["hca"].update(count=8), "count is 8 but 4 ports are named"),
    (lambda nt: nt["hca"].update(ports=["0000:03:00.0", "0000:03:00.0"]), "ports names a PCI address twice"),
    (lambda nt: nt["hca"].update(ports=["mlx5_0"]), "'mlx5_0' is not a PCI address"),
    (lambda nt: nt["nvlink"].update(trays=1), "node_types.gb300.nvlink.trays"),
])
def test_tray_types_refuse_what_no_tray_is(change, fragment):
    data = nvl72_riga()
    change(data["node_types"]["gb300"])
    assert any(fragment in p for p in problems(data)), problems(data)
