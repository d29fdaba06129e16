"""A change to each field of the site model re-runs exactly the phases its declaration names (infra/site/impact.py):
the Pulumi program's phase digests (infra/stack/node_configuration.py) and `gigafactory diff`'s classes come from one
declaration, and a field of class none re-runs nothing. The walk covers every field of the model: a field changes
generically (a flag flipped, a number moved, another of its choices) or by the sample change in SAMPLES."""

from __future__ import annotations

import copy
import dataclasses
import shutil
import typing
from typing import Any, get_args, get_origin

import pytest
from pydantic import BaseModel, ValidationError

from conftest import RIGA, ROOT, site_data
from metering_data import with_billing
from infra.plan.phases import PHASES
from infra.plan import build_plan
from infra.runner.execution import controller_inventory
from infra.site import SiteInvalid, validate_data
from infra.site.impact import EVERY_PHASE, LIVE, NONE, UNDECLARED, _bare, field_impacts, field_phases, submodels
from infra.site.model import Site
from infra.stack import node_configuration as nc
from infra.usage.flexible import flexible_config

SITE_FILE = "inventories/riga-1/site.yml"
KEY = "tests/keys/test.asc"                     # beside the site file: validated with ROOT as its directory
FINGERPRINT = "4C1F6A3B9E2D7058A1B3C5D7E9F02468ACE13579"
AUX_FABRIC = {"name": "aux", "kind": "roce", "rate": "100g", "rails": 8, "topology": "fat-tree",
              "switch": {"vendor": "nvidia", "model": "SN4600", "ports": 64, "power_kw": 0.5}}


def full_riga() -> dict:
    """riga-1 with billing and energy (tests/metering_data.py) and the optional fields it leaves out, as the model
    dumps it (every default written, sections in their long form), so that each field has a value to change."""
    data = with_billing(site_data(RIGA))
    data["energy"]["facility"] = [{"period": "2026", "reused_kwh": 1000, "water_m3": 10}]
    data["kubernetes"][0]["prometheus"] = "http://k8s-cp01:9090"
    data["tenants"][0]["slurm"].update(cpus=4096, nodes=64)
    data["tenants"][0]["kubernetes"]["group"] = "acme"
    data["provisioning"] = {"images": {"server": "ctl02"}}       # the boot phase has a host
    data["node_types"]["hgx-h200"]["nvlink"] = {"trays": 2, "switch_trays": 1, "switch_tray_kw": 0.5}
    data["kubernetes"][0].update(version="1.34", addons=[*data["kubernetes"][0]["addons"], "compute-domains"])  # NVLink workers
    data["node_types"]["hgx-h200"]["hca"]["ports"] = [f"0000:{bus:02x}:00.0" for bus in range(8)]
    data["racks"][0].update(power_shelves={"count": 2, "kw": 33}, cooling={"liquid_kw": 20, "air_kw": 45})
    data["slurm"]["partitions"].append({"name": "flex", "pools": ["train"],      # flexible capacity (docs/power.md)
                                        "flexible": {"renewable_share": 0.8, "class": "academic"}})
    data["remediation"] = {"rules": [{"signal": "xid", "codes": [79], "action": "drain",
                                      "escalate": {"count": 2, "window_s": 3600, "action": "repair"}}]}
    data["energy"]["forecast"] = "tests/flexible_forecast.csv"
    out = Site.model_validate(validate_data(data, directory=ROOT), context={"directory": ROOT}).model_dump(mode="json", by_alias=True, exclude_none=True)
    out["energy"]["forecast"] = "tests/flexible_forecast.csv"      # a path beside the site file (ROOT's), as written
    return out


def _no_nvlink(data: dict) -> None:
    """hgx-h200 no longer a tray of an NVLink domain, and riga-infer without the add-on only NVLink workers may have."""
    data["node_types"]["hgx-h200"].pop("nvlink")
    data["kubernetes"][0]["addons"].remove("compute-domains")


def _set(path: str, value: Any):
    """A sample change: ``value`` at ``path`` (dotted keys and list indices, as the site file writes them)."""
    def change(data: dict) -> None:
        *parents, last = path.split(".")
        here: Any = data
        for step in parents:
            here = here[int(step)] if step.isdigit() else here.setdefault(step, {})
        if value is _DELETE:
            del here[last]
        else:
            here[int(last) if last.isdigit() else last] = value
    return change


