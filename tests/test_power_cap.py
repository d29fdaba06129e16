"""`gigafactory power SITE --cap PERCENT [--domain NAME]` (issue 26): the capped limits (infra/site/power.py's
cap_power), the node program honouring, refusing and dropping a cap file (with the nvidia-smi stand-in), node_health's
gate at the capped value, and the command end to end through ansible-runner on `connection: local` hosts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, site_data
from metering_data import with_billing
from test_usage import HEADER, JOBS
from test_gpu_power_role import PLANNED_W, apply, exec_start, gate, hall_site, standin_env
from test_power_tree import NVL72
from infra.plan import build_plan
from infra.site.index import SiteIndex
from infra.site.load import validate_data
from infra.site.power import FACILITY, CapRefused, site_power_cap, switch_trays_kw
from infra.usage import parse_period, read_sacct, usage_report
from infra.usage.render import as_json, as_table

ROW_HOSTS = ["gpu0001", "gpu0002", "gpu0003", "gpu0004"]   # rack a01: riga-1 places 4 H200 servers per 45 kW rack


def row_site() -> dict:
    """riga-1's a-racks in hall-a of 1,000 kW (H200s planned at 401 W), rack a01 alone in row-a1 of 45 kW under it."""
    data = hall_site()
    a = data["racks"][0]
    data["racks"][0:1] = [{**a, "names": "a01", "domain": "row-a1"}, {**a, "names": "a[02-32]"}]
    data["site"]["power"]["domains"].append({"name": "row-a1", "kw": 45, "parent": "hall-a"})
    return data


def cpu_row_site() -> dict:
    """row_site with the b-racks (the control pool's CPU hosts) in cpu-row of 40 kW: a domain without GPUs."""
    data = row_site()
    data["racks"][-1]["domain"] = "cpu-row"
    data["site"]["power"]["domains"].append({"name": "cpu-row", "kw": 40})
    return data


def cap_of(data: dict, domain: str, percent: float):
    site = validate_data(data)
    return site, build_plan(site), site_power_cap(SiteIndex(site), domain, percent)


def drawn_kw(site, plan, hosts, limits: dict[str, int]) -> float:
    """The hosts' worst case at ``limits`` (each GPU at its limit), recomputed host by host (NVLink trays included)."""
    total, per_type = 0.0, {}
    for host in hosts:
        nt = site.node_types[plan.hosts[host].node_type]
        total += nt.power_kw - nt.gpu.count * (nt.gpu.power_limit_w.max - limits[plan.hosts[host].node_type]) / 1000
        per_type[plan.hosts[host].node_type] = per_type.get(plan.hosts[host].node_type, 0) + 1
    return total + sum(switch_trays_kw(site.node_types[t], n) for t, n in per_type.items())


# --- the arithmetic -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "data", "domains"), [
    ("riga-1", row_site, [FACILITY, "hall-a", "row-a1"]),
    ("nvl72", lambda: site_data(NVL72), [FACILITY, "hall-1"]),
], ids=["riga-1", "nvl72-gigafactory"])
def test_a_cap_of_100_gives_back_the_planned_limits(path, data, domains):
    for domain in domains:
        site, plan, cap = cap_of(data(), domain, 100)
        assert cap.limits_w == plan.power.limits_w, domain
        assert cap.hosts and all(plan.hosts[h].node_type in plan.power.limits_w for h in cap.hosts)


def test_a_lower_cap_lowers_only_the_domains_subtree_and_holds_its_share():
    site, plan, cap = cap_of(row_site(), "row-a1", 60)
    assert sorted(cap.hosts) == ROW_HOSTS                     # not gpu0005.. in hall-a, not the CPU hosts
    # 4 x (10.2 - 8 x 0.7) + 4 x 8 x 0.2 = 24.8 kW at 200 W; 60 % of 45 kW = 27 kW: t = 2.2 / 16, 268 W
    assert (cap.fixed_kw, cap.allowed_kw, cap.limits_w) == (24.8, 27, {"hgx-h200": 268})
    assert drawn_kw(site, plan, ROW_HOSTS, cap.limits_w) <= 27 < drawn_kw(site, plan, ROW_HOSTS, {"hgx-h200": 269})
    _, _, hall = cap_of(row_site(), "hall-a", 90)              # the hall's subtree holds its row
    assert set(ROW_HOSTS) < set(hall.hosts) and len(hall.hosts) == 128 and hall.limits_w["hgx-h200"] < PLANNED_W


