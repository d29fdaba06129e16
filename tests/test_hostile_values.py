"""Every string of a site file is typed where it enters: hostile values are refused, the field named, exit 2."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Annotated, Literal, Union, get_args, get_origin

import pytest
import yaml
from conftest import DEMO, RIGA, bin_path, run, site_data
from pydantic import BaseModel
from test_site_validation import problems_of

from infra.site.model import Site
from infra.site.types import Constrained


def unconstrained_strings(tp, path: str, seen: set) -> list[str]:
    """Paths under ``tp`` where a str (or Path) is held without a ``Constrained`` type."""
    origin = get_origin(tp)
    if origin is Annotated:
        base, *meta = get_args(tp)
        return [] if any(isinstance(m, Constrained) for m in meta) else unconstrained_strings(base, path, seen)
    if origin is Literal:
        return []
    if origin in (Union, types.UnionType):
        return [p for arg in get_args(tp) for p in unconstrained_strings(arg, path, seen)]
    if origin is dict:
        key, value = get_args(tp)
        return unconstrained_strings(key, f"{path}.<key>", seen) + unconstrained_strings(value, f"{path}.<value>", seen)
    if origin in (list, tuple, set, frozenset):
        return [p for arg in get_args(tp) if arg is not Ellipsis for p in unconstrained_strings(arg, f"{path}[]", seen)]
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        if tp in seen:
            return []
        seen.add(tp)
        out = []
        for name, field in tp.model_fields.items():
            # pydantic lifts a field's outermost Annotated metadata into FieldInfo.metadata
            if any(isinstance(m, Constrained) for m in field.metadata):
                continue
            out += unconstrained_strings(field.annotation, f"{path}.{name}", seen)
        return out
    if tp in (str, Path) or (isinstance(tp, type) and issubclass(tp, (str, Path))):
        return [path]
    assert tp in (int, float, bool, type(None)), f"{path}: unexpected type {tp!r}; teach this walker about it"
    return []


def test_no_string_field_of_the_site_model_is_unconstrained():
    assert unconstrained_strings(Site, "Site", set()) == []


def test_the_walker_finds_a_bare_string():
    class Sneaky(BaseModel):
        ok: Annotated[str, Constrained("x")]
        name: str | None = None
        tags: dict[str, list[str | None]] = {}
    assert unconstrained_strings(Sneaky, "Sneaky", set()) == ["Sneaky.name", "Sneaky.tags.<key>", "Sneaky.tags.<value>[]"]


# (mutation of riga-1, field path that must be named, fragment of the message)
HOSTILE = {
    "newline in the state save location": (
        lambda d: d["slurm"].update(state_save_location="/var/spool/slurmctld\nSlurmctldHost=evil"),
        "slurm.state_save_location", "U+000A"),
    "relative state save location": (lambda d: d["slurm"].update(state_save_location="var/spool"), "slurm.state_save_location", "not absolute"),
    "'..' in a mount point": (lambda d: d["storage"][0].update(mount="/home/../etc"), "storage[0].mount", "'..' component"),
    "space in an export": (lambda d: d["storage"][0].update(export="/export/home rw"), "storage[0].export", "absolute, normalised path"),
    "un-normalised lustre mount": (lambda d: d["storage"][1].update(mount="/lustre//data/"), "storage[1].mount", "not normalised"),
    "shell in an NTP server": (lambda d: d["site"].update(ntp_servers=["ntp.example; reboot"]), "site.ntp_servers[0]", "host name"),
    "command substitution in an NTP server": (lambda d: d["site"].update(ntp_servers=["$(reboot)"]), "site.ntp_servers[0]", "IPv4 address"),
    "numeric NTP server that is no address": (lambda d: d["site"].update(ntp_servers=["10.0.0.256"]), "site.ntp_servers[0]", "all-numeric"),
    "shell in a fabric interface": (lambda d: d["fabrics"][0].update(interfaces=["ib0; reboot"]), "fabrics[0].interfaces[0]", "interface name"),
    "slash in a network interface": (lambda d: d["networks"]["management"].update(interface="../eth0"), "networks.management.interface", "no '/'"),
    "interface name too long": (lambda d: d["networks"]["management"].update(interface="enp0s4abcdefghij"), "networks.management.interface", "1-15 characters"),
    "option-like interface": (lambda d: d["networks"]["storage"].update(interface="-eth0"), "networks.storage.interface", "starting with a letter"),
    "colon in a GPU model": (lambda d: d["node_types"]["hgx-h200"]["gpu"].update(model="H200:8"), "node_types.hgx-h200.gpu.model", "no ':'"),
    "comma in an HCA model": (lambda d: d["node_types"]["cpu-1u"]["hca"].update(model="CX7,CX8"), "node_types.cpu-1u.hca.model", "Slurm GRES type"),
    "equals in a switch model": (lambda d: d["fabrics"][0]["switch"].update(model="QM=9700"), "fabrics[0].switch.model", "Kubernetes label value"),
    "unknown time zone": (lambda d: d["site"].update(timezone="Mars/Olympus_Mons"), "site.timezone", "not in the time zone database"),
    "time zone as a path": (lambda d: d["site"].update(timezone="../../etc/passwd"), "site.timezone", "IANA database"),
    "two-line operator": (lambda d: d["site"].update(operator="Baltic AI\nCompute SIA"), "site.operator", "one line of text"),
    "escape sequence in the operator": (lambda d: d["site"].update(operator="Baltic \x1b[2J AI"), "site.operator", "U+001B"),
    "right-to-left override in a chassis model": (lambda d: d["node_types"]["cpu-1u"].update(model="R660\u202e"), "node_types.cpu-1u.model", "U+202E"),
    "newline in a repository URL": (lambda d: d["repositories"].update(debian="http://mirror.riga-1.internal/debian\ndeb http://evil/ x"),
                                    "repositories.debian.url", "U+000A"),
    "space in a repository URL": (lambda d: d["repositories"].update(cuda="http://mirror.riga-1.internal/cuda x86_64"),
                                  "repositories.cuda.url", "white space"),
    "quote in a repository URL": (lambda d: d["repositories"].update(slurm='http://mirror.riga-1.internal/"slurm'), "repositories.slurm.url", "quote"),
    "ftp repository": (lambda d: d["repositories"].update(doca="ftp://mirror.riga-1.internal/doca"), "repositories.doca.url", "http or https"),
    "credentials in a repository URL": (lambda d: d["repositories"].update(debian="http://user:secret@mirror/debian"),
                                        "repositories.debian.url", "credentials"),
    "repository URL without a host": (lambda d: d["repositories"].update(debian="http:///debian"), "repositories.debian.url", "names no host"),
    "shell in the provisioning user": (lambda d: d.update(provisioning={"user": "root; reboot"}), "provisioning.user", "POSIX user name"),
    "space in an identity group": (lambda d: d["tenants"][0]["kubernetes"].update(group="acme ai"), "tenants[0].kubernetes.group", "no spaces"),
    "newline inside a hostlist": (lambda d: d["pools"][2].update(hosts="ctl[01-02],x\n,y"), "pools[2].hosts", "not a valid host name"),
    "newline after a controller": (lambda d: d["slurm"].update(controllers=["ctl01\n"]), "slurm.controllers[0]", "host name"),
    "newline after a time limit": (lambda d: d["slurm"]["partitions"][0].update(max_time="04:00:00\n"),
                                   "slurm.partitions[0].max_time", "not a Slurm time limit"),
    "newline after a version": (lambda d: d["kubernetes"][0].update(version="1.33\n"), "kubernetes[0].version", "not a version"),
    "node type name with a space": (lambda d: d["node_types"].update({"cpu 1u": d["node_types"]["cpu-1u"]}), "node_types['cpu 1u']", "DNS label"),
    "site name with a slash": (lambda d: d["site"].update(name="riga/1"), "site.name", "DNS label"),
    "site name '..'": (lambda d: d["site"].update(name=".."), "site.name", "DNS label"),
    "tenants differing only in case": (lambda d: d["tenants"][1].update(name="ACME-AI"), "tenants[1].name", "lower-case"),
    "accounts differing only in case": (lambda d: d["tenants"][1]["slurm"].update(account="Acme-AI"), "tenants[1].slurm.account", "lower-case"),
    "NUL in a vendor": (lambda d: d["node_types"]["cpu-1u"].update(vendor="dell\x00"), "node_types.cpu-1u.vendor", "U+0000"),
    "gpu1 next to gpu0001": (lambda d: d["pools"][2]["hosts"].append("gpu1"), "pools[2].hosts", "gpu1 ~ gpu0001"),
    "node1 next to node01": (lambda d: d["pools"][2]["hosts"].extend(["node01", "node1"]), "pools[2].hosts", "node1 ~ node01"),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_each_hostile_value_is_refused_with_its_field(riga, name):
    mutate, path, fragment = HOSTILE[name]
    mutate(riga)
    found = problems_of(riga)
    matching = [p for p in found if p.startswith(f"{path}:") and fragment in p]
    assert matching, f"expected '{path}: ...{fragment}...' among {found}"


@pytest.mark.parametrize("name", ["newline in the state save location", "shell in a fabric interface", "colon in a GPU model",
                                  "unknown time zone", "two-line operator", "newline in a repository URL", "site name '..'"])
def test_the_cli_refuses_hostile_values_with_exit_2(tmp_path, riga, name):
    mutate, path, fragment = HOSTILE[name]
    mutate(riga)
    bad = tmp_path / "site.yml"
    bad.write_text(yaml.safe_dump(riga))
    out = tmp_path / "out"
    for command in (["validate", str(bad)], ["render", str(bad), "--out", str(out)]):
        result = run([bin_path("gigafactory"), *command])
        assert result.returncode == 2, result
        assert "Traceback" not in result.stdout + result.stderr
        assert f"  {path}: " in result.stderr and fragment in result.stderr, result.stderr
    assert not out.exists()


@pytest.mark.parametrize("site", [RIGA, DEMO])
def test_the_repository_sites_still_validate(site):
    result = run([bin_path("gigafactory"), "validate", str(site)])
    assert result.returncode == 0, result.stderr


def test_legitimate_values_pass():
    data = site_data(RIGA)
    data["site"].update(ntp_servers=["ntp1.riga-1.internal", "10.40.0.1", "ctl01"], timezone="UTC",
                        operator="Baltijas AI skaitļošana SIA")
    data["networks"]["management"]["interface"] = "bond0.40"
    data["fabrics"][0]["interfaces"] = [f"ibp{n}s0" for n in range(8)]
    data["node_types"]["hgx-h200"]["gpu"]["model"] = "H200-NVL"
    data["tenants"][0]["kubernetes"]["group"] = "/tenants/acme-ai"
    data["provisioning"] = {"user": "gf_admin"}
    data["repositories"]["images"] = "registry.riga-1.internal:5000/k8s"
    assert problems_of(data) == []


def test_checks_and_the_plan_report_every_problem_at_once(riga):
    riga["tenants"][0]["kubernetes"]["cluster"] = "riga-x"             # a reference check
    riga["pools"][0]["racks"] = "a[01-20]"                             # the plan's rack placement
    riga["networks"]["bmc"]["cidr"] = "10.41.0.0/24"                   # the plan's address allocation
    riga["fabrics"][0]["scalable_unit"] = 48                           # the plan's fabric sizing
    riga["site"]["power"]["facility_kw"] = 1500                        # the plan's power total
    paths = {p.split(":")[0] for p in problems_of(riga)}
    assert {"tenants[0].kubernetes.cluster", "pools[0].racks", "networks.bmc.cidr", "fabrics[0].scalable_unit",
            "site.power.facility_kw"} <= paths, paths


def test_a_rack_that_is_unknown_is_not_also_reported_as_full(riga):
    riga["pools"][1]["racks"] = "a[31-40]"           # a31 and a32 exist, but hold only 8 of its 32 hosts
    found = [p for p in problems_of(riga) if p.startswith("pools[1].racks:")]
    assert len(found) == 1 and "unknown rack(s) a33" in found[0] and "hold only" not in found[0], found
