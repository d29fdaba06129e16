"""Every number of the site file, and of the files beside it, is finite and in range: NaN, infinities, negative
and 300-digit values are refused with the field named and exit 2, never a traceback."""

from __future__ import annotations

import math
import types
from typing import Annotated, Literal, Union, get_args, get_origin

import pytest
import yaml
from conftest import RIGA, bin_path, run, site_data
from metering_data import with_billing
from pydantic import BaseModel
from test_site_validation import problems_of

from infra.site import SiteInvalid, parse_site
from infra.site.model import Site
from infra.site.types import ISO_4217, Bounded
from infra.usage import UsageInvalid
from infra.usage.periods import parse_period
from infra.usage.supply import hourly_renewable_share


def unbounded_numbers(root, name: str) -> list[str]:
    """Paths under the model ``root`` where an int or float is held without a ``Bounded`` type (bool is no number)."""
    found: list[str] = []
    visited: set = set()
    pending = [(root, name, False)]
    while pending:
        tp, path, marked = pending.pop()
        origin, args = get_origin(tp), get_args(tp)
        if origin is Annotated:
            pending.append((args[0], path, marked or any(isinstance(m, Bounded) for m in args[1:])))
        elif origin in (Union, types.UnionType):
            pending += [(arg, path, marked) for arg in args]
        elif origin is dict:
            pending += [(args[0], path + ".<key>", False), (args[1], path + ".<value>", False)]
        elif origin in (list, tuple, set, frozenset):
            pending += [(arg, path + "[]", False) for arg in args if arg is not Ellipsis]
        elif isinstance(tp, type) and issubclass(tp, BaseModel) and tp not in visited:
            visited.add(tp)
            # pydantic lifts a field's outermost Annotated metadata into FieldInfo.metadata
            pending += [(f.annotation, f"{path}.{n}", any(isinstance(m, Bounded) for m in f.metadata))
                        for n, f in tp.model_fields.items()]
        elif tp in (int, float) and not marked and origin is not Literal:
            found.append(path)
    return sorted(found)


def test_no_number_field_of_the_site_model_is_unbounded():
    assert unbounded_numbers(Site, "Site") == []


def test_the_walker_finds_a_bare_number():
    class Sneaky(BaseModel):
        ok: Annotated[float, Bounded("x")]
        count: int | None = None
        prices: dict[str, list[float]] = {}
        flag: bool = False
    assert unbounded_numbers(Sneaky, "Sneaky") == ["Sneaky.count", "Sneaky.prices.<value>[]"]


def _tariffs(d):
    return with_billing(d)["billing"]["tariffs"]


def _tenant(d, i=1):
    return with_billing(d)["tenants"][i]


