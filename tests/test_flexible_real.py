"""Flexible capacity on real Slurm 24.11 daemons (Debian 13 chroot): slurmctld, slurmdbd on MariaDB, two slurmd.

The demo site with a regular partition (batch) and a flexible one (flex, renewable share 0.8, class flex-green at
0.4) over the same two nodes; slurm.conf is the project's render, split into one slurmd per node. The forecast puts
this hour at a renewable share of 0.1 and the next at 0.9: `up`'s windows (infra/usage/flexible.py) open flex at the
next hour's start. The role's program (``gigafactory-flexible``) runs here inside the daemons' namespaces with
``--at``, its ``scontrol`` the chroot's: at this hour it closes flex (opened by hand before, as a past window left
it); a flexible job pends (PartitionDown) while a regular job runs at once; at the window's start it opens flex and
the flexible job runs. The jobs' records come back through the real sacct and slurmdbd into the usage report: the
flexible job's line carries the class flex-green and its price.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

HERE = Path(__file__).resolve().parent
PROGRAM = HERE.parent / "playbooks/roles/slurm_flexible/files/gigafactory-flexible"
NODES = ["node01", "node02"]
SHARE, FACTOR = 0.8, 0.4


# ---------------------------------------------------------------- the driver (runs inside the cluster's namespaces)

class Cluster:
    def __init__(self, root: Path, out: Path):
        self.root, self.out = root, out
        self.bin = out / "bin"
        self.bin.mkdir(exist_ok=True)
        for tool in ("scontrol", "squeue", "sbatch", "sacct"):
            (self.bin / tool).write_text(f'#!/bin/sh\nexec env SLURM_TIME_FORMAT=%s chroot {root} {tool} "$@"\n')
            (self.bin / tool).chmod(0o755)

    def slurm(self, *argv: str) -> str:
        done = subprocess.run([str(self.bin / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (argv, done.stderr)
        return done.stdout

    def flexible(self, at: int) -> str:
        done = subprocess.run([sys.executable, str(PROGRAM), "--config", str(self.out / "flexible.json"), "--events",
                               str(self.out / "events.jsonl"), "--at", str(at), "--scontrol", str(self.bin / "scontrol")],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def partitions(self) -> dict[str, str]:
        lines = self.slurm("scontrol", "show", "partition", "--oneliner").splitlines()
        fields = [dict(w.split("=", 1) for w in line.split() if "=" in w) for line in lines]
        return {f["PartitionName"]: f["State"] for f in fields}

    def job(self, job: str) -> tuple[str, str]:
        """(state, reason) from squeue; ("", "") once the job has left the queue."""
        line = self.slurm("squeue", "-h", "-j", job, "-o", "%T %r").split()
        return (line[0], line[1] if len(line) > 1 else "") if line else ("", "")

    def wait(self, what, said: str, limit_s: float = 60):
        """Until ``what()`` holds (bounded, a failsafe: no time is asserted)."""
        end = time.monotonic() + limit_s
        while not (value := what()):
            assert time.monotonic() < end, f"gave up waiting: {said}\n{self.slurm('squeue', '-o', '%i %P %T %r')}"
            time.sleep(0.5)
        return value


def scenario(c: Cluster, record: dict) -> None:
    windows = json.loads((c.out / "flexible.json").read_text())["partitions"]["flex"]["windows"]
    now = int(time.time())
    c.slurm("scontrol", "update", "PartitionName=flex", "State=UP")         # as a past window left it
    record["closed.said"] = c.flexible(now)
    record["closed"] = c.partitions()
    flex = c.slurm("sbatch", "--parsable", "-A", "acme-ai", "-p", "flex", "-N", "1", "-o", "/dev/null", "--wrap", "sleep 2").strip()
    batch = c.slurm("sbatch", "--parsable", "-A", "acme-ai", "-p", "batch", "-N", "1", "-o", "/dev/null", "--wrap", "sleep 2").strip()
    c.wait(lambda: c.job(batch)[0] in ("RUNNING", "COMPLETING", ""), "the regular job running")
    record["regular.ran"] = True
    record["flexible.pending"] = c.wait(lambda: (s := c.job(flex))[1] not in ("None", "") and s, "the flexible job's reason")
    c.wait(lambda: c.job(batch)[0] == "", "the regular job done")
    record["flexible.after_regular"] = c.job(flex)
    record["open.said"] = c.flexible(windows[0][0])
    record["open"] = c.partitions()
    c.wait(lambda: c.job(flex)[0] in ("RUNNING", "COMPLETING", ""), "the flexible job started")
    c.wait(lambda: c.job(flex)[0] == "", "the flexible job done")
    sacct = ["sacct", "--allusers", "--allocations", "--parsable2", "--starttime", "now-3600", "--format",
             (c.out / "sacct-format").read_text()]       # the report's (infra/usage/sacct.py), from the fixture

    def ended(text: str) -> bool:                    # both jobs in slurmdbd, with their end
        ends = {line.split("|")[0]: line.split("|")[4] for line in text.splitlines()[1:] if line.count("|") >= 4}
        return all(ends.get(j, "Unknown") not in ("Unknown", "") for j in (flex, batch))
    lines = c.wait(lambda: ended(t := c.slurm(*sacct)) and t, "both jobs' records in slurmdbd")
    c.slurm("scontrol", "reconfigure")                     # slurm.conf re-read: what becomes of the open partition
    record["reconfigured"] = c.wait(lambda: c.partitions(), "slurmctld answering after reconfigure")
    c.flexible(windows[0][0] + 60)                          # the timer's next run inside the window
    record["reopened"] = c.partitions()
    record["jobs"] = {"flex": flex, "batch": batch}
    record["sacct"] = lines
    record["events"] = [json.loads(line) for line in (c.out / "events.jsonl").read_text().splitlines()]


def drive(root: Path, out: Path) -> int:
    from realslurm import record_scenario
    return record_scenario(scenario, Cluster(root, out), out)


# ---------------------------------------------------------------- the tests

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("debootstrap") or not shutil.which("unshare"),
                       reason="needs root, debootstrap and unshare"),
]


def flexible_demo(demo: dict, out: Path, now: float) -> dict:
    """demo with billing (a class flex-green at 0.4), a flexible partition over batch's nodes, and a forecast: this
    hour at a renewable share of 0.1, the next at 0.9."""
    from metering_data import with_billing
    data = with_billing(copy.deepcopy(demo))
    data["storage"] = []
    data["billing"]["tariffs"] = {"cpu_hour": 0.4, "energy_kwh": 0.1}
    data["billing"]["classes"].append({"name": "flex-green", "price_factor": FACTOR})
    data["energy"] = {"node": "none", "forecast": "forecast.csv"}
    data["slurm"]["partitions"].append({"name": "flex", "pools": ["compute"],
                                        "flexible": {"renewable_share": SHARE, "class": "flex-green"}})
    for tenant in data["tenants"]:
        tenant.get("slurm", {}).pop("nodes", None)
    hour = int(now) // 3600 * 3600
    (out / "forecast.csv").write_text("hour,grid_kwh,onsite_renewable_kwh,contracted_renewable_kwh,carbon_g_per_kwh\n"
                                      f"{hour},900,100,0,300\n{hour + 3600},100,900,0,40\n")
    return data


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from conftest import DEMO, site_data
    from realslurm import daemon_logs, run_in_slurm, separate_slurmd, slurm_chroot
    from test_metering_real import _for_a_chroot

    from infra.orchestrate.up import flexible_windows
    from infra.plan import build_plan
    from infra.render.files import render_file, slurm_files
    from infra.site.load import validate_data
    from infra.usage.sacct import SACCT_FORMAT

    out = tmp_path_factory.mktemp("flexible")
    (out / "sacct-format").write_text(",".join(SACCT_FORMAT))
    now = time.time()
    site = validate_data(flexible_demo(site_data(DEMO), out, now), directory=out)
    plan = build_plan(site)
    (out / "flexible.json").write_text(json.dumps(flexible_windows(site, now)))    # what `up` gives the role
    addresses = {n: plan.hosts[n].address() for n in NODES}
    files = {f"/etc/{rel}": content for rel, content in slurm_files(plan).items()}
    files["/etc/slurm/slurm.conf"] = separate_slurmd(_for_a_chroot(files["/etc/slurm/slurm.conf"]), "node[01-02]", addresses)
    files["/etc/slurm/cgroup.conf"] = "CgroupPlugin=disabled\n"
    files["/etc/hosts"] = render_file(plan, "hosts")
    root = slurm_chroot(slurmd=True)
    started = time.monotonic()
    result = run_in_slurm(
        root, files, controller=plan.slurm.controllers[0], dbd=plan.slurm.accounting, cluster=plan.slurm.cluster,
        slurmd=list(addresses.items()), timeout=300, host_timeout=200,
        commands=["sacctmgr -i add account acme-ai", "sacctmgr -i add user root account=acme-ai"],
        host_commands=[f"env PYTHONPATH={HERE.parent} {sys.executable} {__file__} {root} {out}"])   # this tree's
    print(f"cluster of 2 slurmd and the scenario: {time.monotonic() - started:.0f} s")
    context = result.stdout[-3000:] + result.stderr[-3000:] + daemon_logs(root)
    assert (out / "record.json").exists(), context
    record = json.loads((out / "record.json").read_text())
    assert record.get("done"), record.get("error", "") + "\n" + context
    record["site"], record["conf"], record["now"] = site, files["/etc/slurm/slurm.conf"], now
    return record


def test_slurm_conf_starts_the_flexible_partition_down_and_the_regular_one_up(cluster):
    states = {line.split()[0]: line.split()[-1] for line in cluster["conf"].splitlines() if line.startswith("PartitionName=")}
    assert states == {"PartitionName=batch": "State=UP", "PartitionName=flex": "State=DOWN"}


def test_in_a_low_supply_hour_a_flexible_job_pends_and_a_regular_job_runs_at_once(cluster):
    assert cluster["closed"] == {"batch": "UP", "flex": "DOWN"}, cluster["closed"]
    assert "partition flex State=DOWN: outside the windows; the next opens at" in cluster["closed.said"]
    assert cluster["regular.ran"] is True
    assert cluster["flexible.pending"] == ["PENDING", "PartitionDown"], cluster["flexible.pending"]
    assert cluster["flexible.after_regular"] == ["PENDING", "PartitionDown"], cluster["flexible.after_regular"]


def test_when_the_window_opens_the_flexible_job_starts_and_nothing_regular_moves(cluster):
    assert cluster["open"] == {"batch": "UP", "flex": "UP"}, cluster["open"]
    assert [(e["partition"], e["from"], e["to"]) for e in cluster["events"]][:2] == [("flex", "UP", "DOWN"), ("flex", "DOWN", "UP")]
    hour = int(cluster["now"]) // 3600 * 3600
    assert cluster["events"][1]["window"] == [hour + 3600, hour + 7200]
    records = {line.split("|")[0]: line.split("|") for line in cluster["sacct"].splitlines()[1:]}
    flex, batch = records[cluster["jobs"]["flex"]], records[cluster["jobs"]["batch"]]
    assert (flex[2], batch[2]) == ("flex", "batch")
    assert int(flex[3]) >= int(batch[3]), (flex, batch)        # the flexible job started after the regular one


def test_a_reconfigure_closes_the_partition_until_the_programs_next_run(cluster):
    """slurm.conf says DOWN: `scontrol reconfigure` (phase slurm's handler) resets the state; the timer reopens it."""
    assert cluster["reconfigured"] == {"batch": "UP", "flex": "DOWN"}, cluster["reconfigured"]
    assert cluster["reopened"] == {"batch": "UP", "flex": "UP"}, cluster["reopened"]


def test_the_flexible_jobs_usage_line_carries_the_flexible_class_and_its_price(cluster):
    from infra.usage import parse_period, read_sacct, usage_report
    site = cluster["site"]
    zone = site.site.timezone
    month = datetime.fromtimestamp(cluster["now"], ZoneInfo(zone)).strftime("%Y-%m")
    report = usage_report(site, parse_period(month, zone), read_sacct(cluster["sacct"].splitlines(), zone))
    rows = {r.name: r for r in report.tenants}
    regular, flexible = rows["acme-ai"], rows["acme-ai [flex-green]"]
    assert (regular.jobs, flexible.jobs) == (1, 1), rows
    assert (flexible.tenant_class, flexible.price_factor) == ("commercial+flex-green", FACTOR)
    assert flexible.costs["cpu"] == pytest.approx(flexible.cpu_hours * 0.4 * FACTOR) and flexible.costs["cpu"] > 0
    assert regular.costs["cpu"] == pytest.approx(regular.cpu_hours * 0.4)


if __name__ == "__main__":
    sys.exit(drive(Path(sys.argv[1]), Path(sys.argv[2])))