def test_the_facility_cap_takes_every_gpu_host():
    site, plan, cap = cap_of(row_site(), FACILITY, 50)
    gpu_hosts = sorted(h for h, hp in plan.hosts.items() if hp.node_type == "hgx-h200")
    assert sorted(cap.hosts) == gpu_hosts and cap.allowed_kw == round(0.5 * 2200 / 1.2, 3)
    assert drawn_kw(site, plan, gpu_hosts, cap.limits_w) + cap.fixed_kw - drawn_kw(site, plan, gpu_hosts, {"hgx-h200": 200}) \
        <= cap.allowed_kw


def test_reference_site_hall_cap():
    site, plan, cap = cap_of(site_data(NVL72), "hall-1", 90)
    assert len(cap.hosts) == 350 * 18 and cap.limits_w == {"gb300": 1151}
    assert drawn_kw(site, plan, cap.hosts, cap.limits_w) <= cap.allowed_kw == 43200
    assert drawn_kw(site, plan, cap.hosts, {"gb300": 1152}) > 43200


@pytest.mark.parametrize(("domain", "percent", "said"), [
    ("row-a1", 50, "--cap: power domain 'row-a1' needs 24.8 kW with every GPU at its minimum power limit, more than "
                   "the 22.5 kW a cap of 50 % of its 45 kW allows"),
    (FACILITY, 30, "--cap: the facility needs 887.4 kW with every GPU at its minimum power limit, more than the 550 kW "
                   "a cap of 30 % of its 1833.33 kW of IT power (facility_kw / pue) allows"),
    ("hall-z", 50, "--domain: 'hall-z' is not a power domain of the site (site.power.domains): facility, hall-a, row-a1"),
    ("row-\x1b[31m", 50, "--domain: 'row-\\x1b[31m' is not a power domain"),
    ("row-a1", 0, "--cap: 0 is not a percentage from 1 to 100"),
    ("row-a1", 101, "--cap: 101 is not a percentage from 1 to 100"),
    ("row-a1", float("nan"), "--cap: nan is not a percentage from 1 to 100"),
], ids=["under-minimum", "facility-under-minimum", "unknown-domain", "hostile-domain", "zero", "over-100", "nan"])
def test_a_cap_the_tree_cannot_take_is_refused_naming_the_option(domain, percent, said):
    with pytest.raises(CapRefused) as refused:
        cap_of(row_site(), domain, percent)
    assert str(refused.value).startswith(said), str(refused.value)


@pytest.mark.parametrize("percent", [1, 50, 100])
def test_a_domain_that_feeds_no_gpu_host_with_a_range_is_refused_naming_the_domain(percent):
    with pytest.raises(CapRefused) as refused:
        cap_of(cpu_row_site(), "cpu-row", percent)
    assert str(refused.value) == ("--domain: power domain 'cpu-row' feeds no GPU host with a power-limit range "
                                  "(gpu.power_limit_w): nothing to cap"), str(refused.value)


# --- the node program and the gate ----------------------------------------------------------------------------------

def write_cap(out: Path, name: str = "row-a1.json", **fields) -> Path:
    """A cap file in the installed caps directory (``name``: its file name; by default the domain's own)."""
    cap = out / "etc" / "gpu-power-cap.d" / name
    cap.parent.mkdir(exist_ok=True)
    cap.write_text(json.dumps({"limit_w": 268, "percent": 60, "domain": name.removesuffix(".json"), "at": 1765000000,
                               **fields}))
    return cap


@pytest.fixture(scope="module")
def applied_here(tmp_path_factory) -> Path:
    return apply(tmp_path_factory.mktemp("power-cap-role"), hall_site())[0]


@pytest.fixture
def installed(applied_here) -> Path:
    """The role applied for gpu0001 in a scratch directory of this module's (the caps directory is the test's to
    fill, removed after it)."""
    yield applied_here
    shutil.rmtree(applied_here / "etc" / "gpu-power-cap.d", ignore_errors=True)