# (mutation of riga-1, field path that must be named, fragment of the message)
NUMBERS = {
    "NaN GPU tariff": (lambda d: _tariffs(d)["gpu_hour"].update(H200=math.nan), "billing.tariffs.gpu_hour.H200", "finite"),
    "negative GPU tariff": (lambda d: _tariffs(d)["gpu_hour"].update(H200=-2.5), "billing.tariffs.gpu_hour.H200", "greater than or equal to 0"),
    "infinite energy tariff": (lambda d: _tariffs(d).update(energy_kwh=math.inf), "billing.tariffs.energy_kwh", "finite"),
    "negative storage tariff": (lambda d: _tariffs(d)["storage_tb_month"].update(home=-30), "billing.tariffs.storage_tb_month.home",
                                "greater than or equal to 0"),
    "infinite prepaid budget": (lambda d: _tenant(d)["billing"]["prepaid"].update(amount=math.inf),
                                "tenants[1].billing.prepaid.amount", "finite"),
    "300-digit prepaid budget": (lambda d: _tenant(d)["billing"]["prepaid"].update(amount=10**300),
                                 "tenants[1].billing.prepaid.amount", "less than or equal to 1000000000000"),
    "tiny price factor": (lambda d: with_billing(d)["billing"]["classes"][0].update(price_factor=1e-300),
                          "billing.classes[0].price_factor", "0 (free) or from 0.01"),
    "NaN price factor": (lambda d: with_billing(d)["billing"]["classes"][0].update(price_factor=math.nan),
                         "billing.classes[0].price_factor", "finite"),
    "negative storage quota": (lambda d: d["tenants"][0].update(storage_tb={"home": -100}), "tenants[0].storage_tb.home",
                               "greater than or equal to 0"),
    "NaN storage quota": (lambda d: d["tenants"][0].update(storage_tb={"home": math.nan}), "tenants[0].storage_tb.home", "finite"),
    "300-digit GPU quota": (lambda d: d["tenants"][0]["slurm"].update(gpus=10**300), "tenants[0].slurm.gpus",
                            "less than or equal to 2147483647"),
    "negative fair share": (lambda d: d["tenants"][0]["slurm"].update(fairshare=-1), "tenants[0].slurm.fairshare", "greater than or equal"),
    "NaN facility power": (lambda d: d["site"]["power"].update(facility_kw=math.nan), "site.power.facility_kw", "finite"),
    "infinite facility power": (lambda d: d["site"]["power"].update(facility_kw=math.inf), "site.power.facility_kw", "finite"),
    "NaN PUE": (lambda d: d["site"]["power"].update(pue=math.nan), "site.power.pue", "finite"),
    "infinite rack power": (lambda d: d["racks"][0].update(power_kw=math.inf), "racks[0].power_kw", "finite"),
    "NaN node power": (lambda d: d["node_types"]["cpu-1u"].update(power_kw=math.nan), "node_types.cpu-1u.power_kw", "finite"),
    "300-digit memory": (lambda d: d["node_types"]["cpu-1u"].update(memory_gb=10**300), "node_types.cpu-1u.memory_gb",
                         "less than or equal to 1048576"),
    "infinite storage capacity": (lambda d: d["storage"][0].update(capacity_tb=math.inf), "storage[0].capacity_tb", "finite"),
    "NaN fail percentage": (lambda d: d.update(provisioning={"max_fail_percent": math.nan}), "provisioning.max_fail_percent", "finite"),
    "huge IPoIB MTU": (lambda d: d["fabrics"][0].setdefault("ipoib", {"cidr": "10.44.0.0/16"}).update(mtu=10**9),
                       "fabrics[0].ipoib.mtu", "less than or equal to 65520"),
    "currency that is three capitals only": (lambda d: with_billing(d)["billing"].update(currency="ABC"), "billing.currency",
                                             "not an active ISO 4217 currency code"),
    "withdrawn currency": (lambda d: with_billing(d)["billing"].update(currency="HRK"), "billing.currency", "ISO 4217"),
    "port 0 in a repository URL": (lambda d: d["repositories"].update(debian="http://mirror.riga-1.internal:0/debian"),
                                   "repositories.debian.url", "port 0 is not from 1 to 65535"),
    "port 99999 of an image registry": (lambda d: d["repositories"].update(images="registry.riga-1.internal:99999"),
                                        "repositories.images", "port 99999 is not from 1 to 65535"),
    "state saved in /etc": (lambda d: d["slurm"].update(state_save_location="/etc/slurm"), "slurm.state_save_location",
                            "the system's own directory"),
    "state saved in /var/spool itself": (lambda d: d["slurm"].update(state_save_location="/var/spool"), "slurm.state_save_location",
                                         "not below /var/spool"),
    "state saved in /tmp": (lambda d: d["slurm"].update(state_save_location="/tmp/slurmctld"), "slurm.state_save_location",
                            "the system's own directory"),
    "NFS mounted on /usr": (lambda d: d["storage"][0].update(mount="/usr"), "storage[0].mount", "the system's own directory"),
    "Lustre mounted on /": (lambda d: d["storage"][1].update(mount="/"), "storage[1].mount", "the system's own directory"),
    "Lustre mounted below /proc": (lambda d: d["storage"][1].update(mount="/proc/sys/kernel"), "storage[1].mount",
                                   "the system's own directory"),
    "NFS mounted on /var/lib/dpkg": (lambda d: d["storage"][0].update(mount="/var/lib/dpkg"), "storage[0].mount", "not at or below /home"),
    "the server's /etc exported": (lambda d: d["storage"][0].update(export="/etc"), "storage[0].export", "the system's own directory"),
    "the server's root exported": (lambda d: d["storage"][0].update(export="/"), "storage[0].export", "the system's own directory"),
}


