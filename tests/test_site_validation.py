"""Validation: every mistake an engineer makes gets the field named, all at once, exit 2."""

from __future__ import annotations

import pytest
import yaml

from infra.site import SiteInvalid, load_site, parse_site, validate_data
from infra.plan import build_plan
from conftest import DEMO, RIGA, ROOT, bin_path, run
from metering_data import with_billing
from nvlink_data import with_nvlink_inference

SHARED_RIGA = ROOT.parent / "shared" / "sites" / "riga-1.yml"


def problems_of(data) -> list[str]:
    """Every problem the site and its plan raise, as 'path: message' strings."""
    try:
        site = validate_data(data)
        build_plan(site)
    except SiteInvalid as err:
        return [str(p) for p in err.problems]
    return []


def test_riga1_is_the_shared_file_with_its_mirrors_keyed_and_both_valid():
    """riga-1 declares the mirrors and keys the shared copy lacks (and validates quietly); the shared file, unchanged,
    still validates (with warnings): they differ in repositories alone."""
    if SHARED_RIGA.exists():
        shared, ours = yaml.safe_load(SHARED_RIGA.read_text()), yaml.safe_load(RIGA.read_text())
        assert {k: v for k, v in shared.items() if k != "repositories"} == {k: v for k, v in ours.items() if k != "repositories"}
        load_site(SHARED_RIGA)
    site = load_site(RIGA)
    plan = build_plan(site)
    assert plan.capacity.gpus == 1024
    assert len(plan.hosts) == 139


def test_demo_site_is_valid_and_small():
    plan = build_plan(load_site(DEMO))
    assert 3 <= len(plan.hosts) <= 4
    assert plan.capacity.gpus == 0


@pytest.mark.parametrize("text, fragment", [
    ("site: [unclosed", "not valid YAML at line 1"),
    ("", "the site file is empty"),
    ("- a\n- b\n", "must be a mapping"),
    ("just a string", "must be a mapping"),
])
def test_unreadable_files_are_explained(text, fragment):
    with pytest.raises(SiteInvalid) as err:
        parse_site(text)
    assert fragment in str(err.value)


