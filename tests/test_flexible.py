"""Flexible capacity (issue 26, docs/power.md): the site's flexible partitions, their windows from the renewable
supply's hours, the controllers' program against a stand-in ``scontrol``, and the report's flexible line."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import yaml
from conftest import ROOT
from metering_data import with_billing

from infra.orchestrate.up import OrchestrationError, flexible_windows
from infra.plan import build_plan
from infra.render.files import slurm_files
from infra.site import SiteInvalid
from infra.site.load import validate_data
from infra.usage import UsageInvalid, parse_period, read_sacct, usage_report
from infra.usage.flexible import flexible_config
from infra.usage.page import usage_page
from infra.usage.render import as_table, report_dict
from infra.usage.supply import hourly_renewable_share, renewable_windows

PROGRAM = ROOT / "playbooks/roles/slurm_flexible/files/gigafactory-flexible"
FORECAST = ROOT / "tests/flexible_forecast.csv"       # 2026-03-02, Riga: 10:00 0.1, 11:00 0.9, 12:00 1.0, 13:00 0.7, 14:00 1.0
RIGA_TZ = ZoneInfo("Europe/Riga")


def at(hour: int, minute: int = 0) -> float:
    return datetime(2026, 3, 2, hour, minute, tzinfo=RIGA_TZ).timestamp()


def flexible_site(data: dict, share: float = 0.8, cls: str = "academic", forecast: str | None = "tests/flexible_forecast.csv") -> dict:
    """riga-1 with billing, and a flexible partition ``flex`` over the training pool (batch's nodes)."""
    data = with_billing(copy.deepcopy(data))
    data["slurm"]["partitions"].append({"name": "flex", "pools": ["train"],
                                        "flexible": {"renewable_share": share, "class": cls}})
    if forecast is not None:
        data["energy"]["forecast"] = forecast
    return data


def problems_of(data: dict) -> list[str]:
    try:
        validate_data(data, directory=ROOT)
    except SiteInvalid as err:
        return [str(p) for p in err.problems]
    return []


def test_windows_are_the_hours_ahead_at_the_share_consecutive_ones_merged():
    lines = FORECAST.read_text().splitlines(keepends=True)
    assert renewable_windows(lines, 0.8, at(10, 30), "Europe/Riga") == [(int(at(11)), int(at(13))), (int(at(14)), int(at(15)))]
    assert renewable_windows(lines, 0.95, at(10), "Europe/Riga") == [(int(at(12)), int(at(13))), (int(at(14)), int(at(15)))]
    # from the hour now is in: an hour gone is no window; after the file's last hour there is none
    assert renewable_windows(lines, 0.8, at(12, 59), "Europe/Riga") == [(int(at(12)), int(at(13))), (int(at(14)), int(at(15)))]
    assert renewable_windows(lines, 0.8, at(15), "Europe/Riga") == []


@pytest.mark.parametrize("row, where", [
    ("2026-03-02T15:00:00,nan,0,0,0", "energy.forecast line 7, grid_kwh"),
    ("2026-03-02T15:00:00,1,1e400,0,0", "energy.forecast line 7, onsite_renewable_kwh"),
    ("tomorrow,1,1,0,0", "energy.forecast line 7, hour"),
])
def test_a_hostile_forecast_names_its_line(row, where):
    lines = [*FORECAST.read_text().splitlines(keepends=True), row + "\n"]
    with pytest.raises(UsageInvalid, match=f"^{where}: "):
        renewable_windows(lines, 0.8, at(10), "Europe/Riga")


SUPPLY_HEADER = "hour,grid_kwh,onsite_renewable_kwh,contracted_renewable_kwh,carbon_g_per_kwh\n"


def test_a_cell_over_csvs_field_limit_names_the_file_and_line():
    lines = [SUPPLY_HEADER, "2026-03-02T10:00:00,1,1,0,0\n", "2026-03-02T11:00:00,1," + "9" * 200_000 + ",0,0\n"]
    with pytest.raises(UsageInvalid, match="^energy.forecast line 3: not CSV: ") as caught:
        renewable_windows(lines, 0.8, at(10), "Europe/Riga")
    assert len(str(caught.value)) < 200


def test_a_huge_bad_hour_is_quoted_at_most_40_characters():
    lines = [SUPPLY_HEADER, "x" * 100_000 + ",1,1,0,0\n"]
    with pytest.raises(UsageInvalid, match="^energy.forecast line 2, hour: 'x{40}\\.\\.\\.' is not a time") as caught:
        renewable_windows(lines, 0.8, at(10), "Europe/Riga")
    assert len(str(caught.value)) < 200


def test_a_duplicate_hour_is_refused_naming_both_lines():
    lines = [SUPPLY_HEADER, "2026-03-02T10:00:00,1,1,0,0\n", "2026-03-02T11:00:00,1,1,0,0\n",
             f"{int(at(10))},1,0,0,0\n"]                     # the same hour, as epoch seconds
    with pytest.raises(UsageInvalid, match=f"^energy.forecast line 4, hour: '{int(at(10))}' is line 2's hour again"):
        renewable_windows(lines, 0.8, at(10), "Europe/Riga")


def test_the_hour_the_autumn_change_repeats_is_read_in_the_files_order():
    october = parse_period("2026-10", "Europe/Riga")
    day = int(datetime(2026, 10, 25, tzinfo=RIGA_TZ).timestamp() - october.start) // 3600
    rows = ["2026-10-25T02:00:00,1,0,0,0", "2026-10-25T03:00:00,1,1,0,0", "2026-10-25T03:00:00,1,3,0,0",
            "2026-10-25T04:00:00,1,0,1,0"]
    share = hourly_renewable_share([SUPPLY_HEADER, *(r + "\n" for r in rows)], october)
    assert share[day + 2:day + 6] == [0.0, 0.5, 0.75, 1.0]   # 02:00 +03, 03:00 +03, 03:00 +02, 04:00 +02
    with pytest.raises(UsageInvalid, match="^energy.supply line 6, hour: '2026-10-25T03:00:00' is line 4's hour again"):
        hourly_renewable_share([SUPPLY_HEADER, *(r + "\n" for r in rows), rows[2] + "\n"], october)


def test_a_repeated_local_time_without_an_offset_in_sacct_is_refused():
    job = f"1|acme-ai|batch|2026-10-25T03:30:00|2026-10-25T05:00:00|{GPU}|0|"
    with pytest.raises(UsageInvalid, match="line 2, Start: .* write the hour with its UTC offset or in epoch seconds"):
        list(read_sacct([HEADER, job], "Europe/Riga"))
    offset = f"1|acme-ai|batch|2026-10-25T03:30:00+02:00|2026-10-25T05:00:00|{GPU}|0|"
    assert len(list(read_sacct([HEADER, offset], "Europe/Riga"))) == 1


def test_up_refuses_a_broken_forecast_naming_the_file_and_line(riga, tmp_path):
    (tmp_path / "forecast.csv").write_text(FORECAST.read_text() + "2026-03-02T15:00:00,-1,0,0,0\n")
    data = flexible_site(riga, forecast="forecast.csv")
    site = validate_data(data, directory=tmp_path)
    with pytest.raises(OrchestrationError, match=r"^energy.forecast line 7, grid_kwh: '-1' is not from 0"):
        flexible_windows(site, at(10))
    (tmp_path / "forecast.csv").write_bytes(b"\xff\xfe")
    with pytest.raises(OrchestrationError, match="energy.forecast: .* is not UTF-8 text"):
        flexible_windows(site, at(10))


def test_up_gives_each_flexible_partition_its_windows_and_a_site_without_one_none(riga):
    site = validate_data(flexible_site(riga), directory=ROOT)
    assert flexible_config(site, at(10)) == {"partitions": {"flex": {"windows": [[int(at(11)), int(at(13))],
                                                                                 [int(at(14)), int(at(15))]]}}}
    # the supply file serves when no forecast is declared
    data = flexible_site(riga, forecast=None)
    data["energy"]["supply"] = "tests/flexible_forecast.csv"
    assert flexible_config(validate_data(data, directory=ROOT), at(10)) == flexible_config(site, at(10))
    assert flexible_config(validate_data(with_billing(riga)), at(10)) == {"partitions": {}}


@pytest.mark.parametrize("change, path, fragment", [
    (lambda d: d["slurm"]["partitions"][2]["flexible"].update({"class": "spot"}), "slurm.partitions[2].flexible.class",
     "unknown billing class 'spot'; billing.classes: academic, commercial"),
    (lambda d: d["energy"].pop("forecast"), "slurm.partitions[2].flexible",
     "needs the renewable supply's hours: declare energy.forecast or energy.supply"),
    (lambda d: d["slurm"]["partitions"][2]["flexible"].update(renewable_share=1.5), "slurm.partitions[2].flexible.renewable_share",
     "less than or equal to 1"),
    (lambda d: d["slurm"]["partitions"][2]["flexible"].update(renewable_share="nan"), "slurm.partitions[2].flexible.renewable_share",
     "a finite number"),
    (lambda d: d["energy"].update(forecast="../forecast.csv"), "energy.forecast", "no '..'"),
])
def test_a_bad_flexible_partition_names_its_field(riga, change, path, fragment):
    data = flexible_site(riga)
    change(data)
    found = problems_of(data)
    assert [p for p in found if p.startswith(f"{path}:") and fragment in p], found


def test_slurm_conf_renders_a_flexible_partition_down_and_the_others_up(riga):
    conf = slurm_files(build_plan(validate_data(flexible_site(riga), directory=ROOT)))["slurm/slurm.conf"]
    states = {line.split()[0]: line.split()[-1] for line in conf.splitlines() if line.startswith("PartitionName=")}
    assert states == {"PartitionName=batch": "State=UP", "PartitionName=interactive": "State=UP",
                      "PartitionName=flex": "State=DOWN"}


# ---------------------------------------------------------------- the program against a stand-in scontrol

SCONTROL = """#!{python}
import json, sys
path = {state!r}
states = json.load(open(path))
if sys.argv[1:] == ["show", "partition", "--oneliner"]:
    for name, state in states.items():
        print(f"PartitionName={{name}} AllowGroups=ALL Nodes=node[01-02] State={{state}} TotalCPUs=8")
elif not sys.argv[1:]:
    for line in sys.stdin:
        words = dict(w.split("=", 1) for w in line.split()[1:])
        assert line.split()[0] == "update", line
        states[words["PartitionName"]] = words["State"]
    json.dump(states, open(path, "w"))
    open(path + ".calls", "a").write("batch\\n")
else:
    sys.exit(f"unexpected {{sys.argv}}")
"""


@pytest.fixture
def scontrol(tmp_path):
    state = tmp_path / "partitions.json"
    state.write_text(json.dumps({"batch": "UP", "flex": "DOWN", "spot": "UP"}))
    program = tmp_path / "scontrol"
    program.write_text(SCONTROL.format(python=sys.executable, state=str(state)))
    program.chmod(0o755)
    return program, state


def flexible(tmp_path, scontrol, when: float, config: dict | None = None) -> subprocess.CompletedProcess:
    config_file = tmp_path / "flexible.json"
    config_file.write_text(json.dumps(config or {"partitions": {
        "flex": {"windows": [[int(at(11)), int(at(13))], [int(at(14)), int(at(15))]]},
        "spot": {"windows": [[int(at(14)), int(at(15))]]}}}))
    return subprocess.run([sys.executable, str(PROGRAM), "--config", str(config_file), "--events",
                           str(tmp_path / "events.jsonl"), "--at", str(int(when)), "--scontrol", str(scontrol[0])],
                          capture_output=True, text=True, timeout=60)


def test_the_program_opens_a_partition_in_its_window_and_closes_it_outside(tmp_path, scontrol):
    done = flexible(tmp_path, scontrol, at(10))
    assert done.returncode == 0, done.stderr
    assert json.loads(scontrol[1].read_text()) == {"batch": "UP", "flex": "DOWN", "spot": "DOWN"}
    assert f"partition spot State=DOWN: outside the windows; the next opens at {int(at(14))}" in done.stdout
    done = flexible(tmp_path, scontrol, at(11, 30))
    assert json.loads(scontrol[1].read_text()) == {"batch": "UP", "flex": "UP", "spot": "DOWN"}, done.stderr
    flexible(tmp_path, scontrol, at(13, 10))
    assert json.loads(scontrol[1].read_text())["flex"] == "DOWN"
    flexible(tmp_path, scontrol, at(14))                                     # both open: one scontrol for the two
    assert json.loads(scontrol[1].read_text()) == {"batch": "UP", "flex": "UP", "spot": "UP"}
    done = flexible(tmp_path, scontrol, at(16))                                     # after the last window: closed
    assert json.loads(scontrol[1].read_text()) == {"batch": "UP", "flex": "DOWN", "spot": "DOWN"}
    assert "none ahead" in done.stdout
    calls = (scontrol[1].parent / "partitions.json.calls").read_text().splitlines()
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [(e["partition"], e["from"], e["to"]) for e in events] == [
        ("spot", "UP", "DOWN"), ("flex", "DOWN", "UP"), ("flex", "UP", "DOWN"), ("flex", "DOWN", "UP"),
        ("spot", "DOWN", "UP"), ("flex", "UP", "DOWN"), ("spot", "UP", "DOWN")]
    assert len(calls) == 5 and events[1]["window"] == [int(at(11)), int(at(13))]


def test_the_program_changes_nothing_that_is_already_right(tmp_path, scontrol):
    flexible(tmp_path, scontrol, at(10))
    done = flexible(tmp_path, scontrol, at(10, 5))
    assert done.returncode == 0 and done.stdout == "" and len((tmp_path / "events.jsonl").read_text().splitlines()) == 1


@pytest.mark.parametrize("config, fragment", [
    ({"partitions": {"flex x": {"windows": []}}}, "is not a partition name"),
    ({"partitions": {"flex": {"windows": [[5, 4]]}}}, "partitions.flex.windows[0]: not [start, end)"),
    ({"partitions": {"flex": {"windows": [[0, 1e400]]}}}, "partitions.flex.windows[0]"),
    ({"partitions": []}, "partitions: not an object"),
])
def test_a_hostile_flexible_json_is_refused_and_nothing_changes(tmp_path, scontrol, config, fragment):
    done = flexible(tmp_path, scontrol, at(11), config)
    assert done.returncode == 2 and fragment in done.stderr, done.stderr
    assert json.loads(scontrol[1].read_text()) == {"batch": "UP", "flex": "DOWN", "spot": "UP"}


@pytest.mark.parametrize("operator", ["DRAIN", "INACTIVE"])
def test_an_operators_drain_or_inactive_is_left_in_and_out_of_a_window(tmp_path, scontrol, operator):
    scontrol[1].write_text(json.dumps({"batch": "UP", "flex": operator, "spot": "UP"}))
    for when in (at(11, 30), at(10), at(16)):                       # inside a window, before it, after the last
        done = flexible(tmp_path, scontrol, when)
        assert done.returncode == 0, done.stderr
        assert json.loads(scontrol[1].read_text())["flex"] == operator
        assert done.stdout.count(f"partition flex is {operator}, not UP or DOWN: left as it is") == 1
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert {e["partition"] for e in events} == {"spot"}            # the other partition is still steered


@pytest.mark.parametrize("text", [b"", b"{", b"\x00\xff"])
def test_an_empty_or_unreadable_flexible_json_fails_loudly_and_changes_nothing(tmp_path, scontrol, text):
    config_file = tmp_path / "flexible.json"
    config_file.write_bytes(text)
    done = subprocess.run([sys.executable, str(PROGRAM), "--config", str(config_file), "--events",
                           str(tmp_path / "events.jsonl"), "--at", str(int(at(16))), "--scontrol", str(scontrol[0])],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "ERROR" in done.stderr and "no partition changed" in done.stderr, done.stderr
    assert json.loads(scontrol[1].read_text()) == {"batch": "UP", "flex": "DOWN", "spot": "UP"}
    assert not (tmp_path / "events.jsonl").exists()


def test_check_config_refuses_what_the_program_would_and_touches_no_partition(tmp_path):
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps({"partitions": {"flex": {"windows": [[1, 2]]}}}))
    bad.write_text("")
    argv = [sys.executable, str(PROGRAM), "--scontrol", str(tmp_path / "no-scontrol"), "--check-config"]
    assert subprocess.run([*argv, str(good)], capture_output=True, timeout=60).returncode == 0
    done = subprocess.run([*argv, str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "bad.json" in done.stderr


def test_the_role_installs_flexible_json_only_after_the_program_checked_it():
    tasks = yaml.safe_load((ROOT / "playbooks/roles/slurm_flexible/tasks/configure.yml").read_text())
    block = next(t for t in tasks if t.get("name") == "Flexible partitions")["block"]
    write = next(t for t in block if t.get("name") == "Write flexible.json")["ansible.builtin.copy"]
    assert write["validate"] == "{{ slurm_flexible_program }} --check-config %s"


def test_a_partition_slurmctld_does_not_know_is_said(tmp_path, scontrol):
    done = flexible(tmp_path, scontrol, at(11), {"partitions": {"gone": {"windows": []}, "flex": {"windows": [[0, 2**33]]}}})
    assert done.returncode == 1 and "partition gone is not in slurmctld's configuration" in done.stderr
    assert json.loads(scontrol[1].read_text())["flex"] == "UP"


# ---------------------------------------------------------------- the price

HEADER = "JobIDRaw|Account|Partition|Start|End|AllocTRES|ConsumedEnergyRaw|AdminComment"
GPU = "cpu=8,gres/gpu:h200=1,gres/gpu=1,mem=64G,node=1"


def test_a_flexible_jobs_line_carries_the_flexible_class_and_its_price(riga):
    data = flexible_site(riga, cls="flex-green")
    data["billing"]["classes"].append({"name": "flex-green", "price_factor": 0.4})
    site = validate_data(data, directory=ROOT)
    jobs = [f"1|acme-ai|batch|2026-03-02T10:00:00|2026-03-02T12:00:00|{GPU}|0|",
            f"2|acme-ai|flex|2026-03-02T11:00:00|2026-03-02T13:00:00|{GPU}|0|",
            f"3|univ-latvia|flex|2026-03-02T11:00:00|2026-03-02T12:00:00|{GPU}|0|"]
    report = usage_report(site, parse_period("2026-03", "Europe/Riga"), read_sacct([HEADER, *jobs], "Europe/Riga"))
    rows = {r.name: r for r in report.tenants}
    assert rows["acme-ai"].costs["gpu"] == pytest.approx(2 * 2.5) and rows["acme-ai"].tenant_class == "commercial"
    flex = rows["acme-ai [flex-green]"]
    assert (flex.tenant_class, flex.price_factor, flex.jobs) == ("commercial+flex-green", 0.4, 1)
    assert flex.costs["gpu"] == pytest.approx(2 * 2.5 * 0.4)
    univ = rows["univ-latvia [flex-green]"]            # academic (0.5) times the flexible class (0.4)
    assert univ.price_factor == pytest.approx(0.2) and univ.costs["gpu"] == pytest.approx(2.5 * 0.2)
    assert rows["univ-latvia"].jobs == 0 and rows["univ-latvia"].budget == 100000
    alone = usage_report(site, parse_period("2026-03", "Europe/Riga"), read_sacct([HEADER, *jobs], "Europe/Riga"),
                         tenant="acme-ai")
    assert [r.name for r in alone.tenants] == ["acme-ai", "acme-ai [flex-green]"]


def test_a_tenants_flexible_spending_counts_against_its_prepaid_budget_and_totals_add_up(riga):
    site = validate_data(flexible_site(riga), directory=ROOT)           # flex's class: academic, univ-latvia's own
    jobs = [f"1|univ-latvia|batch|2026-03-02T10:00:00|2026-03-02T12:00:00|{GPU}|0|",
            f"2|univ-latvia|flex|2026-03-02T11:00:00|2026-03-02T13:00:00|{GPU}|0|",
            f"3|acme-ai|flex|2026-03-02T11:00:00|2026-03-02T12:00:00|{GPU}|0|"]
    report = usage_report(site, parse_period("2026-03", "Europe/Riga"), read_sacct([HEADER, *jobs], "Europe/Riga"))
    rows = {r.name: r for r in report.tenants}
    own, flex = rows["univ-latvia"], rows["univ-latvia [academic]"]
    assert flex.total > 0 and flex.budget is None and flex.budget_share is None
    assert own.budget_share == pytest.approx((own.total + flex.total) / 100000)
    assert (flex.tenant_class, rows["acme-ai [academic]"].tenant_class) == ("academic", "commercial+academic")
    lines = {line["tenant"]: line for line in report_dict(report)["tenants"]}
    assert lines["univ-latvia [academic]"]["flexible_of"] == "univ-latvia" and lines["univ-latvia"]["flexible_of"] is None
    assert report.total.total == pytest.approx(sum(r.total or 0.0 for r in [*report.tenants, report.idle]))
    assert report.total.total == pytest.approx(own.total + flex.total + sum(rows[n].total for n in rows if "univ-latvia" not in n))
    table = as_table(report)
    assert "within univ-latvia's" in table and "within acme-ai's" not in table   # acme-ai has no prepaid budget
    page = usage_page(report)
    assert "within univ-latvia&#39;s</td>" in page and "within univ-latvia's prepaid budget" in page and "within acme-ai" not in page
    alone = usage_report(site, parse_period("2026-03", "Europe/Riga"), read_sacct([HEADER, *jobs], "Europe/Riga"),
                         tenant="univ-latvia")
    assert alone.tenants[0].budget_share == pytest.approx(own.budget_share)


def test_a_prepaid_budget_of_nothing_is_refused_and_the_page_draws_a_line_without_a_share(riga):
    data = with_billing(copy.deepcopy(riga))
    data["tenants"][1]["billing"]["prepaid"]["amount"] = 0
    assert [p for p in problems_of(data) if p.startswith("tenants[1].billing.prepaid.amount")], problems_of(data)
    site = validate_data(with_billing(copy.deepcopy(riga)), directory=ROOT)
    report = usage_report(site, parse_period("2026-03", "Europe/Riga"), read_sacct([HEADER], "Europe/Riga"))
    for row in report.tenants:
        row.budget_share = None                     # a budget whose share is unknown: drawn, never a crash
    page = usage_page(report)                      # the line says its budget, no share drawn
    assert "prepaid budget</td><td class=\"n\">100,000.00</td>" in page and " used</td>" not in page
