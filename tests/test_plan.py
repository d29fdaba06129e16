"""The plan: deterministic, stable under growth, and right about racks, fabric and power."""

from __future__ import annotations

import ipaddress

import pytest

from infra.plan import build_plan
from infra.site import validate_data


def plan_of(data):
    return build_plan(validate_data(data))


def test_plan_is_deterministic(riga):
    a, b = plan_of(riga), plan_of(riga)
    assert a.hosts == b.hosts and a.fabrics == b.fabrics and a.slurm == b.slurm


def test_growing_a_pool_and_adding_a_pool_never_moves_an_existing_host(riga):
    before = plan_of(riga)
    grown = riga
    grown["racks"].append({"names": "c[01-16]", "power_kw": 45, "units": 48})
    grown["pools"][0]["hosts"] = "gpu[0001-0096],gpu[0129-0160]"          # train grows by 32 nodes
    grown["pools"][0]["racks"] = "a[01-24],c[01-08]"
    grown["pools"].append({"name": "train2", "type": "hgx-h200", "hosts": "gpu[0161-0192]", "racks": "c[09-16]"})
    grown["pools"].append({"name": "login-extra", "type": "cpu-1u", "hosts": "login[03-04]", "racks": "b02"})
    grown["site"]["power"]["facility_kw"] = 4000
    after = plan_of(grown)
    assert len(after.hosts) == len(before.hosts) + 66
    for name, host in before.hosts.items():
        moved = after.hosts[name]
        assert (moved.rack, moved.rack_unit) == (host.rack, host.rack_unit), name
        assert moved.addresses == host.addresses, name
        assert moved.rails == host.rails, name
    # the new hosts got addresses of their own
    used = [h.address() for h in after.hosts.values()]
    assert len(set(used)) == len(used)


def test_hosts_fill_racks_as_power_and_space_allow(riga):
    plan = plan_of(riga)
    per_rack: dict[str, list[str]] = {}
    for h in plan.hosts.values():
        per_rack.setdefault(h.rack, []).append(h.name)
    # 45 kW racks hold four 10.2 kW HGX nodes; 8 U each, stacked from U1
    assert per_rack["a01"] == ["gpu0001", "gpu0002", "gpu0003", "gpu0004"]
    assert [plan.hosts[h].rack_unit for h in per_rack["a01"]] == [1, 9, 17, 25]
    assert plan.hosts["gpu0097"].rack == "a25"
    assert len(per_rack["b01"]) == 11 and "b02" not in per_rack


def test_every_host_has_an_address_on_every_network_inside_it(riga):
    plan = plan_of(riga)
    for name, net in (("management", "10.40.0.0/16"), ("bmc", "10.41.0.0/16"), ("storage", "10.42.0.0/16")):
        addrs = [ipaddress.IPv4Interface(h.addresses[name]) for h in plan.hosts.values()]
        assert all(a.network == ipaddress.IPv4Network(net) for a in addrs)
        assert len({a.ip for a in addrs}) == len(addrs)
        reserved = ipaddress.IPv4Network("10.42.255.0/24")
        assert not any(a.ip in reserved for a in addrs)


def test_one_ipoib_subnet_per_rail_and_an_address_per_hca(riga):
    plan = plan_of(riga)
    fabric = plan.fabrics[0]
    assert [r.cidr for r in fabric.rails] == [f"10.50.{32 * r}.0/19" for r in range(8)]
    gpu = plan.hosts["gpu0042"]
    assert len(gpu.rails) == 8
    for r, address in enumerate(gpu.rails):
        assert ipaddress.IPv4Interface(address).network == ipaddress.IPv4Network(fabric.rails[r].cidr)
    assert len(plan.hosts["sm01"].rails) == 1   # one HCA: rail 0 only
    assert "rails" not in plan.hosts["sm01"].addresses


def test_rail_optimized_fat_tree_bill_of_materials(riga):
    fabric = plan_of(riga).fabrics[0]
    # 4 SUs x 8 rails = 32 leaves (NVIDIA's 4-SU reference), one service leaf for 11 single-HCA hosts
    assert [len(su) for su in fabric.scalable_units] == [32, 32, 32, 32]
    assert fabric.switches == {"leaf": 32, "service-leaf": 1, "spine": 17}
    assert fabric.tiers == 2
    assert fabric.cables == {"node-leaf": 128 * 8 + 11, "leaf-spine": 33 * 32}