# (mutation, expected path, fragment of the message)
CASES = {
    "unknown key": (lambda d: d["pools"][0].update(hostz="x"), "pools[0].hostz", "unknown key 'hostz'; valid keys here: name, type, hosts"),
    "wrong type": (lambda d: d["site"]["power"].update(pue="lots"), "site.power.pue", "valid number"),
    "missing section": (lambda d: d.pop("networks"), "networks", "required"),
    "list instead of mapping": (lambda d: d.update(slurm=["ctl01"]), "slurm", "valid dictionary"),
    "bad hostlist": (lambda d: d["pools"][0].update(hosts="gpu[0001-"), "pools[0].hosts", "not a valid hostlist expression"),
    "bad time": (lambda d: d["slurm"]["partitions"][0].update(max_time="two days"), "slurm.partitions[0].max_time", "not a Slurm time limit"),
    "bad version": (lambda d: d["kubernetes"][0].update(version="v1.33"), "kubernetes[0].version", "not a version"),
    "bad cidr": (lambda d: d["networks"]["bmc"].update(cidr="10.41.0.1/16"), "networks.bmc.cidr", "not an IPv4 network"),
    "unknown node type": (lambda d: d["pools"][1].update(type="hgx-h300"), "pools[1].type", "unknown node type 'hgx-h300'"),
    "unknown rack": (lambda d: d["pools"][1].update(racks="a[25-40]"), "pools[1].racks", "unknown rack(s) a33"),
    "host in two pools": (lambda d: d["pools"][1].update(hosts="gpu[0090-0128]"), "pools[1].hosts", "already in pool 'train'"),
    "partition on unknown pool": (lambda d: d["slurm"]["partitions"][0].update(pools=["trian"]), "slurm.partitions[0].pools", "unknown pool 'trian'"),
    "controller not a host": (lambda d: d["slurm"].update(controllers=["ctl01", "ctl09"]), "slurm.controllers", "'ctl09' is not a host"),
    "boot server not a host": (lambda d: d.setdefault("provisioning", {}).update(images={"server": "boot9"}),
                               "provisioning.images.server", "boot server 'boot9' is not a host of any pool"),
    "mac of another pool's host": (lambda d: d["pools"][0].update(macs={"ctl01": "52:54:00:00:00:01"}),
                                   "pools[0].macs.ctl01", "host 'ctl01' is not a host of pool 'train'"),
    "mac twice": (lambda d: d["pools"][0].update(macs={"gpu0001": "52:54:00:00:00:01", "gpu0002": "52:54:00:00:00:01"}),
                  "pools[0].macs.gpu0002", "MAC 52:54:00:00:00:01 is already host 'gpu0001''s"),
    "mac not a mac": (lambda d: d["pools"][0].update(macs={"gpu0001": "52:54:00:00:00:01 dhcp-script=/tmp/x"}),
                      "pools[0].macs.gpu0001", "a MAC address"),
    "account twice": (lambda d: d["tenants"][1]["slurm"].update(account="acme-ai"), "tenants[1].slurm.account", "already tenant 'acme-ai'"),
    "accounting host not a host": (lambda d: d["slurm"]["accounting"].update(host="db09"), "slurm.accounting.host", "'db09' is not a host"),
    "backup is the primary": (lambda d: d["slurm"].update(controllers=["ctl01", "ctl01"]), "slurm.controllers", "must be different hosts"),
    "partition twice": (lambda d: d["slurm"]["partitions"][1].update(name=d["slurm"]["partitions"][0]["name"]),
                        "slurm.partitions[1].name", "declared more than once"),
    "tenant account without slurm": (lambda d: d.pop("slurm"), "tenants[0].slurm", "declares no slurm section"),
    "two defaults": (lambda d: d["slurm"]["partitions"][1].update(default=True), "slurm.partitions", "only one partition may be the default"),
    "overlapping networks": (lambda d: d["networks"]["bmc"].update(cidr="10.40.128.0/17"), "networks.bmc.cidr", "overlaps 10.40.0.0/16"),
    "pod cidr overlaps": (lambda d: d["kubernetes"][0].update(pod_cidr="10.32.0.0/11"), "kubernetes[0].pod_cidr", "overlaps"),
    "network too small": (lambda d: d["networks"]["bmc"].update(cidr="10.41.0.0/24"), "networks.bmc.cidr", "too small"),
    "mgs outside reserved": (lambda d: d["storage"][1].update(mgs="10.42.1.10@tcp"), "storage[1].mgs", "must lie in a reserved range"),
    "rack power": (lambda d: d["pools"][0].update(racks="a[01-20]"), "pools[0].racks", "hold only 80 of pool 'train'"),
    "facility power": (lambda d: d["site"]["power"].update(facility_kw=1500), "site.power.facility_kw", "more than the contracted 1500 kW"),
    "rack names no power domain": (lambda d: d["racks"][0].update(domain="hall-z"), "racks[0].domain",
                                   "power domain 'hall-z' is not declared in site.power.domains (none is)"),
    "power domain over budget": (lambda d: (d["site"]["power"].update(domains=[{"name": "hall-a", "kw": 300}]),
                                            d["racks"][0].update(domain="hall-a")),
                                 "site.power.domains[0].kw", "power domain 'hall-a' needs 1305.6 kW (its racks' worst case), more than its 300 kW"),
    "power domain parent unknown": (lambda d: d["site"]["power"].update(domains=[{"name": "row-1", "kw": 300, "parent": "hall-q"}]),
                                    "site.power.domains[0].parent", "'row-1' names parent 'hall-q', which is no power domain"),
    "power domain loop": (lambda d: d["site"]["power"].update(domains=[{"name": "a", "kw": 3, "parent": "b"}, {"name": "b", "kw": 3, "parent": "a"}]),
                          "site.power.domains[0].parent", "is its own ancestor"),
    "power domain twice": (lambda d: d["site"]["power"].update(domains=[{"name": "a", "kw": 3000}, {"name": "a", "kw": 3000}]),
                           "site.power.domains[1].name", "power domain 'a' is declared twice"),
    "power domain named facility": (lambda d: d["site"]["power"].update(domains=[{"name": "facility", "kw": 3000}]),
                                    "site.power.domains[0].name", "'facility' is the whole site's budget"),
    "gpu limits out of order": (lambda d: d["node_types"]["hgx-h200"]["gpu"].update(power_limit_w={"min": 700, "max": 600, "default": 650}),
                                "node_types.hgx-h200.gpu.power_limit_w", "min 700 W <= default 650 W <= max 600 W does not hold"),
    "gpus draw more than the node": (lambda d: d["node_types"]["hgx-h200"]["gpu"].update(power_limit_w={"min": 200, "max": 1400, "default": 1000}),
                                     "node_types.hgx-h200", "power_kw (10.2) is less than its 8 GPUs at their max limit"),
    "tenant gpus": (lambda d: d["tenants"][0]["slurm"].update(gpus=600), "tenants", "add up to 856"),
    "k8s tenant gpus": (lambda d: d["tenants"][2]["kubernetes"].update(gpus=200), "tenants", "promised 328 GPUs"),
    "tenant storage": (lambda d: d["tenants"][0]["storage_tb"].update(datasets=3800), "tenants", "4300 TB of 'datasets'"),
    "unknown tenant storage": (lambda d: d["tenants"][0]["storage_tb"].update(scratch=1), "tenants[0].storage_tb.scratch", "unknown storage 'scratch'"),
    "hca per rail": (lambda d: d["node_types"]["hgx-h200"]["hca"].update(count=4), "node_types.hgx-h200.hca.count", "one HCA per rail"),
    "sm not on fabric": (lambda d: d["fabrics"][0]["subnet_manager"].update(hosts=["sm01", "nobody"]),
                         "fabrics[0].subnet_manager.hosts", "'nobody' is not a host"),
    "jurisdiction": (lambda d: d["site"].update(country="US"), "site.country", "not an EU/EEA member"),
    "vendor": (lambda d: d["node_types"]["cpu-1u"].update(vendor="acme"), "node_types.cpu-1u.vendor", "vendor 'acme' is not approved"),
    "switch vendor": (lambda d: d["fabrics"][0]["switch"].update(vendor="acme"), "fabrics[0].switch.vendor", "not approved"),
    "driver branch": (lambda d: d["software"]["nvidia_driver"].update(branch="999"), "software.nvidia_driver.branch", "no NVIDIA driver branch '999'"),
    "driver flavor": (lambda d: d["software"]["nvidia_driver"].update(flavor="closed"), "software.nvidia_driver.flavor", "'open' or 'proprietary'"),
    "rdma stack": (lambda d: d["software"].update(rdma="mofed"), "software.rdma", "'doca-ofed' or 'inbox'"),
    "driver branch not in debian": (lambda d: d["software"]["nvidia_driver"].update(branch="570", source="distribution"),
                                    "software.nvidia_driver.branch", "ships driver branch 550, not 570"),
    "fabric manager from debian": (lambda d: d["software"]["nvidia_driver"].update(branch="550", source="distribution"),
                                   "software.nvidia_driver.source", "node type 'hgx-h200' needs NVIDIA Fabric Manager"),
    "imex from debian": (lambda d: (d["software"]["nvidia_driver"].update(branch="550", source="distribution"),
                                    d["node_types"]["hgx-h200"]["gpu"].update(nvswitch=False),
                                    d["node_types"]["hgx-h200"].update(nvlink={"trays": 2, "switch_trays": 1})),
                         "software.nvidia_driver.source", "needs NVIDIA IMEX, which Debian does not ship"),
    "driver repository missing": (lambda d: d["repositories"].pop("cuda"), "software.nvidia_driver.source", "needs repositories.cuda"),
    "proprietary on open-only gpus": (lambda d: (d["software"]["nvidia_driver"].update(flavor="proprietary"),
                                                 d["node_types"]["hgx-h200"]["gpu"].update(model="B200")),
                                      "software.nvidia_driver.flavor", "need the open kernel modules"),
    "doca without repository": (lambda d: d["repositories"].pop("doca"), "software.rdma", "needs repositories.doca"),
    "hca per rail on a 2-rail fabric": (lambda d: (d["fabrics"][0].update(rails=2),
                                                   d["node_types"]["hgx-h200"]["hca"].update(count=1)),
                                        "node_types.hgx-h200.hca.count", "1 HCA(s) on GPU node type 'hgx-h200'"),
    "unknown addon": (lambda d: d["kubernetes"][0]["addons"].append("istio"), "kubernetes[0].addons[4]", "'gpu-operator'"),
    "nvlink workers without compute-domains": (lambda d: with_nvlink_inference(d)["kubernetes"][0]["addons"].remove("compute-domains"),
                                               "kubernetes[0].addons", "pool(s) infer of cluster 'riga-infer' are trays of NVLink domains"),
    "compute-domains without nvlink workers": (lambda d: d["kubernetes"][0].update(version="1.34", addons=["gpu-operator", "compute-domains"]),
                                               "kubernetes[0].addons", "no worker pool of cluster 'riga-infer' has a node type with nvlink"),
    "compute-domains without gpu-operator": (lambda d: with_nvlink_inference(d)["kubernetes"][0]["addons"].remove("gpu-operator"),
                                             "kubernetes[0].addons", "add gpu-operator to the addons of cluster 'riga-infer'"),
    "nvlink workers before dra": (lambda d: with_nvlink_inference(d)["kubernetes"][0].update(version="1.33"),
                                  "kubernetes[0].version", "has the compute-domains add-on: ComputeDomains are claimed through DRA"),
    "nvlink workers without the add-on before dra": (lambda d: with_nvlink_inference(d)["kubernetes"][0].update(
        version="1.32", addons=["gpu-operator"]), "kubernetes[0].version", "has NVLink-domain workers: ComputeDomains"),
    "prometheus not http": (lambda d: d["kubernetes"][0].update(prometheus="ftp://prom.riga-1.internal:9090"),
                            "kubernetes[0].prometheus", "the scheme must be http or https"),
    "prometheus with credentials": (lambda d: d["kubernetes"][0].update(prometheus="http://admin:secret@prom.riga-1.internal"),
                                    "kubernetes[0].prometheus", "credentials do not belong in a URL"),
    "opencost without billing": (lambda d: d["kubernetes"][0]["addons"].append("opencost"),
                                 "kubernetes[0].addons", "prices from billing.tariffs; the site has no billing section"),
    "opencost without monitoring": (lambda d: (with_billing(d), d["kubernetes"][0].update(addons=["gpu-operator", "opencost"])),
                                    "kubernetes[0].addons", "reads the cluster's Prometheus; add monitoring"),
    "tenant on unknown cluster": (lambda d: d["tenants"][0]["kubernetes"].update(cluster="riga-x"),
                                  "tenants[0].kubernetes.cluster", "unknown cluster 'riga-x'"),
    "nfs server": (lambda d: d["storage"][0].update(server="nfs09"), "storage[0].server", "'nfs09' is not a host"),
    "execution host not a host": (lambda d: d.setdefault("provisioning", {}).update(execution={"hosts": ["ctl01", "gpu9999"]}),
                                  "provisioning.execution.hosts[1]", "'gpu9999' is not a host of the site"),
    "execution host twice": (lambda d: d.setdefault("provisioning", {}).update(execution={"hosts": ["controller", "controller"]}),
                             "provisioning.execution.hosts[1]", "named twice"),
    "execution host not a name": (lambda d: d.setdefault("provisioning", {}).update(execution={"hosts": ["ctl01 -oProxyCommand=x"]}),
                                  "provisioning.execution.hosts[0]", "a host name"),
    "execution split": (lambda d: d.setdefault("provisioning", {}).update(execution={"hosts": ["ctl01"], "split": "row"}),
                        "provisioning.execution.split", "'count'"),
    "flexible class unknown": (lambda d: with_billing(d)["slurm"]["partitions"].append(
        {"name": "flex", "pools": ["train"], "flexible": {"renewable_share": 0.8, "class": "spot"}}),
        "slurm.partitions[2].flexible.class", "unknown billing class 'spot'; billing.classes: academic, commercial"),
    "no execution host": (lambda d: d.setdefault("provisioning", {}).update(execution={"hosts": []}),
                          "provisioning.execution.hosts", "at least 1"),
}


