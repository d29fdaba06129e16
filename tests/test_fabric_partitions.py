"""InfiniBand partitions in the plan: who can talk to whom, stable keys, and the checks on tenants' declarations."""

from __future__ import annotations

import itertools

import pytest
import yaml

from infra.plan import build_plan
from infra.plan.partitions import reachable
from infra.site import validate_data
from infra.site.hostlists import expand
from infra.site.index import derived_partition_key
from conftest import bin_path, run
from test_site_validation import problems_of


def isolated_variant(data: dict) -> dict:
    """riga-1 with two fabric-isolated tenants: acme-ai on its own Slurm pool, gov-lv on the inference pool."""
    train = next(p for p in data["pools"] if p["name"] == "train")
    train.update(hosts="gpu[0001-0064]", racks="a[01-16]")
    data["pools"].insert(1, {"name": "acme", "type": "hgx-h200", "hosts": "gpu[0065-0096]", "racks": "a[17-24]"})
    data["slurm"]["partitions"].append({"name": "acme", "pools": ["acme"], "max_time": "2-00:00:00"})
    for tenant in data["tenants"]:
        if tenant["name"] == "acme-ai":
            tenant.pop("kubernetes")            # its pods would run on gov-lv's hosts
            tenant.update(fabric_isolation=True, pools=["acme"])
        if tenant["name"] == "gov-lv":
            tenant.update(fabric_isolation=True, pools=["infer"])
    return data


def hosts(expression: str) -> set[str]:
    return set(expand(expression))


SERVICES = {"ctl01", "ctl02", "db01", "login01", "login02", "sm01", "sm02", "k8s-cp01", "k8s-cp02", "k8s-cp03", "nfs01"}


def table(data: dict) -> dict[str, frozenset[str]]:
    plan = build_plan(validate_data(data))
    return reachable(plan.partitions["compute"])


def test_riga1_every_compute_node_reaches_every_other_and_every_service(riga):
    peers = table(riga)
    everyone = hosts("gpu[0001-0128]") | SERVICES
    assert set(peers) == everyone
    for host in everyone:
        assert peers[host] == everyone - {host}, host


def test_isolated_tenants_reach_their_own_nodes_and_the_services_only(riga):
    peers = table(isolated_variant(riga))
    shared, acme, gov = hosts("gpu[0001-0064]"), hosts("gpu[0065-0096]"), hosts("gpu[0097-0128]")
    for group in (shared, acme, gov):
        for host in group:
            assert peers[host] == (group | SERVICES) - {host}, host
    for service in SERVICES:
        assert peers[service] == (shared | acme | gov | SERVICES) - {service}


def test_services_are_full_members_of_the_default_partition_and_nodes_limited(riga):
    plan = build_plan(validate_data(isolated_variant(riga)))
    default, *others = plan.partitions["compute"]
    assert (default.name, default.key, default.default) == ("Default", "0x7fff", True)
    assert set(default.full) == SERVICES and set(default.limited) == hosts("gpu[0001-0128]")
    assert {p.name: (p.key, set(p.full)) for p in others} == {
        "shared-compute": ("0x7ffe", hosts("gpu[0001-0064]")),
        "tenant-acme-ai": (f"0x{derived_partition_key('acme-ai'):04x}", hosts("gpu[0065-0096]")),
        "tenant-gov-lv": (f"0x{derived_partition_key('gov-lv'):04x}", hosts("gpu[0097-0128]")),
    }
    assert all(set(p.limited) == SERVICES and p.index0 for p in others)


def test_roce_fabrics_have_no_partitions(demo):
    assert build_plan(validate_data(demo)).partitions == {}


def keys(data: dict) -> dict[str, str]:
    plan = build_plan(validate_data(data))
    return {p.tenant: p.key for p in plan.partitions["compute"] if p.tenant}


def test_removing_or_reordering_tenants_keeps_every_other_tenants_key(riga):
    data = isolated_variant(riga)
    for tenant in data["tenants"]:
        tenant.update(fabric_isolation=True)
    data["tenants"][1]["pools"] = ["train"]             # univ-latvia isolated too: three tenant partitions
    before = keys(data)
    assert set(before) == {"acme-ai", "univ-latvia", "gov-lv"} and len(set(before.values())) == 3
    data["tenants"].reverse()
    assert keys(data) == before
    removed = [t for t in data["tenants"] if t["name"] != "univ-latvia"]
    data["tenants"] = removed
    assert keys(data) == {k: v for k, v in before.items() if k != "univ-latvia"}