@pytest.mark.parametrize("name", NUMBERS)
def test_each_out_of_range_value_is_refused_with_its_field(riga, name):
    mutate, path, fragment = NUMBERS[name]
    mutate(riga)
    found = problems_of(riga)
    matching = [p for p in found if p.startswith(f"{path}:") and fragment in p]
    assert matching, f"expected '{path}: ...{fragment}...' among {found}"


def test_legitimate_numbers_paths_and_currencies_pass(riga):
    data = with_billing(riga)
    data["billing"]["currency"] = "USD"
    for tenant in data["tenants"]:
        if tenant.get("billing", {}).get("prepaid"):
            tenant["billing"]["prepaid"]["currency"] = "USD"
    data["billing"]["classes"][0]["price_factor"] = 0            # a free class
    data["billing"]["tariffs"]["gpu_hour"]["H200"] = 0
    data["slurm"]["state_save_location"] = "/var/lib/slurm/state"
    data["storage"][0].update(export="/srv/nfs/home", mount="/home")
    data["storage"][1].update(mount="/scratch")
    data["repositories"]["images"] = "registry.riga-1.internal:65535"
    data["repositories"]["debian"] = "http://mirror.riga-1.internal:8080/debian"
    assert problems_of(data) == []
    assert {"EUR", "USD", "JPY", "GBP", "CHF", "XCG", "ZWG"} <= ISO_4217 and not {"XXX", "XTS", "XAU", "BGN"} & ISO_4217


@pytest.mark.parametrize("text, fragment", [
    (".nan", "billing.tariffs.gpu_hour.H200: Input should be a finite number"),
    ("-2.5", "billing.tariffs.gpu_hour.H200: Input should be greater than or equal to 0"),
    ("9" * 300, "billing.tariffs.gpu_hour.H200: Input should be less than or equal to 1000000"),
    ("9" * 400 + ".0", "billing.tariffs.gpu_hour.H200: Input should be a finite number"),
    ("9" * 5000, "an integer longer than 4300 digits"),
])
def test_the_cli_refuses_bad_numbers_with_exit_2_and_a_sentence(tmp_path, riga, text, fragment):
    data = with_billing(riga)
    data["billing"]["tariffs"]["gpu_hour"]["H200"] = 12345.678
    site = tmp_path / "site.yml"
    site.write_text(yaml.safe_dump(data).replace("12345.678", text))
    out = tmp_path / "out"
    for command in (["validate", str(site)], ["render", str(site), "--out", str(out)]):
        result = run([bin_path("gigafactory"), *command], timeout=60)
        assert result.returncode == 2, result
        assert "Traceback" not in result.stdout + result.stderr
        assert fragment in result.stderr and len(result.stderr) < 4000, result.stderr
    assert not out.exists()


def test_a_long_value_is_quoted_cut_short(riga):
    riga["tenants"][0]["slurm"]["gpus"] = 10**300
    (problem,) = [p for p in problems_of(riga) if p.startswith("tenants[0].slurm.gpus:")]
    assert "(301 characters)" in problem and len(problem) < 200, problem


def test_a_date_yaml_cannot_build_is_a_sentence():
    with pytest.raises(SiteInvalid) as err:
        parse_site("site:\n  built: 2026-13-45\n")
    assert "not valid site data: a value that cannot be read (month must be in 1..12)" in str(err.value)


# --- the hourly supply file ---------------------------------------------------------

HEADER = "hour,grid_kwh,onsite_renewable_kwh,contracted_renewable_kwh,carbon_g_per_kwh\n"
NOVEMBER = parse_period("2026-11", "UTC")


@pytest.mark.parametrize("row, column, fragment", [
    ("2026-11-01T00:00,nan,0,0,300", "grid_kwh", "'nan' is not a finite number"),
    ("2026-11-01T00:00,100,NaN,0,300", "onsite_renewable_kwh", "not a finite number"),
    ("2026-11-01T00:00,100,0,inf,300", "contracted_renewable_kwh", "'inf' is not a finite number"),
    ("2026-11-01T00:00,100,0,-Infinity,300", "contracted_renewable_kwh", "not a finite number"),
    ("2026-11-01T00:00,100,0,0,-1", "carbon_g_per_kwh", "is not from 0 to 12,000"),
    ("2026-11-01T00:00," + "9" * 300 + ",0,0,300", "grid_kwh", "...' is not from 0 to 10,000,000"),
    ("2026-11-01T00:00,1e400,0,0,300", "grid_kwh", "'1e400' is not a finite number"),
    ("2026-11-01T00:00,100,0,0,300000", "carbon_g_per_kwh", "is not from 0 to 12,000"),
])
def test_a_supply_row_out_of_range_is_refused_naming_line_and_column(row, column, fragment):
    with pytest.raises(UsageInvalid) as err:
        hourly_renewable_share([HEADER, row + "\n"], NOVEMBER)
    assert str(err.value).startswith(f"energy.supply line 2, {column}: "), err.value
    assert fragment in str(err.value) and len(str(err.value)) < 200, err.value