@pytest.mark.parametrize("name", CASES)
def test_each_mistake_names_its_field(riga, name):
    mutate, path, fragment = CASES[name]
    mutate(riga)
    found = problems_of(riga)
    matching = [p for p in found if p.startswith(f"{path}:") and fragment in p]
    assert matching, f"expected '{path}: ...{fragment}...' among {found}"


def test_every_problem_is_reported_at_once(riga):
    for name in ("account twice", "partition on unknown pool", "jurisdiction", "overlapping networks", "vendor"):
        CASES[name][0](riga)
    found = problems_of(riga)
    assert len(found) >= 5, found


def test_cli_reports_invalid_file_with_exit_2_and_no_traceback(tmp_path, riga):
    CASES["controller not a host"][0](riga)
    CASES["jurisdiction"][0](riga)
    bad = tmp_path / "site.yml"
    bad.write_text(yaml.safe_dump(riga))
    result = run([bin_path("gigafactory"), "validate", str(bad)])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert "slurm.controllers: controller 'ctl09' is not a host of any pool" in result.stderr
    assert "site.country:" in result.stderr


@pytest.mark.parametrize("content", ["", "{{{", "[1, 2]", "site: 3\n", "\x00\x01"])
def test_cli_never_tracebacks_on_garbage(tmp_path, content):
    bad = tmp_path / "site.yml"
    bad.write_text(content)
    for command in (["validate"], ["plan"], ["render", "--out", str(tmp_path / "out")]):
        result = run([bin_path("gigafactory"), command[0], str(bad), *command[1:]])
        assert result.returncode == 2, result
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_missing_file_is_exit_2(tmp_path):
    result = run([bin_path("gigafactory"), "validate", str(tmp_path / "nope.yml")])
    assert result.returncode == 2 and "cannot read the site file" in result.stderr
