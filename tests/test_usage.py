"""gigafactory usage: Slurm's records split by period, priced per tenant, energy flagged, idle reconciling."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, bin_path, run
from metering_data import with_billing, with_two_gpu_models

from infra import cli
from infra.orchestrate.rollout import CommandResult

from infra.site import SiteInvalid
from infra.site.load import validate_data
from infra.usage import UsageInvalid, parse_period, read_sacct, usage_report
from infra.usage.report import _Hourly
from infra.usage.supply import hourly_renewable_share

HEADER = "JobIDRaw|Account|Partition|Start|End|AllocTRES|ConsumedEnergyRaw|AdminComment"
NODE = "cpu=224,gres/gpu:h200=8,gres/gpu=8,mem=1945G,node=1"
JOBS = [
    # a whole node for two hours, no meter reading: estimated from the node's 10.2 kW
    f"1|acme-ai|batch|2026-11-02T10:00:00|2026-11-02T12:00:00|billing=48,{NODE}|0|",
    "1.batch|acme-ai||2026-11-02T10:00:00|2026-11-02T12:00:00|cpu=224,mem=1945G,node=1|0|",
    # one GPU of eight across midnight into November (Riga time): one hour counts; the node meter read 36 MJ
    "2|univ-latvia|batch|2026-10-31T23:00:00|2026-11-01T01:00:00|cpu=8,gres/gpu:h200=1,gres/gpu=1,mem=64G,node=1|36000000|",
    # still running at the end of the month: counted to the end
    "3|univ-latvia|interactive|2026-11-30T23:00:00|Unknown|cpu=16,gres/gpu=2,mem=128G,node=1||",
    # never started
    "4|acme-ai|batch|Unknown|Unknown|cpu=16,mem=128G,node=1||",
    # a whole node with its meter: measured
    f"5|acme-ai|batch|2026-11-03T00:00:00|2026-11-03T01:00:00|{NODE}|18000000|JS1:an administrator's note",
]


@pytest.fixture
def site(riga):
    return validate_data(with_billing(riga))


def _report(site, jobs=JOBS, period="2026-11", **kw):
    p = parse_period(period, "Europe/Riga")
    return usage_report(site, p, read_sacct([HEADER, *jobs], "Europe/Riga"), **kw)


def test_jobs_are_split_by_the_period_and_steps_ignored(site):
    rows = {r.name: r for r in _report(site).tenants}
    assert rows["acme-ai"].jobs == 2 and rows["acme-ai"].gpu_hours == {"h200": 24.0}
    assert rows["acme-ai"].cpu_hours == 224 * 3
    assert rows["univ-latvia"].jobs == 2 and rows["univ-latvia"].gpu_hours == {"h200": 1.0 + 2.0}
    october = {r.name: r for r in _report(site, period="2026-10").tenants}
    assert october["univ-latvia"].gpu_hours == {"h200": 1.0} and october["acme-ai"].jobs == 0


def test_energy_is_flagged_measured_apportioned_or_estimated(site):
    rows = {r.name: r for r in _report(site).tenants}
    assert rows["acme-ai"].energy_kwh["measured"] == pytest.approx(5.0)          # 18 MJ
    assert rows["acme-ai"].energy_kwh["estimated"] == pytest.approx(10.2 * 2)
    # 36 MJ = 10 kWh over two hours, half in November, one GPU of eight
    assert rows["univ-latvia"].energy_kwh["apportioned"] == pytest.approx(10 / 2 / 8)
    assert rows["univ-latvia"].energy_kwh["estimated"] == pytest.approx(10.2 * 2 / 8)
    assert rows["acme-ai"].facility_kwh == pytest.approx(rows["acme-ai"].it_kwh * 1.15)  # energy.pue for 2026


def test_tenants_and_idle_add_up_to_the_capacity_of_the_period(site):
    report = _report(site)
    capacity = 96 * 8 * 30 * 24
    assert report.total.gpu_hours["h200"] == pytest.approx(capacity)
    assert report.idle.gpu_hours["h200"] == pytest.approx(capacity - 27)
    assert report.total.it_kwh == pytest.approx(sum(r.it_kwh for r in report.tenants) + report.idle.it_kwh)


def test_costs_follow_tariffs_and_class_factor(site):
    rows = {r.name: r for r in _report(site).tenants}
    acme, univ = rows["acme-ai"], rows["univ-latvia"]
    assert acme.costs["gpu"] == pytest.approx(24 * 2.5)
    assert univ.costs["gpu"] == pytest.approx(3 * 2.5 * 0.5)                     # academic: half price
    assert univ.costs["storage"] == pytest.approx(400 * 20.0 * 0.5)
    assert acme.costs["energy"] == pytest.approx(acme.facility_kwh * 0.12)
    assert acme.total == pytest.approx(sum(acme.costs.values()))
    assert univ.budget_share == pytest.approx(univ.total / 100000)


def test_hourly_supply_matches_renewables_hour_by_hour(site, tmp_path):
    period = parse_period("2026-11", "Europe/Riga")
    lines = ["hour,grid_kwh,onsite_renewable_kwh,contracted_renewable_kwh,carbon_g_per_kwh"]
    for h in range(int(period.hours)):
        # hours of November 2 from 10:00 Riga time have no renewable energy; every other hour is all renewable
        dirty = 34 <= h < 36
        lines.append(f"{int(period.start) + 3600 * h},100,0,{0 if dirty else 100},300")
    share = hourly_renewable_share(lines, period)
    rows = {r.name: r for r in _report(site, jobs=JOBS[:1], supply_share=share).tenants}
    assert rows["acme-ai"].facility_kwh > 0 and rows["acme-ai"].renewable_kwh == pytest.approx(0)
    rows = {r.name: r for r in _report(site, jobs=JOBS[5:], supply_share=share).tenants}
    assert rows["acme-ai"].renewable_kwh == pytest.approx(rows["acme-ai"].facility_kwh)


def test_a_contracted_surplus_covers_no_other_hour():
    period = parse_period("2026-11", "UTC")
    rows = ["hour,grid_kwh,onsite_renewable_kwh,contracted_renewable_kwh,carbon_g_per_kwh",
            f"{int(period.start)},100,0,500,300", f"{int(period.start) + 3600},100,50,0,300"]
    share = hourly_renewable_share(rows, period)
    assert share[:3] == [1.0, pytest.approx(50 / 150), None]


@pytest.mark.parametrize("a, b", [(0, 7200), (1800, 9000), (100, 200), (3599, 3601), (0, 720 * 3600)])
def test_hourly_spread_keeps_every_kwh(a, b):
    spread = _Hourly(720)
    spread.add(a, b, 10.0)
    values = spread.values()
    assert sum(values) == pytest.approx(10.0)
    assert values[int(a // 3600)] > 0


@pytest.mark.parametrize("line, where", [
    ("9|acme-ai|batch|2026-11-02T10:00:00|2026-11-02T12:00:00|cpu=x|0|", "line 2, AllocTRES"),
    ("9|acme-ai|batch|yesterday|2026-11-02T12:00:00|cpu=1|0|", "line 2, Start"),
    ("9|acme-ai|batch|2026-11-02T12:00:00|2026-11-02T10:00:00|cpu=1|0|", "line 2, End"),
    ("9|acme-ai|batch|2026-11-02T10:00:00|2026-11-02T12:00:00|cpu=1|lots|", "line 2, ConsumedEnergyRaw"),
    ("9||batch|2026-11-02T10:00:00|2026-11-02T12:00:00|cpu=1|0|", "line 2, Account"),
    ("9|acme-ai|batch|2026-11-02T10:00:00", "line 2"),
])
def test_malformed_accounting_names_line_and_field(site, line, where):
    with pytest.raises(UsageInvalid) as err:
        _report(site, jobs=[line])
    assert err.value.field == f"--sacct {where}"


def _cli(tmp_path, data, *args, sacct=None):
    (tmp_path / "site.yml").write_text(yaml.safe_dump(data))
    (tmp_path / "sacct.txt").write_text("\n".join([HEADER, *JOBS]) + "\n" if sacct is None else sacct)
    return run([bin_path("gigafactory"), "usage", str(tmp_path / "site.yml"), "--sacct", str(tmp_path / "sacct.txt"), *args])


def test_cli_prints_json_and_csv(riga, tmp_path):
    out = _cli(tmp_path, with_billing(riga), "--period", "2026-11", "--format", "json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert [t["tenant"] for t in data["tenants"]] == ["acme-ai", "univ-latvia", "gov-lv"]
    assert data["tenants"][0]["gpu_hours"] == {"h200": 24.0} and data["currency"] == "EUR"
    out = _cli(tmp_path, with_billing(riga), "--period", "2026-11", "--format", "csv", "--tenant", "univ-latvia")
    lines = out.stdout.splitlines()
    assert out.returncode == 0 and len(lines) == 2 and lines[1].startswith("2026-11,univ-latvia,univ-latvia,academic,2,3.000,")


def test_cli_on_riga_without_billing_reports_quantities_only(riga, tmp_path):
    out = _cli(tmp_path, riga, "--period", "2026-11")
    assert out.returncode == 0, out.stderr
    assert "acme-ai" in out.stdout and "(idle)" in out.stdout and "total EUR" not in out.stdout


def test_cli_eed_prints_it_energy_pue_and_renewable_factor(riga, tmp_path):
    out = _cli(tmp_path, with_billing(riga), "--eed", "2026", "--format", "json")
    data = json.loads(out.stdout)
    assert data["pue"] == 1.15 and data["total_energy_kwh"] == pytest.approx(data["it_energy_kwh"] * 1.15)
    assert data["renewable_energy_factor"] == pytest.approx(1.0)


@pytest.mark.parametrize("args, sacct, field", [
    (["--period", "2026-13"], None, "--period"),
    (["--period", "november"], None, "--period"),
    (["--period", ""], None, "--period"),
    (["--eed", ""], None, "--eed"),
    (["--eed", "2026-11"], None, "--eed"),
    ([], None, "--period"),
    (["--period", "2026-11", "--tenant", "nobody"], None, "--tenant"),
    (["--period", "2026-11"], "JobIDRaw|Account\n1|acme-ai\n", "--sacct line 1"),
    (["--period", "2026-11"], HEADER + "\n1|acme-ai|batch|2026-11-02T10:00:00|2026-11-02T12:00:00|mem=1Q|0|\n", "--sacct line 2, AllocTRES"),
])
def test_cli_bad_input_exits_2_naming_the_field(riga, tmp_path, args, sacct, field):
    out = _cli(tmp_path, with_billing(riga), *args, sacct=sacct)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith(f"gigafactory usage: {field}:") and "Traceback" not in out.stderr


def test_cli_with_binary_or_absent_accounting_data_exits_2(riga, tmp_path):
    (tmp_path / "site.yml").write_text(yaml.safe_dump(riga))
    (tmp_path / "bin").write_bytes(HEADER.encode() + b"\n\xff\xfe\n")
    out = run([bin_path("gigafactory"), "usage", str(tmp_path / "site.yml"), "--period", "2026-11", "--sacct", str(tmp_path / "bin")])
    assert out.returncode == 2 and "not UTF-8" in out.stderr and "Traceback" not in out.stderr
    out = run([bin_path("gigafactory"), "usage", str(tmp_path / "site.yml"), "--period", "2026-11", "--sacct", str(tmp_path / "absent")])
    assert out.returncode == 2 and "--sacct: cannot read" in out.stderr


def test_cli_reads_the_supply_file_beside_the_site_file(riga, tmp_path):
    period = parse_period("2026-11", "Europe/Riga")
    (tmp_path / "supply.csv").write_text("hour,grid_kwh,onsite_renewable_kwh,contracted_renewable_kwh,carbon_g_per_kwh\n"
                                         f"{int(period.start)},100,0,0,300\n")
    data = with_billing(riga)
    data["energy"]["supply"] = "supply.csv"
    out = _cli(tmp_path, data, "--period", "2026-11", "--format", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["renewable_basis"] == "hourly, gaps declared"
    (tmp_path / "supply.csv").write_text("hour,grid_kwh\n")
    out = _cli(tmp_path, data, "--period", "2026-11")
    assert out.returncode == 2 and "energy.supply line 1: the header lacks" in out.stderr


# --- without --sacct: sacct on the accounting host, as up reaches hosts --------------------------------------------

RIGA_NOVEMBER_ARGV = [
    "env", "TZ=UTC", "SLURM_TIME_FORMAT=%s", "sacct", "--allusers", "--allocations", "--parsable2", "--noheader",
    "--starttime", "2026-10-31T22:00:00", "--endtime", "2026-11-30T22:00:00",          # Riga midnights in UTC
    "--format=JobIDRaw,Account,Partition,Start,End,AllocTRES,ConsumedEnergyRaw,AdminComment"]


class Recorded:
    """A NodeControl that answers every command with one recorded result and keeps the argument vectors."""

    def __init__(self, rc: int = 0, stdout: str = "", stderr: str = ""):
        self.result, self.calls = CommandResult(rc, stdout, stderr), []

    def run(self, argv):
        self.calls.append(list(argv))
        return self.result


def _remote(monkeypatch, tmp_path, data, control, *args):
    site_file = tmp_path / "site.yml"
    site_file.write_text(yaml.safe_dump(data))
    reached = []
    monkeypatch.setattr(cli, "node_control", lambda host, inventories, _dir: reached.append((host, inventories)) or control)
    return cli.main(["usage", str(site_file), *args]), reached, site_file


def test_cli_without_sacct_runs_sacct_on_the_accounting_host_and_reports_as_from_a_file(riga, tmp_path, monkeypatch,
                                                                                         capsys):
    data = with_billing(riga)
    control = Recorded(stdout="\n".join(JOBS) + "\n")
    rc, reached, site_file = _remote(monkeypatch, tmp_path, data, control, "--period", "2026-11", "--format", "json")
    remote = capsys.readouterr()
    assert rc == 0, remote.err
    assert reached == [(data["slurm"]["accounting"]["host"], [site_file.resolve()])]
    assert control.calls == [RIGA_NOVEMBER_ARGV]
    offline = _cli(tmp_path, data, "--period", "2026-11", "--format", "json")
    assert offline.returncode == 0 and json.loads(remote.out) == json.loads(offline.stdout)


def test_cli_accounting_host_failing_exits_1_with_host_and_reason(riga, tmp_path, monkeypatch, capsys):
    control = Recorded(1, "", "sacct: error: Problem talking to the database: Connection refused\nsecond line\n")
    rc, _, _ = _remote(monkeypatch, tmp_path, riga, control, "--period", "2026-11")
    err = capsys.readouterr().err
    assert rc == 2 and err == (f"gigafactory usage: accounting host {riga['slurm']['accounting']['host']}: sacct failed "
                               "(rc 1): sacct: error: Problem talking to the database: Connection refused\n")
    control = Recorded(0, "1|acme-ai|batch\n")
    rc, _, _ = _remote(monkeypatch, tmp_path, riga, control, "--period", "2026-11")
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"gigafactory usage: sacct on {riga['slurm']['accounting']['host']} line 2: 3 fields")


def test_cli_without_sacct_on_a_site_without_slurm_or_invalid_exits_2_reaching_no_host(riga, tmp_path, monkeypatch,
                                                                                    capsys):
    riga.pop("slurm")
    for tenant in riga["tenants"]:
        tenant.pop("slurm", None)
    control = Recorded(stdout="")
    rc, reached, _ = _remote(monkeypatch, tmp_path, riga, control, "--period", "2026-11")
    assert rc == 2 and capsys.readouterr().err.startswith("gigafactory usage: slurm: the site has no Slurm")
    riga["site"]["name"] = "Not A Name!"
    rc, more, _ = _remote(monkeypatch, tmp_path, riga, control, "--period", "2026-11")
    assert rc == 2 and "site.name" in capsys.readouterr().err
    assert reached == more == [] and control.calls == []


def test_cli_reaches_the_accounting_host_through_ansible_runner(riga, tmp_path):
    """The real AnsibleCommand, on a local connection: a stand-in sacct on PATH records its argv and prints JOBS;
    an interpreter that does not exist is the host failing (exit 1, the host named, no traceback)."""
    data = with_billing(riga)
    host = data["slurm"]["accounting"]["host"]
    (tmp_path / "site.yml").write_text(yaml.safe_dump(data))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (tmp_path / "jobs.txt").write_text("\n".join(JOBS) + "\n")
    (bindir / "sacct").write_text(f'#!/bin/sh\nprintf "%s\\n" "$TZ" "$SLURM_TIME_FORMAT" "$@" > {tmp_path}/argv\n'
                                  f"exec cat {tmp_path}/jobs.txt\n")
    (bindir / "sacct").chmod(0o755)
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), HOME=str(tmp_path),
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), PATH=f"{bindir}:{os.environ['PATH']}")

    def usage(interpreter: str) -> subprocess.CompletedProcess:
        (tmp_path / "local.yml").write_text(yaml.safe_dump({"all": {"hosts": {host: {
            "ansible_connection": "local", "ansible_python_interpreter": interpreter}}}}))
        return subprocess.run([bin_path("gigafactory"), "usage", str(tmp_path / "site.yml"), "--period", "2026-11",
                               "--format", "json", "-i", str(tmp_path / "local.yml")],
                              capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)

    out = usage(sys.executable)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "argv").read_text().splitlines() == ["UTC", "%s", *RIGA_NOVEMBER_ARGV[4:]]
    offline = _cli(tmp_path, data, "--period", "2026-11", "--format", "json")
    assert json.loads(out.stdout) == json.loads(offline.stdout)
    out = usage(str(tmp_path / "no-python"))
    assert out.returncode == 2 and out.stdout == "" and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith(f"gigafactory usage: accounting host {host}: ") and out.stderr.count("\n") == 1


# --- GPU energy from DCGM job statistics (the slurm_compute epilog's words in AdminComment) -------------------------

def _dcgm(*words: tuple[str, int, int]) -> str:
    return " ".join(f"dcgm-energy:{node}:gpus={gpus}:joules={joules}" for node, gpus, joules in words)


ONE_GPU = "cpu=8,gres/gpu:h200=1,gres/gpu=1,mem=64G,node=1"
TWO_NODES = "cpu=448,gres/gpu:h200=16,gres/gpu=16,mem=3890G,node=2"


def _energy(site, line: str, tenant: str = "acme-ai") -> tuple[dict[str, float], float]:
    row = {r.name: r for r in _report(site, jobs=[line]).tenants}[tenant]
    return {f: round(v, 9) for f, v in row.energy_kwh.items()}, round(row.gpu_dcgm_kwh, 9)


def test_dcgm_gpu_energy_is_measured_and_never_added_to_the_node_figure(site):
    # whole node, its meter read 18 MJ = 5 kWh, its GPUs 14.4 MJ = 4 kWh: the meter holds the GPUs, 5 kWh in all
    day = "2026-11-03T00:00:00|2026-11-03T01:00:00"
    energy, gpu = _energy(site, f"5|acme-ai|batch|{day}|{NODE}|18000000|{_dcgm(('gpu0001', 8, 14_400_000))}")
    assert energy == {"measured": 5.0, "apportioned": 0.0, "estimated": 0.0} and gpu == 4.0
    # one GPU of eight, the node meter read 8 kWh: 1 kWh apportioned, of which its GPU's 0.1 kWh is measured
    energy, gpu = _energy(site, f"6|acme-ai|batch|{day}|{ONE_GPU}|28800000|JS1:x {_dcgm(('gpu0001', 1, 360_000))}")
    assert energy == {"measured": 0.1, "apportioned": 0.9, "estimated": 0.0} and gpu == 0.1
    # no meter: 10.2 kW / 8 for an hour is the estimate, 1.275 kWh; its GPU measured 0.5 kWh, the rest estimated
    energy, gpu = _energy(site, f"7|acme-ai|batch|{day}|{ONE_GPU}||{_dcgm(('gpu0001', 1, 1_800_000))}")
    assert energy == {"measured": 0.5, "apportioned": 0.0, "estimated": 0.775} and gpu == 0.5
    # a GPU above its share of the rating: the measured figure stands, nothing is estimated on top
    energy, gpu = _energy(site, f"8|acme-ai|batch|{day}|{ONE_GPU}||{_dcgm(('gpu0001', 1, 7_200_000))}")
    assert energy == {"measured": 2.0, "apportioned": 0.0, "estimated": 0.0} and gpu == 2.0


def test_dcgm_words_of_every_node_are_summed_and_a_missing_node_drops_them_all(site):
    day = "2026-11-03T00:00:00|2026-11-03T01:00:00"
    both = _dcgm(("gpu0001", 8, 7_200_000), ("gpu0002", 8, 10_800_000))
    energy, gpu = _energy(site, f"9|acme-ai|batch|{day}|{TWO_NODES}||{both}")
    assert gpu == 5.0 and energy["measured"] == 5.0 and energy["estimated"] == pytest.approx(20.4 - 5.0)
    # one node's epilog did not store its word: 8 of 16 GPUs read is no measurement of the job
    energy, gpu = _energy(site, f"9|acme-ai|batch|{day}|{TWO_NODES}||{_dcgm(('gpu0001', 8, 7_200_000))}")
    assert gpu == 0.0 and energy == {"measured": 0.0, "apportioned": 0.0, "estimated": 20.4}
    # a node's word twice (an epilog run again) counts once
    twice = _dcgm(("gpu0001", 8, 7_200_000), ("gpu0001", 8, 7_200_000))
    energy, gpu = _energy(site, f"5|acme-ai|batch|{day}|{NODE}||{twice}")
    assert gpu == 2.0 and energy["measured"] == 2.0


def test_a_dcgm_measured_job_is_matched_to_renewables_with_all_its_energy(site):
    # its GPU used 7.2 MJ = 2 kWh in an hour, more than its share of the node's rating: all 2 kWh count hour by hour
    period = parse_period("2026-11", "Europe/Riga")
    lines = ["hour,grid_kwh,onsite_renewable_kwh,contracted_renewable_kwh,carbon_g_per_kwh"]
    for h in range(int(period.hours)):
        lines.append(f"{int(period.start) + 3600 * h},100,0,{0 if h == 48 else 100},300")     # Nov 3, 00:00 Riga: grid
    share = hourly_renewable_share(lines, period)
    line = f"8|acme-ai|batch|2026-11-03T00:00:00|2026-11-03T01:00:00|{ONE_GPU}||{_dcgm(('gpu0001', 1, 7_200_000))}"
    acme = {r.name: r for r in _report(site, jobs=[line], supply_share=share).tenants}["acme-ai"]
    assert acme.it_kwh == pytest.approx(2.0) and acme.renewable_kwh == pytest.approx(0.0)
    line = line.replace("2026-11-03T00:00:00|2026-11-03T01:00:00", "2026-11-03T01:00:00|2026-11-03T02:00:00")
    acme = {r.name: r for r in _report(site, jobs=[line], supply_share=share).tenants}["acme-ai"]
    assert acme.renewable_kwh == pytest.approx(acme.facility_kwh) and acme.facility_kwh == pytest.approx(2.0 * 1.15)


def test_dcgm_energy_of_a_job_straddling_the_period_is_split_by_time(site):
    # two hours across the start of November (Riga), one in it: half of the GPU's 7.2 MJ
    line = f"2|univ-latvia|batch|2026-10-31T23:00:00|2026-11-01T01:00:00|{ONE_GPU}||{_dcgm(('gpu0001', 1, 7_200_000))}"
    energy, gpu = _energy(site, line, tenant="univ-latvia")
    assert gpu == 1.0 and energy["measured"] == 1.0


def test_the_admin_comment_is_the_last_field_and_may_hold_the_separator(site):
    line = f"6|acme-ai|batch|2026-11-03T00:00:00|2026-11-03T01:00:00|{ONE_GPU}||note | with bars {_dcgm(('g1', 1, 360_000))}"
    jobs = list(read_sacct([HEADER, line], "Europe/Riga"))
    assert [j.gpu_energy_j for j in jobs] == [360_000]
    # an older file without AdminComment reads as before: no GPU energy
    old = list(read_sacct([HEADER.removesuffix("|AdminComment"), line.rsplit("|", 2)[0]], "Europe/Riga"))
    assert [(j.gpus, j.gpu_energy_j) for j in old] == [(1, 0)]


@pytest.mark.parametrize("word", ["dcgm-energy:g1:gpus=1:joules=-5", "dcgm-energy:g1:gpus=1", "dcgm-energy:g;1:gpus=1:joules=5",
                                  "dcgm-energy:g1:gpus=1:joules=5J", "dcgm-energy:g1:gpus=1:joules=1234567890123456"])
def test_a_malformed_dcgm_word_names_line_and_field(site, word):
    line = f"6|acme-ai|batch|2026-11-03T00:00:00|2026-11-03T01:00:00|{ONE_GPU}||{word}"
    with pytest.raises(UsageInvalid) as err:
        _report(site, jobs=[line])
    assert err.value.field == "--sacct line 2, AdminComment" and word in str(err.value)


# --- conservation: tenants + idle = capacity, per GPU model and in kWh, for every period -----------------------------

NODES = {"h200": (80, 10.2), "b200": (16, 11.0)}       # with_two_gpu_models: nodes and kW per node of each GPU model


@pytest.fixture
def two_models(riga):
    return validate_data(with_two_gpu_models(riga))


def _edge_case_jobs(rng: random.Random, period) -> list[str]:
    """sacct lines (no meter readings: every kWh at the power rating) of jobs that cross the period's start or end,
    overlap, hold GPUs of either model (typed, or untyped in an H200-only partition), hold no GPU on GPU nodes,
    still run, or are job steps."""
    lines = []
    for job in range(1, rng.randint(20, 60)):
        start = int(period.start + rng.uniform(-2, period.hours / 24 + 1) * 86400)
        end = "Unknown" if rng.random() < 0.15 else start + rng.randint(0, 3 * 86400)
        kind = rng.choice(("h200", "b200", "untyped", "cpu-only", "both"))
        gpus = rng.choice((1, 2, 4, 8, 16))
        nodes = max(1, gpus // 8)
        if kind == "cpu-only":
            partition, tres = "batch", f"cpu={rng.choice((1, 16, 224))},mem=64G,node=1"
        elif kind == "both":                            # an untyped request Slurm met with nodes of both models
            partition, tres = "batch", f"cpu=448,gres/gpu:b200=8,gres/gpu:h200={gpus},gres/gpu={8 + gpus},mem=64G,node={1 + nodes}"
        elif kind == "untyped":
            partition, tres = "interactive", f"cpu={8 * gpus},gres/gpu={gpus},mem=64G,node={nodes}"
        else:
            partition = rng.choice(("batch", kind if kind == "b200" else "interactive"))
            tres = f"cpu={8 * gpus},gres/gpu:{kind}={gpus},gres/gpu={gpus},mem=64G,node={nodes}"
        account = rng.choice(("acme-ai", "univ-latvia", "lab-x"))
        lines.append(f"{job}|{account}|{partition}|{start}|{end}|{tres}||")
        if rng.random() < 0.2:
            lines.append(f"{job}.batch|{account}||{start}|{end}|cpu=1,mem=1G,node=1||")
    return lines


@pytest.mark.parametrize("seed", range(12))
def test_tenants_and_idle_add_up_to_capacity_per_gpu_model_and_in_kwh(two_models, seed):
    """A property over generated edge-case months: a finished one, or one that is not over ("now" fixed inside it,
    as the command passes its clock)."""
    rng = random.Random(seed)
    period = parse_period("2026-11", "Europe/Riga")
    now = None if seed % 2 else period.start + rng.uniform(0, period.hours) * 3600
    report = usage_report(two_models, period, read_sacct([HEADER, *_edge_case_jobs(rng, period)], "Europe/Riga"),
                          now=now)
    elapsed = (min(period.end, now or period.end) - period.start) / 3600
    rows = [*report.tenants, report.idle]
    for model, (nodes, _) in NODES.items():
        assert sum(r.gpu_hours.get(model, 0.0) for r in rows) == pytest.approx(nodes * 8 * elapsed, rel=1e-9), model
    capacity_kwh = sum(nodes * kw for nodes, kw in NODES.values()) * elapsed
    assert sum(r.it_kwh for r in rows) == pytest.approx(capacity_kwh, rel=1e-9)
    assert report.total.it_kwh == pytest.approx(capacity_kwh, rel=1e-9)


def test_a_job_without_gpus_on_gpu_nodes_pays_cpu_hours_and_takes_no_gpu_share(two_models):
    cpu_only = "1|acme-ai|batch|2026-11-02T10:00:00|2026-11-02T12:00:00|cpu=16,mem=64G,node=1|36000000|"
    report = _report(two_models, jobs=[cpu_only])
    acme = {r.name: r for r in report.tenants}["acme-ai"]
    assert acme.cpu_hours == 32 and acme.gpu_hours == {} and acme.it_kwh == 0
    assert report.idle.gpu_hours == {"h200": 80 * 8 * 720, "b200": 16 * 8 * 720}


def test_a_job_on_nodes_of_two_gpu_models_counts_each_models_gpus_once(two_models):
    both = ("1|acme-ai|batch|2026-11-02T10:00:00|2026-11-02T12:00:00|"
            "cpu=448,gres/gpu:b200=8,gres/gpu:h200=4,gres/gpu=12,mem=120G,node=2||")
    report = _report(two_models, jobs=[both])
    acme = {r.name: r for r in report.tenants}["acme-ai"]
    assert acme.jobs == 1 and acme.gpu_hours == {"b200": 16.0, "h200": 8.0} and acme.cpu_hours == pytest.approx(896)
    assert acme.energy_kwh["estimated"] == pytest.approx(11.0 * 2 + 10.2 / 2 * 2)
    assert report.idle.gpu_hours == {"h200": 80 * 8 * 720 - 8, "b200": 16 * 8 * 720 - 16}
    # a record of more GPUs than its nodes hold: the estimate is the GPUs' share of as many nodes as they fill
    crowded = "2|acme-ai|batch|2026-11-02T10:00:00|2026-11-02T12:00:00|cpu=8,gres/gpu:h200=16,gres/gpu=16,node=1||"
    assert {r.name: r for r in _report(two_models, jobs=[crowded]).tenants}["acme-ai"].it_kwh == pytest.approx(10.2 * 2 * 2)


def test_a_period_not_over_counts_up_to_now(site):
    """On the 6th of November at 00:00, five days have passed: the idle line holds five days, a running job five
    days less its start."""
    period = parse_period("2026-11", "Europe/Riga")
    now = period.start + 5 * 86400
    running = "3|univ-latvia|batch|2026-11-04T00:00:00|Unknown|cpu=16,gres/gpu:h200=2,gres/gpu=2,mem=128G,node=1||"
    report = usage_report(site, period, read_sacct([HEADER, running], "Europe/Riga"), now=now)
    assert report.total.gpu_hours == {"h200": 96 * 8 * 5 * 24}
    assert {r.name: r for r in report.tenants}["univ-latvia"].gpu_hours == {"h200": 2 * 2 * 24}
    assert report.idle.it_kwh == pytest.approx(96 * 10.2 * 5 * 24 - 10.2 * 2 / 8 * 2 * 24)


def test_cli_counts_a_period_to_its_clock(riga, tmp_path):
    out = _cli(tmp_path, with_billing(riga), "--period", "2099-01", "--format", "json", sacct=HEADER + "\n")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["idle"]["gpu_hours"] == {"h200": 0.0}


def test_a_year_is_the_sum_of_its_months_and_its_pue_facility_over_it_energy(riga):
    """Months declare different PUEs (two none: the design PUE): the year's facility energy, costs and idle line
    are its months' sums, and its PUE is annual facility energy over annual IT energy, not a mean of PUEs."""
    data = with_billing(riga)
    data["energy"]["pue"] = [{"period": f"2026-{m:02d}", "pue": 1.1 + m / 40} for m in range(1, 11)]
    site = validate_data(data)
    rng = random.Random(7)
    year = parse_period("2026", "Europe/Riga")
    jobs = []
    for job in range(1, 300):
        start = int(year.start + rng.uniform(0, 365) * 86400)
        gpus = rng.choice((1, 8, 16))
        jobs.append(f"{job}|{rng.choice(('acme-ai', 'univ-latvia'))}|batch|{start}|{start + rng.randint(60, 9 * 86400)}|"
                    f"cpu={28 * gpus},gres/gpu:h200={gpus},gres/gpu={gpus},mem=64G,node={max(1, gpus // 8)}|"
                    f"{rng.choice(('', str(rng.randint(1, 10 ** 9))))}|")
    whole = usage_report(site, year, read_sacct([HEADER, *jobs], "Europe/Riga"))
    months = [usage_report(site, parse_period(f"2026-{m:02d}", "Europe/Riga"), read_sacct([HEADER, *jobs], "Europe/Riga"))
              for m in range(1, 13)]
    assert whole.total.facility_kwh == pytest.approx(sum(m.total.facility_kwh for m in months), rel=1e-9)
    assert whole.total.total == pytest.approx(sum(m.total.total for m in months), rel=1e-9)
    for name in ("acme-ai", "univ-latvia"):
        assert ({r.name: r for r in whole.tenants}[name].total
                == pytest.approx(sum({r.name: r for r in m.tenants}[name].total for m in months), rel=1e-9))
    assert whole.idle.gpu_hours["h200"] == pytest.approx(sum(m.idle.gpu_hours["h200"] for m in months), rel=1e-9)
    site_lines = (whole.total, whole.unmetered)                         # the site's PUE: every host of it
    assert whole.pue == pytest.approx(sum(r.facility_kwh for r in site_lines) / sum(r.it_kwh for r in site_lines),
                                      rel=1e-12)
    assert whole.pue != pytest.approx(sum(e["pue"] for e in data["energy"]["pue"]) / 10, rel=1e-6)
    assert whole.pue_source == "energy.pue and site.site.power.pue"