def run_unit(out: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(exec_start(out), env=env, capture_output=True, text=True)


def test_the_program_honours_a_lower_cap_the_gate_accepts_it_and_lifting_it_restores_the_plan(installed, tmp_path):
    env = standin_env(tmp_path)
    cap = write_cap(installed)
    result = run_unit(installed, env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "gigafactory-gpu-power: 4 GPUs at 268 W"
    assert json.loads(lines[0].removeprefix("gigafactory-gpu-power: cap ")) == {
        "at": 1765000000, "domain": "row-a1", "percent": 60, "limit_w": 268, "planned_w": PLANNED_W, "gpus": 4}
    calls = [json.loads(line) for line in (tmp_path / "smi" / "calls").read_text().splitlines()]
    assert [c[-1] for c in calls if "-pl" in c] == ["268"] * 4
    assert gate(tmp_path, env, cap.parent)[1] == {"name": "gpu_power_limit", "passed": True,
                                                  "detail": "planned 401 W, capped to 268 W, 4 GPUs at it"}
    # the same GPUs without the cap (a cap being lifted: its file removed, the GPUs not yet up): below the plan, safe
    assert gate(tmp_path, env)[1] == {"name": "gpu_power_limit", "passed": True,
                                      "detail": "planned 401 W, 4 GPUs at or below it"}
    cap.unlink()
    assert run_unit(installed, env).stdout == f"gigafactory-gpu-power: 4 GPUs at {PLANNED_W} W\n"
    assert gate(tmp_path, env, cap.parent)[1]["passed"]        # an empty caps directory: no cap
    # GPUs above the cap the files say (a cap's file in before the GPUs came down): over the budget, the gate fails
    write_cap(installed)
    status, check = gate(tmp_path, env, cap.parent)
    assert status == 1 and check["detail"].startswith("planned 401 W, capped to 268 W, GPU 0 at 401.00 W"), check


def test_nested_caps_the_lowest_holds_and_lifting_one_leaves_the_other(installed, tmp_path):
    """row-a1 at 60 % (268 W) inside hall-a at 90 % (303 W): 268 W whichever came last; hall-a lifted, row-a1's cap
    still holds; row-a1 lifted, hall-a's."""
    env = standin_env(tmp_path)
    row = write_cap(installed)
    hall = write_cap(installed, "hall-a.json", limit_w=303, percent=90)
    result = run_unit(installed, env)
    assert result.stdout.splitlines()[-1] == "gigafactory-gpu-power: 4 GPUs at 268 W", result.stdout + result.stderr
    assert json.loads(result.stdout.splitlines()[0].removeprefix("gigafactory-gpu-power: cap "))["domain"] == "row-a1"
    assert gate(tmp_path, env, row.parent)[1]["detail"] == "planned 401 W, capped to 268 W, 4 GPUs at it"
    hall.unlink()
    assert run_unit(installed, env).stdout.splitlines()[-1] == "gigafactory-gpu-power: 4 GPUs at 268 W"
    hall = write_cap(installed, "hall-a.json", limit_w=303, percent=90)
    row.unlink()
    assert run_unit(installed, env).stdout.splitlines()[-1] == "gigafactory-gpu-power: 4 GPUs at 303 W"
    assert gate(tmp_path, env, hall.parent)[1]["passed"]
    # a copy in flight (Ansible's atomic move writes a hidden temporary beside its file) is not a cap, nor refused
    (hall.parent / ".ansible_tmp3k2row-a1.json").write_text('{"limit_w": 2')
    assert run_unit(installed, env).stdout.splitlines()[-1] == "gigafactory-gpu-power: 4 GPUs at 303 W"


def test_a_cap_above_the_plan_leaves_the_planned_limit(installed, tmp_path):
    write_cap(installed, limit_w=650, percent=99)
    result = run_unit(installed, standin_env(tmp_path))
    assert result.returncode == 0 and result.stdout.splitlines()[-1] == f"gigafactory-gpu-power: 4 GPUs at {PLANNED_W} W"


@pytest.mark.parametrize(("name", "text"), [
    ("row-a1.json", "{"), ("row-a1.json", "[]"), ("row-a1.json", '{"limit_w": 268}'),
    ("row-a1.json", '{"limit_w": "268", "percent": 60, "domain": "row-a1", "at": 1}'),
    ("row-a1.json", '{"limit_w": 268, "percent": 60, "domain": "row-a1\\nEVIL", "at": 1}'),
    ("row-a1.json", '{"limit_w": 268, "percent": 0, "domain": "row-a1", "at": 1}'),
    ("row-a1.json", '{"limit_w": 268, "percent": 500, "domain": "row-a1", "at": 1}'),
    ("row-a1.json", '{"limit_w": 268, "percent": NaN, "domain": "row-a1", "at": 1}'),
    ("row-a1.json", '{"limit_w": true, "percent": 60, "domain": "row-a1", "at": 1}'),
    ("hall-a.json", '{"limit_w": 268, "percent": 60, "domain": "row-a1", "at": 1}'),
    ("row-a1.json.bak", '{"limit_w": 268, "percent": 60, "domain": "row-a1", "at": 1}'),
    ("Row-A1.json", '{"limit_w": 268, "percent": 60, "domain": "row-a1", "at": 1}'),
    ("row-a1.json\x1b[31m", '{"limit_w": 268, "percent": 60, "domain": "row-a1", "at": 1}'),
], ids=["broken-json", "a-list", "fields-missing", "watts-as-text", "hostile-domain", "zero-percent", "percent-500",
        "percent-nan", "a-boolean", "another-domains-file", "unexpected-name", "not-a-site-name", "hostile-name"])
def test_a_malformed_cap_is_refused_like_a_malformed_plan_and_fails_the_gate(installed, tmp_path, name, text):
    cap = installed / "etc" / "gpu-power-cap.d" / name
    cap.parent.mkdir(exist_ok=True)
    cap.write_text(text)
    env = standin_env(tmp_path)
    result = run_unit(installed, env)
    assert result.returncode == 2 and result.stderr.startswith(f"gigafactory-gpu-power: {cap.parent}/"), result.stderr
    assert "\x1b" not in result.stderr
    assert not (tmp_path / "smi" / "calls").exists()           # nothing set, nothing read
    status, check = gate(tmp_path, env, cap.parent)            # the gate asks the program: what it refuses fails it
    assert status == 1 and not check["passed"] and check["detail"].startswith(
        f"planned 401 W, the power caps in {cap.parent} are refused: gigafactory-gpu-power: {cap.parent}/"), check
    assert "\x1b" not in check["detail"]


# --- the command, end to end ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """A site file (cpu_row_site), a connection inventory of local hosts whose program, files and nvidia-smi stand-in
    live in ``scratch/<host>/``, and the planned limit written there as the role's configure part would."""
    root = tmp_path_factory.mktemp("power-cap")
    (root / "site.yml").write_text(yaml.safe_dump(cpu_row_site()))
    for host in [*ROW_HOSTS, "gpu0005"]:
        (root / host / "smi").mkdir(parents=True)
        (root / host / "gpu-power.json").write_text(json.dumps({"limit_w": PLANNED_W}))
        smi = root / host / "nvidia-smi"
        # each -pl call also notes which caps were in the directory then (a reader's view while the GPUs move)
        smi.write_text(f"#!/bin/sh\ncase \"$*\" in *-pl*) ls {root / host / 'gpu-power-cap.d'} | tr '\\n' ' ' "
                       f">> {root / host / 'seen'}; echo >> {root / host / 'seen'};; esac\n"
                       f"NVIDIA_SMI_STANDIN={root / host / 'smi'} exec {sys.executable} "
                       f"{ROOT / 'tests' / 'nvidia_smi_power_standin.py'} \"$@\"\n")
        smi.chmod(0o755)
    at = f"{root}/{{{{ inventory_hostname }}}}"
    (root / "local.yml").write_text(yaml.safe_dump({"all": {"vars": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "gpu_power_program": str(ROOT / "playbooks/roles/gpu_power/files/gigafactory-gpu-power"),
        "gpu_power_file": f"{at}/gpu-power.json", "gpu_power_caps_dir": f"{at}/gpu-power-cap.d",
        "gpu_power_nvidia_smi": f"{at}/nvidia-smi"}}}))
    return root


def gigafactory(root: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "infra.cli", "power", "site.yml", "-i", "local.yml", *argv], cwd=root,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=300)