def test_capacity_and_power_summary(riga):
    c = plan_of(riga).capacity
    assert (c.nodes, c.gpus, c.switches) == (139, 1024, 50)
    assert c.it_kw == round(128 * 10.2 + 11 * 0.8 + 50 * 1.7, 3)
    assert c.facility_kw == round(c.it_kw * 1.2, 3)
    assert c.facility_budget_kw == 2200 and c.renewable_share == 1.0


def test_slurm_layout(riga):
    s = plan_of(riga).slurm
    assert [(h, a) for h, a in s.controllers] == [("ctl01", "10.40.2.1"), ("ctl02", "10.40.2.2")]
    assert len(s.nodes) == 1 and s.nodes[0].hostlist == "gpu[0001-0096]" and s.nodes[0].gres == "gpu:h200:8"
    assert s.topology[-1] == ("spine", "Switches=compute-su1,compute-su2,compute-su3")


def test_large_fabric_goes_three_tier(riga):
    riga["pools"][0]["hosts"] = "gpu[0001-1024]"
    riga["pools"][0]["racks"] = "a[001-256]"
    riga["pools"][1]["hosts"] = "gpu[1025-1056]"
    riga["pools"][1]["racks"] = "a[257-264]"
    riga["racks"][0]["names"] = "a[001-264]"
    riga["site"]["power"]["facility_kw"] = 30000
    fabric = plan_of(riga).fabrics[0]
    assert fabric.tiers == 3 and fabric.switches["core"] > 0


def test_compress_fast_path_matches_python_hostlist():
    import random

    import hostlist

    from infra.site.hostlists import compress
    rng = random.Random(7)
    cases = [["gpu0001", "gpu0002", "gpu0004"], ["ctl01", "ctl02", "db01", "k8s-cp01"], ["a1", "a2", "a10"],
             ["x01", "x1"], ["lab1"], ["n9", "n10", "n11"], ["gpu0003", "gpu0001", "gpu0002"]]
    for _ in range(300):
        prefix, width = rng.choice(["gpu", "n", "k8s-cp"]), rng.choice([1, 2, 4])
        cases.append([f"{prefix}{n:0{width}d}" for n in rng.sample(range(min(10 ** width, 200)), rng.randint(1, 9))])
    for names in cases:
        assert compress(names) == hostlist.collect_hostlist(names), names


def test_compress_in_order_expands_to_exactly_the_names_in_their_order():
    """NodeAddr= is paired with NodeName='s expansion element by element: its expression keeps the given order (a
    sorted one would give one node another's address), runs across an octet, padded and unpadded numbers."""
    import random

    import hostlist

    from infra.site.hostlists import compress_in_order
    assert compress_in_order(f"10.0.128.{n}" for n in range(250, 256)) + "," == "10.0.128.[250-255],"
    assert compress_in_order(["10.0.128.255", "10.0.129.0", "10.0.128.1"]) == "10.0.128.255,10.0.129.0,10.0.128.1"
    rng = random.Random(11)
    for _ in range(2000):
        names = [rng.choice(["10.1.0.", "10.1.1.", "n", "gpu"]) + str(rng.randint(0, 20)).zfill(rng.choice([0, 2, 3]))
                 for _ in range(rng.randint(1, 12))]
        assert hostlist.expand_hostlist(compress_in_order(names), allow_duplicates=True) == names, names


def test_the_kubernetes_plan_and_time_sources_are_planned_once_and_read_by_the_inventory(riga, monkeypatch):
    import dataclasses

    import infra.plan.kubernetes
    from infra.render.inventory import group_vars, kubernetes_vars

    plan = plan_of(riga)
    assert [c.name for c in plan.kubernetes] == [k["name"] for k in riga["kubernetes"]]
    assert plan.ntp_servers == ("ctl01", "ctl02")                  # riga-1 declares none: its Slurm controllers
    riga["site"]["ntp_servers"] = ["ntp1.riga-1.internal"]
    assert plan_of(riga).ntp_servers == ("ntp1.riga-1.internal",)
    # the inventory reads the plan's decisions, it does not plan again
    site = validate_data(riga)
    monkeypatch.setattr(infra.plan.kubernetes, "plan_clusters", lambda *a: pytest.fail("planned again"))
    [first, *rest] = plan.kubernetes
    moved = dataclasses.replace(plan, kubernetes=(dataclasses.replace(first, api_endpoint="10.40.99.99"), *rest),
                                ntp_servers=("elsewhere",))
    assert kubernetes_vars(site, moved)[first.group]["gf_kubernetes"]["api_endpoint"] == "10.40.99.99"
    assert group_vars(site, moved)["gf_ntp_servers"] == ["elsewhere"]
