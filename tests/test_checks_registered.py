"""Every semantic check is registered, and each one can fire (ParallelCluster's test_all_validators)."""

from __future__ import annotations

import inspect

from infra.site import checks
from conftest import keyless_mirrors
from metering_data import with_billing
from test_site_validation import CASES, problems_of


def test_every_check_function_is_registered():
    candidates = [
        obj for name, obj in vars(checks).items()
        if inspect.isfunction(obj) and obj.__module__ == checks.__name__ and not name.startswith("_")
        and list(inspect.signature(obj).parameters) == ["site", "index"]
    ]
    assert candidates, "no checks found"
    missing = [f.__name__ for f in candidates if f not in checks.CHECKS]
    assert not missing, f"checks defined but not registered with @check: {missing}"


# Which validation case proves each registered check fires.
FIRES = {
    "hosts_in_exactly_one_pool": "host in two pools",
    "pool_names_unique": None,
    "pool_node_types_exist": "unknown node type",
    "pool_racks_exist": "unknown rack",
    "rack_names_unique": None,
    "pool_fabric_exists": None,
    "slurm_hosts_exist": "controller not a host",
    "boot_server_is_a_host": "boot server not a host",
    "pool_macs_name_its_hosts_once": "mac twice",
    "slurm_partitions_resolve": "partition on unknown pool",
    "slurm_accounts_unique": "account twice",
    "tenant_names_unique": None,
    "kubernetes_clusters_resolve": None,
    "pools_serve_one_scheduler": None,
    "tenant_clusters_resolve": "tenant on unknown cluster",
    "storage_resolves": "nfs server",
    "networks_do_not_overlap": "overlapping networks",
    "reserved_ranges_inside_networks": None,
    "external_addresses_reserved": "mgs outside reserved",
    "tenant_gpu_quotas_fit": "tenant gpus",
    "tenant_storage_fits": "tenant storage",
    "node_types_fit_racks": None,
    "gpu_nodes_have_an_hca_per_rail": "hca per rail",
    "subnet_managers_on_fabric": "sm not on fabric",
    "execution_hosts_known": "execution host not a host",
    "jurisdiction_respected": "jurisdiction",
    "vendors_approved": "vendor",
    "software_available": "driver branch",
    "tenant_namespaces_not_reserved": None,
    "kubernetes_cidrs_sized": None,
    "kubernetes_addons_fit_cluster": None,
    "kubernetes_control_plane_dedicated": None,
    "kubernetes_addons_have_chart_mirror": None,
    "kubernetes_has_package_mirror": None,
    "slurm_containers_have_a_repository": None,
    "host_names_plan_distinct_addresses": None,
    "inventory_group_names_distinct": None,
    "host_names_not_reserved": None,
    "tenant_groups_not_kubernetes_system": None,
    "hosts_fit_their_racks": "rack power",
    "networks_hold_their_hosts": "network too small",
    "fabrics_fit_their_switches": None,
    "power_within_budgets": "facility power",
    "racks_name_power_domains": "rack names no power domain",
    "power_domains_form_a_tree": "power domain loop",
    "isolated_tenants_have_dedicated_pools": None,
    "tenant_pools_exist": None,
    "pools_dedicated_to_one_tenant": None,
    "dedicated_pools_are_compute_pools": None,
    "isolated_tenant_pools_on_infiniband": None,
    "subnet_managers_not_dedicated": None,
    "partition_keys_in_range": None,
    "partition_keys_unique": None,
    "site_repositories_name_their_keys": None,
    "repository_keys_match_fingerprints": None,
    "billing_tariffs_resolve": None,
    "flexible_partitions_resolve": "flexible class unknown",
    "tenant_classes_resolve": None,
    "prepaid_tenants_have_a_class": None,
    "money_in_billing_currency": None,
    "energy_pue_periods_unique": None,
    "energy_facility_periods_unique": None,
    "opencost_prices_match_tariffs": None,
    "kubernetes_nvlink_workers_have_compute_domains": "nvlink workers without compute-domains",
    "kubernetes_version_serves_dra": "nvlink workers before dra",
    "slurm_block_topology_has_domains": None,
    "slurm_nvlink_domains_one_size": None,
    "slurm_block_sizes_aggregate_domains": None,
    "slurm_blocks_within_limit": None,
    "remediation_needs_slurm_or_kubernetes": None,
}

