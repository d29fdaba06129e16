"""The usage page (`gigafactory usage SITE --period P --html FILE`) opened in headless Debian Chromium as a person
would: no network request, no console message, and every number it shows per tenant line (GPU-hours per model,
IT and facility energy, renewable energy, cost) the one `--format json` prints for the same input; the days' bars
add up to the month's GPU-hours. One browser for the module."""

from __future__ import annotations

import json
import random

import pytest
import yaml
from conftest import ROOT
from metering_data import with_two_gpu_models

from infra import cli
from infra.usage import parse_period
from infra.usage.periods import period_days

from browser import CHROMIUM_MISSING, Browser
from test_usage import HEADER, _edge_case_jobs

# October 2025 in Riga: 31 days, the 26th of 25 hours (the clock goes back); over, so the clock does not matter.
PERIOD = "2025-10"
EVIL = "<script>document.title='owned'</script><img src=x onerror=alert(1)>"

needs_chromium = pytest.mark.skipif(CHROMIUM_MISSING is not None, reason=CHROMIUM_MISSING or "")

LINES = """return [...document.querySelectorAll('tr[data-line]')].map(tr => ({
  line: tr.dataset.line, jobs: Number(tr.dataset.jobs), it: Number(tr.dataset.itKwh),
  facility: Number(tr.dataset.facilityKwh), renewable: Number(tr.dataset.renewableKwh),
  total: tr.dataset.total === undefined ? null : Number(tr.dataset.total),
  gpu: Object.fromEntries([...tr.querySelectorAll('[data-gpu-model]')].map(td => [td.dataset.gpuModel, Number(td.dataset.gpuHours)]))}))"""
BARS = """return [...document.querySelectorAll('section[data-line]')].map(s => [s.dataset.line,
  [...s.querySelectorAll('rect[data-day]')].map(r => [r.dataset.day, r.dataset.model, Number(r.dataset.gpuHours)])])"""


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM_MISSING is not None:
        pytest.skip(CHROMIUM_MISSING)
    with Browser() as b:
        yield b


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    """riga-1 with two GPU models and billing, a month of generated edge-case jobs (an account no tenant declares
    among them, and one whose name is a script); the page and the JSON of one input."""
    tmp = tmp_path_factory.mktemp("usage-page")
    site = tmp / "site.yml"
    site.write_text(yaml.safe_dump(with_two_gpu_models(yaml.safe_load((ROOT / "inventories/riga-1/site.yml").read_text()))))
    jobs = _edge_case_jobs(random.Random(5), parse_period(PERIOD, "Europe/Riga"))
    jobs.append(f"9001|{EVIL}|batch|2025-10-26T01:00:00|2025-10-26T05:00:00|cpu=16,gres/gpu:h200=2,gres/gpu=2,mem=64G,node=1||")
    sacct = tmp / "sacct.txt"
    sacct.write_text("\n".join([HEADER, *jobs]) + "\n")
    page = tmp / "usage.html"
    args = ["usage", str(site), "--period", PERIOD, "--sacct", str(sacct)]
    assert cli.main([*args, "--html", str(page)]) == 0
    return page, args


def _json(args, capsys) -> dict:
    capsys.readouterr()
    assert cli.main([*args, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def _lines(data: dict) -> list[dict]:
    return [*data["tenants"], data["idle"], data["total"]]


@needs_chromium
def test_every_line_shows_the_json_numbers(browser, month, capsys, tmp_path):
    page, args = month
    data = _json(args, capsys)
    visit = browser.open(page)
    assert visit.other_requests == [] and visit.console == ()
    browser.screenshot(tmp_path / "usage.png")
    assert (tmp_path / "usage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shown = browser.script(LINES)
    lines = _lines(data)
    assert [s["line"] for s in shown] == [line["tenant"] for line in lines]
    assert len(lines) == 7 and lines[3]["tenant"] == "account:lab-x" and lines[4]["tenant"] == f"account:{EVIL}"
    models = sorted({m for line in lines for m in line["gpu_hours"]})
    assert models == ["b200", "h200"]
    for s, line in zip(shown, lines, strict=True):
        assert s["gpu"] == {m: line["gpu_hours"].get(m, 0.0) for m in models}, line["tenant"]
        assert s["jobs"] == line["jobs"]
        assert s["it"] == pytest.approx(sum(line["it_energy_kwh"].values()), abs=1e-9)
        assert (s["facility"], s["renewable"], s["total"]) == (line["facility_energy_kwh"], line["renewable_kwh"],
                                                                line["total"]), line["tenant"]


@needs_chromium
def test_the_days_bars_add_up_to_the_months_gpu_hours(browser, month, capsys):
    page, args = month
    data = _json(args, capsys)
    browser.open(page)
    charts = dict(browser.script(BARS))
    days = data["days"]
    assert len(days) == 31 and days[0] == "2025-10-01" and days[-1] == "2025-10-31"
    for line in _lines(data):
        bars = charts[line["tenant"]]
        for model, hours in line["gpu_hours"].items():
            drawn = {day: h for day, m, h in bars if m == model}
            assert sum(drawn.values()) == pytest.approx(hours, abs=1e-4), (line["tenant"], model)
            assert drawn == {day: h for day, h in zip(days, line["gpu_hours_by_day"][model], strict=True) if h > 0}
    # the total is the capacity: every day, 25 hours on the 26th (80 H200 and 16 B200 nodes of 8 GPUs)
    total = {(day, m): h for day, m, h in charts["(total)"]}
    assert total[("2025-10-25", "h200")] == 80 * 8 * 24 and total[("2025-10-26", "h200")] == 80 * 8 * 25
    assert total[("2025-10-26", "b200")] == 16 * 8 * 25 and len(total) == 2 * 31


@needs_chromium
def test_a_hostile_account_name_is_shown_as_text(browser, month):
    page, _ = month
    assert "<script>" not in page.read_text() and "<img" not in page.read_text()
    browser.open(page)
    assert browser.script("return document.title") == f"riga-1: usage {PERIOD}"
    assert browser.script("return document.querySelectorAll('script, img, [onerror]').length") == 0
    lines = [s["line"] for s in browser.script(LINES)]
    assert f"account:{EVIL}" in lines
    assert f"account:{EVIL}" in browser.script("return document.body.innerText")


def test_days_follow_the_billing_clock():
    days = period_days(parse_period(PERIOD, "Europe/Riga"))
    firsts = dict(days)
    assert len(days) == 31 and firsts["2025-10-26"] == 25 * 24 and firsts["2025-10-27"] == 25 * 24 + 25
    assert [d for d, _ in period_days(parse_period("2024", "Europe/Riga"))][59] == "2024-02-29"


def test_an_unwritable_html_is_exit_2_naming_html_and_writes_nothing(month, tmp_path, capsys):
    _, args = month
    target = tmp_path / "missing" / "usage.html"
    assert cli.main([*args, "--html", str(target)]) == 2
    err = capsys.readouterr().err
    assert "--html" in err and str(target) in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
    assert cli.main(["usage", args[1], "--eed", "2025", "--sacct", args[-1], "--html", str(tmp_path / "x.html")]) == 2
    assert "--html" in capsys.readouterr().err and list(tmp_path.iterdir()) == []