def test_a_declared_key_is_used_and_unquoted_hex_is_read_as_hex(riga):
    data = isolated_variant(riga)
    data["tenants"][0]["partition_key"] = 0x0123          # what YAML makes of an unquoted 0x0123
    data["tenants"][2]["partition_key"] = "0x4abc"
    assert keys(data) == {"acme-ai": "0x0123", "gov-lv": "0x4abc"}


def colliding_names() -> tuple[str, str]:
    seen: dict[int, str] = {}
    for i in itertools.count():
        name = f"tenant-{i}"
        key = derived_partition_key(name)
        if key in seen:
            return seen[key], name
        seen[key] = name


def test_derived_keys_that_collide_are_refused_naming_both_tenants(riga):
    first, second = colliding_names()
    data = isolated_variant(riga)
    data["tenants"][0]["name"] = first
    data["tenants"][2]["name"] = second
    found = problems_of(data)
    assert any(p.startswith("tenants[2].partition_key:") and f"{second!r}" in p and f"{first!r}" in p
               and "declare partition_key" in p for p in found), found
    data["tenants"][2]["partition_key"] = "0x0042"
    assert problems_of(data) == []


def test_a_declared_key_equal_to_another_tenants_derived_key_is_refused(riga):
    data = isolated_variant(riga)
    data["tenants"][2]["partition_key"] = f"0x{derived_partition_key('acme-ai'):04x}"
    found = problems_of(data)
    assert any(p.startswith("tenants[2].partition_key:") and "already tenant 'acme-ai'" in p for p in found), found


BAD = {
    "isolation without pools": (lambda d: d["tenants"][1].update(fabric_isolation=True),
                                "tenants[1].pools", "no dedicated pools"),
    "unknown dedicated pool": (lambda d: d["tenants"][1].update(pools=["trian"]), "tenants[1].pools", "unknown pool 'trian'"),
    "pool dedicated twice": (lambda d: d["tenants"][1].update(pools=["acme"]), "tenants[1].pools",
                             "already dedicated to tenant 'acme-ai'"),
    "service pool dedicated": (lambda d: d["tenants"][1].update(pools=["control"]), "tenants[1].pools", "runs no workloads"),
    "isolation on roce": (lambda d: d["fabrics"][0].update(kind="roce"), "tenants[0].pools", "fabric 'compute' is roce"),
    "subnet manager on a tenant's host": (lambda d: d["fabrics"][0]["subnet_manager"].update(hosts=["sm01", "gpu0070"]),
                                          "fabrics[0].subnet_manager.hosts", "dedicated to fabric-isolated tenant 'acme-ai'"),
    "default key": (lambda d: d["tenants"][0].update(partition_key="0x7fff"), "tenants[0].partition_key", "default partition's key"),
    "shared key": (lambda d: d["tenants"][0].update(partition_key="0x7FFE"), "tenants[0].partition_key", "shared compute partition"),
    "zero key": (lambda d: d["tenants"][0].update(partition_key="0x0"), "tenants[0].partition_key", "not a partition key a tenant may use"),
    "key with the full bit": (lambda d: d["tenants"][0].update(partition_key="0x8001"), "tenants[0].partition_key", "not a partition key"),
    "key not hex": (lambda d: d["tenants"][0].update(partition_key="0x12; rm -rf /"), "tenants[0].partition_key", "InfiniBand partition key"),
    "key too large": (lambda d: d["tenants"][0].update(partition_key=0x10000), "tenants[0].partition_key", "InfiniBand partition key"),
    "key collision": (lambda d: d["tenants"][1].update(partition_key=d["tenants"][0].setdefault("partition_key", "0x0100")),
                      "tenants[1].partition_key", "already tenant 'acme-ai'"),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_partition_declarations_exit_2_naming_the_field(tmp_path, riga, name):
    mutate, path, fragment = BAD[name]
    data = isolated_variant(riga)
    assert problems_of(data) == []
    mutate(data)
    site = tmp_path / "site.yml"
    site.write_text(yaml.safe_dump(data))
    result = run([bin_path("gigafactory"), "validate", str(site)])
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = [line.strip() for line in result.stderr.splitlines()]
    assert any(line.startswith(f"{path}:") and fragment in line for line in lines), result.stderr