@pytest.mark.parametrize("hour", ["9" * 400, "9" * 13, "253402300800"])
def test_a_supply_hour_beyond_the_year_9999_is_refused(hour):
    with pytest.raises(UsageInvalid) as err:
        hourly_renewable_share([HEADER, hour + ",1,0,0,300\n"], NOVEMBER)
    assert str(err.value).startswith("energy.supply line 2, hour: ") and "before the year 10000" in str(err.value), err.value
    assert len(str(err.value)) < 120


def test_a_nan_supply_row_never_reaches_the_report(riga, tmp_path):
    (tmp_path / "supply.csv").write_text(HEADER + "2026-11-01T00:00,nan,0,0,300\n")
    data = with_billing(riga)
    data["energy"]["supply"] = "supply.csv"
    (tmp_path / "site.yml").write_text(yaml.safe_dump(data))
    (tmp_path / "sacct.txt").write_text("")
    result = run([bin_path("gigafactory"), "usage", str(tmp_path / "site.yml"), "--period", "2026-11",
                  "--sacct", str(tmp_path / "sacct.txt"), "--format", "csv"], timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result
    assert "energy.supply line 2, grid_kwh: 'nan' is not a finite number" in result.stderr
    assert "nan" not in result.stdout.lower()


def test_riga_still_validates():
    assert problems_of(site_data(RIGA)) == []


def _models(root: type[BaseModel]) -> list[type[BaseModel]]:
    found, pending = [], [root]
    while pending:
        model = pending.pop()
        if model in found:
            continue
        found.append(model)
        for field in model.model_fields.values():
            stack = [field.annotation]
            while stack:
                tp = stack.pop()
                if isinstance(tp, type) and issubclass(tp, BaseModel):
                    pending.append(tp)
                stack += [a for a in get_args(tp) if not isinstance(a, (str, int, float))]
    return found


def test_a_fields_own_narrower_range_holds_beside_its_types():
    """Field(ge=1, le=16) on a Count field stays in force: the type's wider range must not replace it (pydantic
    keeps one ge/le per field; before the type's range became a validator, rails 17 and memory_gb 0 passed)."""
    import annotated_types
    narrowed = 0
    for model in _models(Site):
        schema = model.model_json_schema()["properties"]
        for name, field in model.model_fields.items():
            lows = [m.ge for m in field.metadata if isinstance(m, annotated_types.Ge)]
            highs = [m.le for m in field.metadata if isinstance(m, annotated_types.Le)]
            if not lows and not highs:
                continue
            prop = schema[field.alias or name]
            prop = next((p for p in prop.get("anyOf", [prop]) if "minimum" in p or "maximum" in p), prop)
            if lows:
                assert prop.get("minimum") == max(lows), (model.__name__, name, prop)
            if highs:
                assert prop.get("maximum") == min(highs), (model.__name__, name, prop)
            narrowed += 1
    assert narrowed > 10


@pytest.mark.parametrize("change, field", [
    (lambda d: d["fabrics"][0].update(rails=17), "fabrics[0].rails"),
    (lambda d: d["node_types"]["hgx-h200"].update(memory_gb=0), "node_types.hgx-h200.memory_gb"),
    (lambda d: d["tenants"][0]["slurm"].update(fairshare=True), "tenants[0].slurm.fairshare"),
])
def test_a_fields_own_range_and_whole_numbers_are_enforced(riga, change, field):
    change(riga)
    with pytest.raises(SiteInvalid) as err:
        parse_site(yaml.safe_dump(riga))
    assert field in str(err.value), str(err.value)