def smi_calls(root: Path, host: str) -> list[list[str]]:
    calls = root / host / "smi" / "calls"
    return [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []


def events(root: Path) -> list[dict]:
    path = root / "runs" / "riga-1" / "power-events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize(("argv", "said"), [
    (["--cap", "60", "--domain", "hall-z"], "error: --domain: 'hall-z' is not a power domain"),
    (["--cap", "60", "--domain", "row-\x1b]0;x\x07"], "error: --domain: 'row-\\x1b]0;x\\x07' is not a power domain"),
    (["--cap", "0", "--domain", "row-a1"], "error: --cap: 0 is not a percentage from 1 to 100"),
    (["--cap", "101", "--domain", "row-a1"], "error: --cap: 101 is not a percentage from 1 to 100"),
    (["--cap", "abc", "--domain", "row-a1"], "error: --cap: 'abc' is not a percentage from 1 to 100"),
    (["--cap", "NaN", "--domain", "row-a1"], "error: --cap: 'NaN' is not a percentage from 1 to 100"),
    (["--cap", "50", "--domain", "row-a1"], "error: --cap: power domain 'row-a1' needs 24.8 kW with every GPU at its "
                                            "minimum power limit, more than the 22.5 kW a cap of 50 % of its 45 kW allows"),
    (["--cap", "50", "--domain", "cpu-row"], "error: --domain: power domain 'cpu-row' feeds no GPU host with a "
                                             "power-limit range"),
], ids=["unknown-domain", "hostile-domain", "zero", "over-100", "not-a-number", "nan", "under-minimum", "no-gpu-host"])
def test_bad_input_is_exit_2_and_touches_nothing(scratch, argv, said):
    before = [smi_calls(scratch, h) for h in ROW_HOSTS], events(scratch)
    result = gigafactory(scratch, *argv)
    assert result.returncode == 2 and result.stderr.startswith(said), result.stderr
    assert "\x1b" not in result.stderr and "Traceback" not in result.stderr
    assert ([smi_calls(scratch, h) for h in ROW_HOSTS], events(scratch)) == before      # the stand-in got no call