# --- EED: every host of the site file, energy reuse and water --------------------------------------------------------

def test_cli_eed_counts_every_host_of_the_site_and_the_facility_meters(riga, tmp_path):
    """Slurm's 96 nodes from accounting (idle: at their rating), the 32 Kubernetes workers and 11 control, storage
    and service hosts no meter covers at their power ratings; energy reuse and water from energy.facility."""
    data = with_billing(riga)
    data["energy"]["facility"] = [{"period": "2025", "reused_kwh": 1.0e6}] + [
        {"period": f"2025-{m:02d}", "water_m3": 100.0} for m in range(1, 13)]
    out = _cli(tmp_path, data, "--eed", "2025", "--format", "json", sacct=HEADER + "\n")
    assert out.returncode == 0, out.stderr
    eed = json.loads(out.stdout)
    other = (32 * 10.2 + 11 * 0.8) * 8760
    assert eed["other_hosts"] == 43 and eed["it_energy_other_hosts_kwh"] == pytest.approx(other)
    assert eed["it_energy_kwh"] == pytest.approx(96 * 10.2 * 8760 + other)
    assert eed["total_energy_kwh"] == pytest.approx(eed["it_energy_kwh"] * 1.2)            # no PUE for 2025: design
    assert eed["energy_reuse_factor"] == pytest.approx(1.0e6 / eed["total_energy_kwh"])
    assert eed["water_usage_effectiveness_l_per_kwh"] == pytest.approx(1200 * 1000 / eed["it_energy_kwh"])
    assert "potable water input (m³)" in eed["not_in_site_file"]
    data["energy"]["facility"].pop()                                    # December's water missing: no year's figure
    out = _cli(tmp_path, data, "--eed", "2025", sacct=HEADER + "\n")
    assert out.returncode == 0 and "water input (m³)                not declared (energy.facility)" in out.stdout


@pytest.mark.parametrize("entry, field", [
    ({"period": "2025", "water_m3": -1.0}, "energy.facility[0].water_m3"),
    ({"period": "2025", "reused_kwh": float("nan")}, "energy.facility[0].reused_kwh"),
    ({"period": "2025", "reused_kwh": float("inf")}, "energy.facility[0].reused_kwh"),
    ({"period": "25", "water_m3": 1.0}, "energy.facility[0].period"),
])
def test_facility_meters_are_bounded_numbers(riga, entry, field):
    data = with_billing(riga)
    data["energy"]["facility"] = [entry]
    with pytest.raises(SiteInvalid) as err:
        validate_data(data)
    assert field in str(err.value)