EXTRA = {
    "pool_names_unique": lambda d: d["pools"][2].update(name="train"),
    "rack_names_unique": lambda d: d["racks"].append({"names": "a01", "power_kw": 10}),
    "pool_fabric_exists": lambda d: d["pools"][0].update(fabric="storage-ib"),
    "tenant_names_unique": lambda d: d["tenants"][1].update(name="acme-ai"),
    "kubernetes_clusters_resolve": lambda d: d["kubernetes"][0].update(workers=["infer", "gpus"]),
    "pools_serve_one_scheduler": lambda d: d["kubernetes"][0].update(workers=["infer", "train"]),
    "reserved_ranges_inside_networks": lambda d: d["networks"]["storage"].update(reserved=["10.43.0.0/24"]),
    "node_types_fit_racks": lambda d: d["racks"][1].update(power_kw=0.5),
    "tenant_namespaces_not_reserved": lambda d: d["tenants"][0]["kubernetes"].update(namespace="kube-system"),
    "kubernetes_cidrs_sized": lambda d: d["kubernetes"][0].update(pod_cidr="10.112.0.0/20"),
    "kubernetes_addons_fit_cluster": lambda d: d["kubernetes"][0].update(rdma="sriov", addons=["gpu-operator"]),
    "kubernetes_control_plane_dedicated": lambda d: d["kubernetes"][0].update(control_plane=["k8s-cp01", "gpu0001"]),
    "kubernetes_addons_have_chart_mirror": keyless_mirrors,   # a warning: no chart mirror
    "kubernetes_has_package_mirror": keyless_mirrors,         # a warning: no Kubernetes package mirror
    "slurm_containers_have_a_repository": keyless_mirrors,    # a warning: pyxis without an enroot mirror
    "host_names_plan_distinct_addresses": lambda d: d["pools"][2]["hosts"].append("ctl1"),
    "fabrics_fit_their_switches": lambda d: d["fabrics"][0].update(scalable_unit=48),
    "inventory_group_names_distinct": lambda d: d["kubernetes"][0].update(name="worker"),
    "host_names_not_reserved": lambda d: d["pools"][2]["hosts"].append("localhost"),
    "tenant_groups_not_kubernetes_system": lambda d: d["tenants"][0]["kubernetes"].update(group="system:authenticated"),
    "isolated_tenants_have_dedicated_pools": lambda d: d["tenants"][0].update(fabric_isolation=True),
    "tenant_pools_exist": lambda d: d["tenants"][0].update(pools=["trian"]),
    "pools_dedicated_to_one_tenant": lambda d: (d["tenants"][0].update(pools=["train"]), d["tenants"][1].update(pools=["train"])),
    "dedicated_pools_are_compute_pools": lambda d: d["tenants"][0].update(pools=["control"]),
    "isolated_tenant_pools_on_infiniband": lambda d: (d["fabrics"][0].update(kind="roce"),
                                                      d["tenants"][0].update(fabric_isolation=True, pools=["train"])),
    "subnet_managers_not_dedicated": lambda d: (d["tenants"][0].update(fabric_isolation=True, pools=["train"]),
                                                d["fabrics"][0]["subnet_manager"].update(hosts=["sm01", "gpu0001"])),
    "partition_keys_in_range": lambda d: d["tenants"][0].update(partition_key="0x7fff"),
    "partition_keys_unique": lambda d: (d["tenants"][0].update(partition_key="0x0100"), d["tenants"][1].update(partition_key="0x0100")),
    "site_repositories_name_their_keys": keyless_mirrors,     # a warning: mirrors that name no keys
    "repository_keys_match_fingerprints": lambda d: d["repositories"].update(cuda={   # relative to the tests' directory
        "url": d["repositories"]["cuda"]["url"], "signed_by": "tests/keys/test.asc", "fingerprint": "0" * 40}),
    "billing_tariffs_resolve": lambda d: with_billing(d)["billing"]["tariffs"]["gpu_hour"].update(B200=5.0),
    "tenant_classes_resolve": lambda d: with_billing(d)["tenants"][0]["billing"].update({"class": "startup"}),
    "prepaid_tenants_have_a_class": lambda d: with_billing(d)["tenants"][1]["billing"].pop("class"),
    "money_in_billing_currency": lambda d: with_billing(d)["tenants"][1]["billing"]["prepaid"].update(currency="USD"),
    "energy_pue_periods_unique": lambda d: with_billing(d)["energy"]["pue"].append({"period": "2026", "pue": 1.3}),
    "energy_facility_periods_unique": lambda d: with_billing(d)["energy"].update(
        facility=[{"period": "2026", "water_m3": 10.0}, {"period": "2026", "reused_kwh": 5.0}]),
    "opencost_prices_match_tariffs": lambda d: (with_billing(d)["kubernetes"][0]["addons"].append("opencost"),   # a warning
                                                d["tenants"][0]["storage_tb"].update(home=1)),
    "slurm_block_topology_has_domains": lambda d: d["slurm"].update(topology="block"),   # riga-1 has no NVLink trays
    "slurm_nvlink_domains_one_size": lambda d: _two_domain_sizes(d),
    "slurm_block_sizes_aggregate_domains": lambda d: _nvlink_blocks(d)["slurm"].update(block_sizes=[2, 6]),
    "slurm_blocks_within_limit": lambda d: _nvlink_blocks(d)["pools"][0].update(hosts="gpu[00001-65538]"),   # 32,769 domains
    "remediation_needs_slurm_or_kubernetes": lambda d: (d.pop("slurm"), d.pop("kubernetes", None),
                                                         d.update(remediation={"interval_s": 10})),
}


def _nvlink_blocks(data: dict) -> dict:
    """riga-1's H200 servers as trays of 2-tray NVLink domains, its Slurm topology from the site (blocks)."""
    data["node_types"]["hgx-h200"]["nvlink"] = {"trays": 2, "switch_trays": 1}
    data["slurm"]["topology"] = "auto"
    return data


def _two_domain_sizes(data: dict) -> None:
    """The inference pool's servers in 4-tray domains, and in the Slurm partitions beside the 2-tray training pool."""
    _nvlink_blocks(data)["node_types"]["hgx-h200-4"] = {**data["node_types"]["hgx-h200"], "nvlink": {"trays": 4, "switch_trays": 1}}
    data["pools"][1]["type"] = "hgx-h200-4"
    data["slurm"]["partitions"][1]["pools"] = ["infer"]


def test_every_registered_check_has_a_case_that_fires(riga):
    assert set(FIRES) == {f.__name__ for f in checks.CHECKS}


def test_each_check_fires_on_its_mistake(riga):
    import copy
    for check in checks.CHECKS:
        data = copy.deepcopy(riga)
        case = FIRES[check.__name__]
        mutate = CASES[case][0] if case else EXTRA[check.__name__]
        mutate(data)
        from infra.site.model import Site
        from infra.site.index import SiteIndex
        site = Site.model_validate(data)
        found = list(check(site, SiteIndex(site)))
        assert found, f"{check.__name__} did not fire"
        if any(p.severity == "error" for p in found):
            assert problems_of(data), check.__name__
