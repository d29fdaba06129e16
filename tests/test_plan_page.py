"""The plan's page (`gigafactory plan SITE --html FILE`) opened in headless Debian Chromium as a person would: it
loads from disk without a single network request or console message, and what it draws (racks, hosts per pool,
NVLink domains, switches, power domains, tenants) is the plan's. One browser for the module."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from infra.cli import main
from infra.plan import site_and_plan
from infra.render.page_plan import plan_page, rack_drawings

from browser import CHROMIUM_MISSING, Browser

REPO = Path(__file__).resolve().parents[1]
RIGA = REPO / "inventories/riga-1/site.yml"
NVL72 = REPO / "inventories/nvl72-gigafactory/site.yml"

pytestmark = pytest.mark.skipif(CHROMIUM_MISSING is not None, reason=CHROMIUM_MISSING or "")

# Each pool's hosts as drawn, a shared drawing counting once per rack it stands for.
HOSTS_PER_POOL = """const out = {};
for (const r of document.querySelectorAll('[data-host]')) {
  const n = Number(r.closest('figure').dataset.racks);
  out[r.dataset.pool] = (out[r.dataset.pool] || 0) + n;
}
return out;"""
RACKS_DRAWN = "return [...document.querySelectorAll('figure[data-racks]')].map(f => Number(f.dataset.racks))"
NVLINK_DRAWN = """let n = 0;
for (const o of document.querySelectorAll('[data-nvlink]')) n += Number(o.closest('figure').dataset.racks);
return n;"""
SWITCHES = "return Object.fromEntries([...document.querySelectorAll('[data-switch-role]')].map(g => [g.dataset.switchRole, Number(g.dataset.count)]))"
ROWS = "return [...document.querySelectorAll(arguments[0])].map(e => e.getAttribute(arguments[1]))"


@pytest.fixture(scope="module")
def browser():
    with Browser() as b:
        yield b


def _page(site_path: Path, out: Path) -> Path:
    page = out / f"{site_path.parent.name}.html"
    assert main(["plan", str(site_path), "--html", str(page)]) == 0
    return page


def _assert_quiet(visit) -> None:
    assert visit.other_requests == []
    assert visit.console == ()


def _assert_drawn(browser: Browser, site, plan) -> None:
    """Hosts per pool, racks, NVLink domains, switches, power domains and tenants: as the plan has them."""
    assert browser.script(HOSTS_PER_POOL) == {p.name: len(p.hosts) for p in site.pools}
    assert sum(browser.script(RACKS_DRAWN)) == len(plan.racks)
    assert browser.script(NVLINK_DRAWN) == len(plan.domains)
    assert browser.script(SWITCHES) == {role: n for f in plan.fabrics for role, n in f.switches.items() if n}
    assert browser.script(ROWS, "[data-power-domain]", "data-power-domain") == [d.name for d in plan.power.domains]
    assert browser.script(ROWS, "[data-tenant]", "data-tenant") == [t.name for t in site.tenants]


def test_riga_1_page_draws_every_rack_and_host_of_the_plan(browser, tmp_path):
    site, plan = site_and_plan(str(RIGA))
    visit = browser.open(_page(RIGA, tmp_path))
    _assert_quiet(visit)
    browser.screenshot(tmp_path / "riga-1.png")
    assert (tmp_path / "riga-1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert browser.script(RACKS_DRAWN) == [1] * len(plan.racks)          # each rack its own drawing
    assert browser.script(ROWS, "figure[data-racks]", "data-liquid-kw") == [None] * len(plan.racks)   # no cooling declared
    _assert_drawn(browser, site, plan)
    hosts = browser.script(ROWS, "[data-host]", "data-host")
    assert sorted(hosts) == sorted(plan.hosts)
    units = dict(zip(hosts, map(int, browser.script(ROWS, "[data-host]", "data-unit")), strict=True))
    assert units == {h.name: h.rack_unit for h in plan.hosts.values()}


def test_nvl72_page_summarises_1400_racks_in_groups(browser, tmp_path):
    site, plan = site_and_plan(str(NVL72))
    visit = browser.open(_page(NVL72, tmp_path))
    _assert_quiet(visit)
    groups = browser.script(RACKS_DRAWN)
    assert groups == [len(d.names) for d in rack_drawings(site, plan)]
    assert len(groups) == 7 and groups[:5] == [350, 350, 350, 150, 200]
    _assert_drawn(browser, site, plan)
    names = browser.script(ROWS, "figure[data-racks]", "data-rack-names")
    assert names[0] == "n[0001-0350]"
    # cooling, where the racks declare it (every NVL72 rack: 125 kW liquid, 30 kW air): each drawing's heat as placed
    first = plan.racks["n0001"]
    liquid = browser.script(ROWS, "figure[data-racks]", "data-liquid-kw")
    assert len(liquid) == len(groups) and float(liquid[0]) == pytest.approx(first.used.liquid_kw)
    assert browser.script(ROWS, "figure[data-racks]", "data-liquid-limit-kw")[0] == "125.0"
    assert float(browser.script(ROWS, "figure[data-racks]", "data-air-kw")[0]) == pytest.approx(first.used.air_kw)


def test_hostile_strings_stay_text(browser, tmp_path):
    """A script in the operator (valid single-line text) and, past the model, in a pool's name and an attribute
    breaker in a host's: shown as text, no element, no attribute, nothing run."""
    data = yaml.safe_load(RIGA.read_text())
    data["site"]["operator"] = "<script>document.title='owned'</script><img src=x onerror=alert(1)>"
    hostile_site = tmp_path / "site.yml"
    hostile_site.write_text(yaml.safe_dump(data))
    site, plan = site_and_plan(str(hostile_site))
    pool, evil = site.pools[0].name, "<script>alert(1)</script>"
    site = site.model_copy(update={"pools": [p.model_copy(update={"name": evil}) if p.name == pool else p
                                             for p in site.pools]})
    first = next(h for h in plan.hosts.values() if h.pool == pool)
    hosts = {n: dataclasses.replace(h, pool=evil, name='x" onmouseover="alert(1)') if n == first.name
             else dataclasses.replace(h, pool=evil) if h.pool == pool else h for n, h in plan.hosts.items()}
    plan = dataclasses.replace(plan, hosts=hosts)
    page = tmp_path / "hostile.html"
    page.write_text(plan_page(site, plan))
    assert "<script>" not in page.read_text() and "<img" not in page.read_text()
    _assert_quiet(browser.open(page))
    assert browser.script("return document.title") == f"{site.site.name}: the plan"
    assert browser.script("return document.querySelectorAll('script, img, [onmouseover], [onerror]').length") == 0
    assert "<script>document.title='owned'</script>" in browser.script("return document.body.innerText")
    assert browser.script(ROWS, "[data-legend-pool]", "data-legend-pool")[0] == evil
    assert 'x" onmouseover="alert(1)' in browser.script(ROWS, "[data-host]", "data-host")


def test_html_file_that_cannot_be_written_is_exit_2_naming_html(tmp_path, capsys):
    target = tmp_path / "missing" / "plan.html"
    assert main(["plan", str(RIGA), "--html", str(target)]) == 2
    err = capsys.readouterr().err
    assert "--html" in err and str(target) in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