def test_a_cap_sets_the_domains_hosts_names_a_host_that_fails_records_each_event_and_100_lifts_it(scratch):
    """Three runs of the command (about 14 s each on a busy 2-core machine): a cap, a cap one host cannot take, the lift.
    The row's hosts already hold hall-a's cap at 90 % (303 W, as an earlier run over the whole hall would have left
    it): row-a1's lower cap holds over it, and lifting row-a1 leaves hall-a's."""
    hall = {"limit_w": 303, "percent": 90, "domain": "hall-a", "at": 1765000000}
    for host in ROW_HOSTS:
        (scratch / host / "gpu-power-cap.d").mkdir()
        (scratch / host / "gpu-power-cap.d" / "hall-a.json").write_text(json.dumps(hall))
    result = gigafactory(scratch, "--cap", "60", "--domain", "row-a1", "--json")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record = json.loads(result.stdout)
    assert {k: record[k] for k in ("domain", "percent", "limits_w", "hosts", "failed")} == {
        "domain": "row-a1", "percent": 60, "limits_w": {"hgx-h200": 268}, "hosts": 4, "failed": []}
    assert events(scratch) == [record]
    for host in ROW_HOSTS:
        assert [c[-1] for c in smi_calls(scratch, host) if "-pl" in c] == ["268"] * 4, host
        # the GPUs came down before row-a1's file was in: no reader (gate, agent) saw GPUs above the caps' files
        assert (scratch / host / "seen").read_text().split() == ["hall-a.json"] * 4, host
        assert json.loads((scratch / host / "gpu-power-cap.d" / "row-a1.json").read_text()) == {
            "limit_w": 268, "percent": 60, "domain": "row-a1", "at": record["at"]}
    assert smi_calls(scratch, "gpu0005") == [] and not (scratch / "gpu0005" / "gpu-power-cap.d").exists()

    bad = scratch / "gpu0003" / "gpu-power.json"
    bad.write_text("{")                                        # its planned limit unreadable: the program exits 2
    try:
        failed = gigafactory(scratch, "--cap", "70", "--domain", "row-a1")
    finally:
        bad.write_text(json.dumps({"limit_w": PLANNED_W}))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "on 4 hosts, 1 failed" in failed.stdout, failed.stdout
    assert f"  gpu0003: failed: gigafactory-gpu-power: {bad}: " in failed.stderr, failed.stderr
    assert [f["host"] for f in events(scratch)[-1]["failed"]] == ["gpu0003"]

    lifted = gigafactory(scratch, "--cap", "100", "--domain", "row-a1")
    assert lifted.returncode == 0, lifted.stdout[-3000:] + lifted.stderr[-3000:]
    assert lifted.stdout.startswith("power domain row-a1 at 100 % of its budget: hgx-h200 401 W on 4 hosts, 0 failed")
    for host in ROW_HOSTS:
        assert sorted(p.name for p in (scratch / host / "gpu-power-cap.d").iterdir()) == ["hall-a.json"], host
        assert [c[-1] for c in smi_calls(scratch, host) if "-pl" in c][-4:] == ["303"] * 4, host
        # and went up only after it was out (the lift's four calls saw hall-a's alone)
        assert (scratch / host / "seen").read_text().split()[-4:] == ["hall-a.json"] * 4, host
    assert [e["percent"] for e in events(scratch)] == [60, 70, 100]
    assert smi_calls(scratch, "gpu0005") == []


# --- usage: the planned limit beside the energy ---------------------------------------------------------------------

def test_usage_shows_the_planned_limit_beside_the_energy_and_nothing_without_ranges(riga):
    period = parse_period("2026-11", "Europe/Riga")
    for data, limits in ((with_billing(row_site()), {"hgx-h200": PLANNED_W}), (with_billing(riga), None)):
        report = usage_report(validate_data(data), period, read_sacct([HEADER, *JOBS], "Europe/Riga"))
        table, document = as_table(report), json.loads(as_json(report))
        assert document.get("gpu_power_limits_w") == limits
        assert ("planned GPU power limit (plan.power): hgx-h200 401 W per GPU" in table.splitlines()) == bool(limits)