_DELETE = object()


def _block_topology(data: dict) -> None:
    """Slurm's topology from the site (auto): the training pool's NVLink domains are blocks of topology.conf."""
    data["slurm"]["topology"] = "auto"


def _power_tree(data: dict) -> None:
    """A hall and a row feeding rack a01..a32, and the H200s' power-limit range (issue 26): the hall's 1,000 kW binds
    (the plan lowers the H200s to 370 W), so that a change of anything the limit depends on moves it."""
    data["site"]["power"]["domains"] = [{"name": "hall-a", "kw": 1000}, {"name": "row-1", "kw": 3000, "parent": "hall-a"}]
    data["racks"][0]["domain"] = "row-1"
    data["node_types"]["hgx-h200"]["gpu"]["power_limit_w"] = {"min": 200, "max": 700, "default": 700}


def _facility_tight(data: dict) -> None:
    """The H200s' power-limit range and no power tree, the facility's 1,500 kW at PUE 1.2 binding (1,250 kW of IT load
    for 1,431 kW at the default limits)."""
    data["site"]["power"]["facility_kw"] = 1500
    data["node_types"]["hgx-h200"]["gpu"]["power_limit_w"] = {"min": 200, "max": 700, "default": 700}


def _with_range(data: dict) -> None:
    """The H200s' power-limit range, no budget binding: the plan keeps their default limit."""
    data["node_types"]["hgx-h200"]["gpu"]["power_limit_w"] = {"min": 200, "max": 700, "default": 700}


def _limit(prepare=_power_tree, **change):
    return prepare, lambda d: d["node_types"]["hgx-h200"]["gpu"]["power_limit_w"].update(change)


# Fields a generic change cannot move (a string, a list, a value others refer to): one valid change each.
SAMPLES: dict[str, Any] = {
    "site.name": _set("site.name", "riga-2"),
    "site.country": _set("site.country", "EE"),
    "site.timezone": _set("site.timezone", "Europe/Tallinn"),
    "site.operator": _set("site.operator", "Another SIA"),
    "site.ntp_servers": _set("site.ntp_servers", ["ctl02"]),
    "policy.approved_vendors": _set("policy.approved_vendors", ["nvidia", "supermicro", "dell", "eviden", "hpe"]),
    "repositories.debian.url": _set("repositories.debian.url", "http://mirror2.riga-1.internal/debian"),
    "repositories.debian.signed_by": _set("repositories.debian.signed_by", KEY),
    "repositories.debian.fingerprint": _set("repositories.debian.fingerprint", FINGERPRINT),
    "repositories.debian_security": _set("repositories.debian_security", {"url": "http://mirror.riga-1.internal/security"}),
    "repositories.cuda": _set("repositories.cuda.url", "http://mirror2.riga-1.internal/cuda"),
    "repositories.doca": _set("repositories.doca.url", "http://mirror2.riga-1.internal/doca"),
    "repositories.slurm": _set("repositories.slurm.url", "http://mirror2.riga-1.internal/slurm"),
    "repositories.images": _set("repositories.images", "registry.riga-1.internal:5000"),
    "repositories.python": _set("repositories.python", "http://mirror.riga-1.internal/pypi/simple"),
    "software.nvidia_driver.branch": _set("software.nvidia_driver.branch", "580"),
    "software.nvidia_driver.source": (lambda d: (d["node_types"]["hgx-h200"]["gpu"].update(nvswitch=False),   # no Fabric Manager
                                                 _no_nvlink(d)),                                               # nor IMEX
                                      lambda d: d["software"]["nvidia_driver"].update(source="distribution", branch="550")),
    "software.cuda.versions": _set("software.cuda.versions", ["12.8", "12.9"]),
    "software.cuda.default": _set("software.cuda.default", "12.8"),
    "software.cuda.source": lambda d: d["software"]["cuda"].update(source="distribution", versions=["12.4"]),
    "software.slurm": _set("software.slurm", {"version": "25.05"}),
    "software.slurm.version": _set("software.slurm.version", "25.05"),
    "networks.management.cidr": _set("networks.management.cidr", "10.30.0.0/16"),
    "networks.management.reserved": _set("networks.management.reserved", ["10.40.1.0/24"]),   # gpu0001's address
    "networks.management.interface": _set("networks.management.interface", "eno1"),
    "networks.storage": _set("networks.storage.mtu", 1500),
    "fabrics[].name": lambda d: d["fabrics"][0].update(name="hpc"),
    "fabrics[].switch.vendor": lambda d: (d["fabrics"][0]["switch"].update(vendor="dell")),
    "fabrics[].switch.model": lambda d: d["fabrics"][0]["switch"].update(model="QM9790"),
    "fabrics[].switch.ports": lambda d: d["fabrics"][0]["switch"].update(ports=128),
    "fabrics[].rails": (lambda d: d["fabrics"][0].update(topology="fat-tree"), lambda d: d["fabrics"][0].update(rails=4)),
    "fabrics[].topology": lambda d: d["fabrics"][0].update(topology="fat-tree", scalable_unit=16),
    "fabrics[].subnet_manager": lambda d: d["fabrics"][0]["subnet_manager"].update(hosts=["sm01"]),
    "fabrics[].subnet_manager.hosts": lambda d: d["fabrics"][0]["subnet_manager"].update(hosts=["sm02", "sm01"]),
    "fabrics[].ipoib.cidr": lambda d: d["fabrics"][0]["ipoib"].update(cidr="10.60.0.0/16"),
    "fabrics[].ipoib.mtu": lambda d: d["fabrics"][0]["ipoib"].update(mtu=4092),
    "fabrics[].interfaces": lambda d: d["fabrics"][0].update(interfaces=[f"ibp{i}s0" for i in range(8)]),
    "node_types": lambda d: d["node_types"].update({"spare": {**d["node_types"]["cpu-1u"], "model": "R670"}}),
    "node_types.<key>.vendor": lambda d: d["node_types"]["hgx-h200"].update(vendor="dell"),
    "node_types.<key>.model": lambda d: d["node_types"]["hgx-h200"].update(model="SYS-822GS"),
    "node_types.<key>.gpu.model": lambda d: (d["node_types"]["hgx-h200"]["gpu"].update(model="H100"),
                                             d["billing"]["tariffs"].update(gpu_hour={"H100": 2.5})),
    "node_types.<key>.hca": lambda d: d["node_types"]["cpu-1u"]["hca"].update(count=2),
    # on a node type without ports (with ports, count moves them too: rdma then re-runs by ports' declaration)
    "node_types.<key>.hca.count": (lambda d: d["node_types"]["hgx-h200"]["hca"].pop("ports"),
                                   lambda d: d["node_types"]["hgx-h200"]["hca"].update(count=9)),
    "node_types.<key>.hca.ports": _set("node_types.hgx-h200.hca.ports", [f"0000:{bus:02x}:00.0" for bus in range(1, 9)]),
    "node_types.<key>.nvlink": (_block_topology, _no_nvlink),
    "node_types.<key>.nvlink.trays": (_block_topology, lambda d: d["node_types"]["hgx-h200"]["nvlink"].update(trays=4)),
    "node_types.<key>.hca.model": lambda d: d["node_types"]["hgx-h200"]["hca"].update(model="ConnectX-8"),
    "racks": lambda d: d["racks"].append({"names": ["c01"], "power_kw": 20, "units": 48}),
    # issue 26: each with a budget that binds, so that the planned GPU power limit (phase power, the health gate) moves
    "racks[].domain": (_power_tree, lambda d: d["racks"][0].pop("domain")),               # the facility's alone: 700 W
    "site.power.domains[].name": (_power_tree, lambda d: (d["site"]["power"]["domains"][1].update(name="row-x"),
                                                          d["racks"][0].update(domain="row-x"))),
    "site.power.domains[].kw": (_power_tree, lambda d: d["site"]["power"]["domains"][0].update(kw=1100)),
    "site.power.domains[].parent": (_power_tree, lambda d: d["site"]["power"]["domains"][1].update(parent=None)),
    "site.power.facility_kw": (_facility_tight, lambda d: d["site"]["power"].update(facility_kw=1600)),
    "site.power.pue": (_facility_tight, lambda d: d["site"]["power"].update(pue=1.25)),
    "fabrics[].switch.power_kw": (_facility_tight, lambda d: d["fabrics"][0]["switch"].update(power_kw=2.0)),
    "node_types.<key>.power_kw": (_power_tree, lambda d: d["node_types"]["hgx-h200"].update(power_kw=10.5)),
    "node_types.<key>.nvlink.switch_trays": (_power_tree, lambda d: d["node_types"]["hgx-h200"]["nvlink"].update(switch_trays=2)),
    "node_types.<key>.nvlink.switch_tray_kw": (_power_tree, lambda d: d["node_types"]["hgx-h200"]["nvlink"].update(switch_tray_kw=1.0)),
    "node_types.<key>.gpu.count": (_power_tree, lambda d: d["node_types"]["hgx-h200"]["gpu"].update(count=7)),
    "node_types.<key>.gpu.power_limit_w": (_power_tree, lambda d: (d["node_types"]["hgx-h200"]["gpu"].pop("power_limit_w"),
                                                                    d["site"]["power"]["domains"][0].update(kw=2000))),
    "node_types.<key>.gpu.power_limit_w.min": _limit(min=300),        # a binding budget's limit is not min's
    "node_types.<key>.gpu.power_limit_w.max": _limit(max=650, default=650),
    "node_types.<key>.gpu.power_limit_w.default": _limit(_with_range, default=600),      # unbound: the default
    "racks[].names": lambda d: d["racks"][0].update(names=[f"a{i:02d}" for i in range(1, 33)] + ["a33"]),
    "pools": lambda d: d["pools"].append({"name": "spare", "type": "cpu-1u", "hosts": ["spare01"], "racks": ["b02"]}),
    "pools[].name": lambda d: d["pools"][2].update(name="ctl"),
    "pools[].type": lambda d: (d["node_types"].update({"cpu-1u-b": {**d["node_types"]["cpu-1u"], "model": "R670"}}),
                               d["pools"][2].update(type="cpu-1u-b")),
    "pools[].hosts": lambda d: d["pools"][2].update(hosts=[*d["pools"][2]["hosts"], "spare01"]),
    "pools[].racks": (_block_topology, lambda d: d["pools"][0].update(racks=[f"a{n:02d}" for n in range(24, 0, -1)])),
    "pools[].fabric": (lambda d: (d["fabrics"].append(AUX_FABRIC), [p.update(fabric="compute") for p in d["pools"]]),
                       lambda d: d["pools"][1].update(fabric="aux")),
    "pools[].macs": lambda d: d["pools"][2].update(macs={"ctl01": "52:54:00:00:00:01"}),
    "slurm": lambda d: (d.pop("slurm"), d["tenants"][0].pop("slurm"), d["tenants"][1].pop("slurm"),
                        d["energy"].update(node="none", gpu="none")),       # remediation stays: riga-infer heals
    "slurm.cluster": lambda d: d["slurm"].update(cluster="riga-big"),
    "remediation.rules[].codes": lambda d: d["remediation"]["rules"][0].update(codes=[48]),
    "slurm.controllers": lambda d: d["slurm"].update(controllers=["ctl02", "ctl01"]),
    "slurm.accounting.host": lambda d: d["slurm"]["accounting"].update(host="ctl02"),
    "slurm.login": lambda d: d["slurm"].update(login=["login01"]),
    "slurm.partitions[].name": lambda d: d["slurm"]["partitions"][0].update(name="train"),
    "slurm.partitions[].pools": (lambda d: _split_pool(d, 0, "train2", "slurm"),
                                 lambda d: d["slurm"]["partitions"][1].update(pools=["train2"])),
    "slurm.partitions[].max_time": lambda d: d["slurm"]["partitions"][0].update(max_time="3-00:00:00"),
    "slurm.block_sizes": (_block_topology, _set("slurm.block_sizes", [2, 8])),
    "slurm.state_save_location": lambda d: d["slurm"].update(state_save_location="/var/spool/slurm/state"),
    "kubernetes": lambda d: (d.pop("kubernetes"), d["tenants"][0].pop("kubernetes"), d["tenants"][2].pop("kubernetes")),
    "kubernetes[].name": lambda d: (d["kubernetes"][0].update(name="riga-serve"),
                                    [t["kubernetes"].update(cluster="riga-serve") for t in d["tenants"] if "kubernetes" in t]),
    "kubernetes[].version": (lambda d: (d["node_types"]["hgx-h200"].pop("nvlink"),     # older than DRA: no NVLink workers
                                        d["kubernetes"][0].update(version="1.33", addons=["gpu-operator"])),
                             lambda d: d["kubernetes"][0].update(version="1.34")),
    "kubernetes[].control_plane": lambda d: d["kubernetes"][0].update(control_plane=["k8s-cp01"]),
    "kubernetes[].workers": (lambda d: (_split_pool(d, 1, "infer2", "kubernetes"), d["tenants"][0]["kubernetes"].update(gpus=64)),
                             lambda d: d["kubernetes"][0].update(workers=["infer"])),
    "kubernetes[].pod_cidr": lambda d: d["kubernetes"][0].update(pod_cidr="10.128.0.0/12"),
    "kubernetes[].service_cidr": lambda d: d["kubernetes"][0].update(service_cidr="10.97.0.0/16"),
    "kubernetes[].addons": lambda d: d["kubernetes"][0].update(addons=["gpu-operator", "compute-domains"]),
    "kubernetes[].prometheus": lambda d: d["kubernetes"][0].update(prometheus="http://k8s-cp02:9090"),
    "storage": lambda d: (d["storage"].pop(0), d["billing"]["tariffs"]["storage_tb_month"].pop("home")),
    "storage[].name": lambda d: (d["storage"][0].update(name="homes"),
                                 d["billing"]["tariffs"]["storage_tb_month"].update(homes=d["billing"]["tariffs"]
                                                                                   ["storage_tb_month"].pop("home"))),
    "storage[].kind": lambda d: d["storage"].__setitem__(0, {"name": "home", "kind": "lustre", "mgs": "10.42.255.11@tcp",
                                                            "fsname": "home", "mount": "/home", "capacity_tb": 100}),
    "storage[].server": lambda d: d["storage"][0].update(server="ctl02"),
    "storage[].export": lambda d: d["storage"][0].update(export="/export/homes"),
    "storage[].mount": lambda d: d["storage"][0].update(mount="/home/users"),
    "storage[].mgs": lambda d: d["storage"][1].update(mgs="10.42.255.11@tcp"),
    "storage[].fsname": lambda d: d["storage"][1].update(fsname="data2"),
    "tenants[].name": lambda d: d["tenants"][2].update(name="gov-ee"),
    "tenants[].slurm.account": lambda d: d["tenants"][0]["slurm"].update(account="acme"),
    "tenants[].kubernetes.namespace": lambda d: d["tenants"][0]["kubernetes"].update(namespace="acme"),
    "tenants[].storage_tb": lambda d: d["tenants"][0].update(storage_tb={"datasets": 900}),
    "tenants[].fabric_isolation": lambda d: d["tenants"][0].update(fabric_isolation=True, pools=["infer"]),
    "tenants[].pools": (lambda d: d["tenants"][0].update(fabric_isolation=True, pools=["infer"]),
                        lambda d: d["tenants"][0].update(pools=["train"])),
    "tenants[].kubernetes.group": lambda d: d["tenants"][0]["kubernetes"].update(group="acme-ops"),
    "tenants[].partition_key": lambda d: d["tenants"][0].update(fabric_isolation=True, pools=["infer"],
                                                                 partition_key="0x0042"),
    "tenants": lambda d: d["tenants"].pop(1),                                   # univ-latvia: a Slurm account
    "tenants[].billing": lambda d: d["tenants"][1].pop("billing"),              # univ-latvia's budget goes
    "tenants[].billing.class_": lambda d: d["tenants"][1]["billing"].update({"class": "commercial"}),   # prepaid
    "billing": lambda d: (d.pop("billing"), [t.pop("billing", None) for t in d["tenants"]],
                          d["slurm"]["partitions"].pop(2)),             # a flexible partition names a class
    "billing.currency": lambda d: (d["billing"].update(currency="USD"), d["tenants"][1]["billing"]["prepaid"].update(currency="USD")),
    "billing.timezone": lambda d: d["billing"].update(timezone="UTC"),
    "billing.tariffs.gpu_hour": lambda d: d["billing"]["tariffs"].update(gpu_hour={"H200": 3.0}),
    "billing.tariffs.storage_tb_month": lambda d: d["billing"]["tariffs"].update(storage_tb_month={"datasets": 25.0}),
    "billing.classes": lambda d: d["billing"]["classes"].append({"name": "public", "price_factor": 0.8}),
    "billing.classes[].name": lambda d: (d["billing"]["classes"][0].update(name="research"),
                                         d["tenants"][1]["billing"].update({"class": "research"}),
                                         d["slurm"]["partitions"][2]["flexible"].update({"class": "research"})),
    "slurm.partitions[].flexible.class_": lambda d: d["slurm"]["partitions"][2]["flexible"].update({"class": "commercial"}),
    "energy.pue[].period": lambda d: d["energy"]["pue"][0].update(period="2026-01"),
    "energy.facility[].period": lambda d: d["energy"]["facility"][0].update(period="2026-01"),
    "provisioning.batch": lambda d: d["provisioning"].update(batch=["1", "100%"]),
    "provisioning.user": lambda d: d["provisioning"].update(user="ansible"),
    "provisioning.execution.hosts": lambda d: d["provisioning"]["execution"].update(hosts=["ctl02"]),
    "provisioning.images.server": lambda d: d["provisioning"]["images"].update(server="ctl01"),
    "testbed": lambda d: d.update(testbed={"memory_mb": 4096}),
    "testbed.memory_mb": (lambda d: d.update(testbed={}), lambda d: d.update(testbed={"memory_mb": 4096})),
    "testbed.cpus": (lambda d: d.update(testbed={}), lambda d: d.update(testbed={"cpus": 4})),
}
def _split_pool(data: dict, index: int, name: str, scheduler: str) -> None:
    """The pool at ``index`` split in two halves, the second named ``name``, both serving the same ``scheduler``."""
    pool = data["pools"][index]
    hosts, racks = pool["hosts"], pool["racks"]
    pool.update(hosts=hosts[:len(hosts) // 2], racks=racks[:len(racks) // 2])
    data["pools"].insert(index + 1, {**pool, "name": name, "hosts": hosts[len(hosts) // 2:], "racks": racks[len(racks) // 2:]})
    for entry in data["slurm"]["partitions"] if scheduler == "slurm" else data["kubernetes"]:
        key = "pools" if scheduler == "slurm" else "workers"
        entry[key] = [*entry[key], name]


# Fields with one valid value in this site: no change to make.
UNCHANGEABLE = {
    "os.distribution": "debian only",
    "billing.period": "month only",
    "tenants[].kubernetes.cluster": "riga-1 has one cluster",
    "tenants[].billing.prepaid.currency": "billing.currency's (its sample moves both)",
    "energy.supply": "a CSV file beside the site file (read by `gigafactory usage` alone)",
}
# Fields whose change reaches the nodes through what `gigafactory up` computes when it runs, not through an input of
# the Pulumi program's: the flexible partitions' windows (gf_flexible, phase slurm; tests/test_flexible.py).
AT_UP = {
    "slurm.partitions[].flexible.renewable_share": "the windows `up` computes from the forecast",
    "energy.forecast": "a CSV file beside the site file: the windows `up` computes from it",
}


@pytest.fixture(scope="module")
def walk():
    return Walk(full_riga())


class Walk:
    """The phase digests of a site and of its changes; the files each phase reads are read once."""

    def __init__(self, data: dict):
        self.data = data
        site = validate_data(data, directory=ROOT)
        self.inputs = nc.PhaseInputs.of(site, build_plan(site), ROOT, SITE_FILE)
        self.before = self.digests(data)

    def digests(self, data: dict) -> dict[str, str]:
        site = validate_data(data, directory=ROOT)
        plan = build_plan(site)
        inputs = dataclasses.replace(self.inputs, plan=plan, inventory=controller_inventory(site, plan))
        out = {p.name: inputs.digest(p) for p in nc.node_phases()}
        out["kubernetes"] = inputs.digest(nc.CLUSTER_PHASE, {"kubernetes_cluster": "riga-infer"}, limit="k8s_riga_infer")
        return out

    def changed(self, change, prepare=None) -> set[str]:
        """The phases whose digest ``change`` (a function of the site data) changes."""
        before_data = copy.deepcopy(self.data)
        if prepare is not None:
            prepare(before_data)
        before = self.digests(before_data) if prepare is not None else self.before
        after_data = copy.deepcopy(before_data)
        change(after_data)
        after = self.digests(after_data)
        return {name for name in before if before[name] != after[name]}


def locate(data: dict, path: str) -> tuple[type[BaseModel], str, Any, dict]:
    """(model, field, its value in the validated site, the site data's mapping holding it) at ``path``
    (field_impacts' form: ``fabrics[].ipoib.mode``, ``node_types.<key>.cpu``): the first entry that sets it."""
    steps = path.replace("[]", ".[]").split(".")
    model, obj, raw = Site, validate_data(data, directory=ROOT), data
    while len(steps) > 1:
        name, steps = steps[0], steps[1:]
        info = model.model_fields[name]
        value, key = getattr(obj, name), info.alias or name
        if steps[0] in ("[]", "<key>"):
            index = next(i for i, e in enumerate(value.values() if steps[0] == "<key>" else value) if _sets(e, steps[1:]))
            raw = list(raw[key].values())[index] if steps[0] == "<key>" else raw[key][index]
            obj = list(value.values())[index] if steps[0] == "<key>" else value[index]
            steps = steps[1:]
        else:
            obj, raw = value, raw[key]
        model = type(obj)
    return model, steps[0], getattr(obj, steps[0]), raw


def _sets(obj: Any, steps: list[str]) -> bool:
    for step in steps:
        if step in ("[]", "<key>"):
            return True
        if not isinstance(obj, BaseModel) or step not in type(obj).model_fields:
            return False
        obj = getattr(obj, step)
    return obj is not None


def generic_changes(model: type[BaseModel], name: str, value: Any) -> list:
    """Changes of a plain field made without knowing it: a flag flipped, a number moved, another of its choices."""
    info = model.model_fields[name]
    key = info.alias or name
    if isinstance(value, bool):
        news = [not value]
    elif isinstance(value, int):
        news = [value + 1, value - 1]
    elif isinstance(value, float):
        news = [value / 2, round(value + 0.05, 3)]
    elif get_origin(_bare(info.annotation)) is typing.Literal:
        news = [choice for choice in get_args(_bare(info.annotation)) if choice != value]
    else:
        news = []
    return [lambda raw, new=new: raw.__setitem__(key, new) for new in news]


def removal(model: type[BaseModel], name: str, value: Any):
    """Removing one entry of a field holding sub-models (the last of a list or mapping; an optional one unset), or
    None where it is required."""
    info = model.model_fields[name]
    key = info.alias or name
    if isinstance(value, list) and value:
        return lambda raw: raw[key].pop()
    if isinstance(value, dict) and value:
        return lambda raw: raw[key].pop(list(raw[key])[-1])
    if value is not None and not info.is_required() and info.default is None:
        return lambda raw: raw.pop(key)
    return None


def observed(walk: Walk, path: str) -> set[str] | None:
    """The phases a change of ``path`` re-runs: its sample, else the first generic change the site accepts
    (for a field holding sub-models: the removal of one, if the site accepts it); None where nothing applies."""
    sample = SAMPLES.get(path)
    if sample is not None:
        prepare, change = sample if isinstance(sample, tuple) else (None, sample)
        return walk.changed(change, prepare)
    model, name, value, _ = locate(walk.data, path)
    holds = bool(submodels(model.model_fields[name].annotation))
    remove = removal(model, name, value) if holds else None
    for change in ([remove] if remove else []) if holds else generic_changes(model, name, value):
        def at(data, change=change):
            change(locate(data, path)[3])
        try:
            return walk.changed(at)
        except (ValueError, ValidationError, SiteInvalid):
            continue
    return None


IMPACTS = field_impacts(Site)
EVERY = {p.name for p in PHASES}
PHASES_OF = {path: phases if phases == UNDECLARED else set(EVERY if EVERY_PHASE in phases else phases)
             for path, phases in field_phases(Site).items()}


def test_every_field_says_where_it_lands():
    assert [path for path, phases in PHASES_OF.items() if phases == UNDECLARED] == []
    assert {path: phases for path, phases in PHASES_OF.items() if not phases <= EVERY} == {}


def test_a_field_of_class_none_lands_nowhere():
    assert [path for path, impact in IMPACTS.items() if impact is NONE and PHASES_OF[path]] == []
    with pytest.raises(ValueError, match="lands on no phase"):
        NONE.on("base")


def test_a_tenants_fair_share_re_runs_the_slurm_phase_alone(walk):
    """sacctmgr applies it live (role slurm_tenants, on the primary controller): not base, rdma, gpu or health."""
    assert walk.changed(lambda d: d["tenants"][0]["slurm"].update(fairshare=41)) == {"slurm"} == PHASES_OF["tenants[].slurm.fairshare"]


@pytest.mark.parametrize("path", [p for p in IMPACTS if p not in UNCHANGEABLE and p not in AT_UP])
def test_a_change_re_runs_exactly_the_phases_its_field_declares(walk, path):
    """A field holding sub-models declares what adding or removing one re-runs: checked where the site allows
    removing one alone (or by its sample); a section always there lands at most where its own fields do."""
    found = observed(walk, path)
    if found is None and any(p.startswith((path + ".", path + "[]")) for p in IMPACTS):
        below = {ph for p, phases in PHASES_OF.items() if p.startswith((path + ".", path + "[]")) for ph in phases}
        assert PHASES_OF[path] <= below, f"{path} ({IMPACTS[path]}) lands beyond its fields: {sorted(PHASES_OF[path] - below)}"
        return
    assert found is not None, f"{path}: no generic change applies; add a sample change to SAMPLES"
    assert PHASES_OF[path] == found, f"{path} ({IMPACTS[path]}) re-runs {sorted(found)}"


def test_a_field_added_without_saying_where_it_lands_is_found():
    class Grown(Site):
        colour: typing.Annotated[str, LIVE] = "red"               # a class, but no phases
        shade: typing.Annotated[str, LIVE.on("slurm")] = "dark"
        note: typing.Annotated[str, NONE] = ""                    # none lands nowhere: complete
    phases = field_phases(Grown)
    assert [path for path, p in phases.items() if p == UNDECLARED] == ["colour"]
    assert phases["shade"] == ("slurm",) and phases["note"] == ()


@pytest.mark.parametrize("path, change", [
    ("slurm.partitions[].flexible.renewable_share", lambda d: d["slurm"]["partitions"][2]["flexible"].update(renewable_share=0.95)),
    ("energy.forecast", lambda d: d["energy"].update(forecast="tests/flexible_forecast_late.csv")),
])
def test_a_field_at_up_moves_the_windows_phase_slurm_writes(tmp_path, path, change):
    """AT_UP's fields re-run phase slurm through `up`: what it gives the controllers (gf_flexible) moves."""
    assert path in AT_UP and PHASES_OF[path] == {"slurm"}
    shutil.copytree(ROOT / "inventories", tmp_path / "inventories")        # the site's other files (its keys)
    forecast = (ROOT / "tests/flexible_forecast.csv").read_text()
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests/flexible_forecast.csv").write_text(forecast)
    (tmp_path / "tests/flexible_forecast_late.csv").write_text(forecast.replace("T11:00:00,100,900", "T11:00:00,900,100"))
    data, now = full_riga(), 1772438400               # 2026-03-02T10:00 in Riga: the forecast's first hour
    before = flexible_config(validate_data(data, directory=tmp_path), now)
    change(data)
    after = flexible_config(validate_data(data, directory=tmp_path), now)
    assert before["partitions"]["flex"] != after["partitions"]["flex"], before
