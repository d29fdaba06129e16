"""The remediation service on real Slurm 24.11 daemons (Debian 13 chroot): slurmctld, slurmdbd on MariaDB, six slurmd.

The demo site with six compute nodes; slurm.conf is the project's render, split into one slurmd per node
(realslurm.separate_slurmd). Faults are injected where the node's signal agent finds them (``inject``: an XID line
in a stand-in kernel log, a stand-in ``dcgmi`` whose health watch fails) and the real agent (node_health's
``gigafactory-node-health --signals``) reports them through the chroot's scontrol into the node's ``Extra``; it also
runs the diagnosis the service asks for (``dcgmi diag``'s stand-in passing). ``RebootProgram`` is a stand-in
that restarts the node's slurmd with a fresh boot time (its own time namespace), so slurmctld 24.11 sees the reboot
complete. The service is the role's own program, run one round at a time (``--once``) on this machine inside the
daemons' namespaces, its ``scontrol`` and ``squeue`` the chroot's through two-line wrappers.

The scenarios run once, in order, in one cluster (``__main__`` below, the driver); each test reads what its scenario
recorded: XID 79 drained, rebooted, diagnosed and resumed; a second XID 79 awaits repair; a contained ECC error
requeues a job that restarts on another node, the node staying in service; an administrator's drain is held; a node
with malformed Extra is an event and untouched; the breaker opens past its threshold and drains no more.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.site.healing import HEAL_PREFIX

HERE = Path(__file__).resolve().parent
PROGRAM = HERE.parent / "playbooks/roles/remediation/files/gigafactory-remediate"
AGENT = HERE.parent / "playbooks/roles/node_health/files/gigafactory-node-health"
# dcgmi stand-in: `health -c` prints health.txt, `diag -r N` prints diag.txt and exits with diag.rc
DCGMI = """#!/bin/sh
d=$(dirname "$0")
case "$1" in
  health) cat "$d/health.txt" ;;
  diag) cat "$d/diag.txt"; exit "$(cat "$d/diag.rc")" ;;
esac
"""
NODES = [f"node{i:02d}" for i in range(1, 7)]
CONTROLLER = "ctl01"
# RebootProgram stand-in: the node's slurmd restarted with a boot time of now (slurmctld waits for a newer one)
FAKE_REBOOT = """#!/bin/sh
node=$(hostname)
setsid sh -c "sleep 1; kill \\$(cat /run/slurmd-$node.pid); sleep 1; \\
  exec unshare --time --boottime -\\$(cut -d. -f1 /proc/uptime) /usr/sbin/slurmd -D -N $node" \\
  </dev/null >>/var/log/slurm/fake-reboot-$node.log 2>&1 &
"""


# ---------------------------------------------------------------- the driver (runs inside the cluster's namespaces)

class Cluster:
    """The chroot's Slurm from this machine, the service's rounds, and the node agent's report (``inject``)."""

    def __init__(self, root: Path, out: Path):
        self.root, self.out = root, out
        self.bin = out / "bin"
        self.bin.mkdir(exist_ok=True)
        for tool in ("scontrol", "squeue", "sbatch", "scancel"):
            (self.bin / tool).write_text(f'#!/bin/sh\nexec chroot {root} {tool} "$@"\n')
            (self.bin / tool).chmod(0o755)
        self.config = out / "remediation.json"
        self.state_dir = out / "state"

    def slurm(self, *argv: str) -> str:
        done = subprocess.run([str(self.bin / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (argv, done.stderr)
        return done.stdout

    def node(self, name: str) -> dict:
        raw = json.loads(self.slurm("scontrol", "show", "nodes", name, "--json"))["nodes"][0]
        changed = raw.get("reason_changed_at")
        return {"state": sorted(raw["state"]), "reason": raw.get("reason", ""), "extra": raw.get("extra", ""),
                "reason_changed_at": changed.get("number") if isinstance(changed, dict) else changed}

    def agent(self, node: str) -> Path:
        """The node's signal agent's stand-ins (a kernel log, ``dcgmi``), made once: no GPU, HCA or journald here."""
        d = self.out / "agent" / node
        if not d.exists():
            d.mkdir(parents=True)
            (d / "expect.json").write_text(json.dumps({
                "node": node, "node_type": "vm-compute", "gpus": 0, "gpu_model": None, "driver_branch": None, "cuda": {},
                "hcas": 0, "fabric_gbits": None, "rails": [], "dcgm_level": 0, "bw_min_gbits": 0.0, "diagnose_level": 2,
                "diagnose_timeout_s": 60, "rail_devices": [], "ib_error_threshold": 10,
                "heal_prefix": HEAL_PREFIX}))       # node_health writes it from gf_diagnosis.reason_prefix
            (d / "kern.log").write_text("")
            (d / "health.txt").write_text("Health Monitor Report\n| Overall Health: Healthy |\n")
            (d / "diag.txt").write_text("| Diagnostic | Result |\n| Memory | Pass |\n")
            (d / "diag.rc").write_text("0")
            (d / "dcgmi").write_text(DCGMI)
            (d / "dcgmi").chmod(0o755)
        return d

    def run_agent(self, node: str) -> None:
        """``gigafactory-node-health --signals`` (node_health's program) as ``node``, against its stand-ins and the
        chroot's scontrol: it reads the node's Extra and state from slurmctld and writes its report there."""
        d = self.agent(node)
        done = subprocess.run([sys.executable, str(AGENT), "--signals", "--expect", str(d / "expect.json"),
                               "--state", str(d / "state.json"), "--kernel-log", str(d / "kern.log"),
                               "--sysfs-ib", str(d / "no-ib"), "--scontrol", str(self.bin / "scontrol"),
                               "--nvidia-smi", str(d / "no-nvidia-smi"), "--dcgmi", str(d / "dcgmi"),
                               "--journalctl", str(d / "no-journalctl")], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr

    def inject(self, node: str, signal: str, code, detail: str) -> float:
        """A fault where the node's agent finds it (an XID line in its kernel log, or DCGM's health watch failing),
        then the agent's run: it reports the signal in the node's Extra."""
        d, at = self.agent(node), time.time()
        if signal == "xid":
            with open(d / "kern.log", "a") as log:
                log.write(f"{at:.6f} {node} kernel: NVRM: Xid (PCI:0000:3b:00): {code}, {detail}\n")
        elif signal == "dcgm_health":
            (d / "health.txt").write_text(f"| Overall Health: Failure |\n| GPU 0 | Fail - {detail} |\n")
        else:
            raise ValueError(f"no stand-in for {signal}")
        self.run_agent(node)
        return at

    def agent_diagnoses(self, node: str, passed: bool) -> None:
        """The agent's run while the service asks for a diagnosis: ``dcgmi diag`` (its stand-in) passes or fails."""
        d = self.agent(node)
        (d / "diag.rc").write_text("0" if passed else "1")
        (d / "diag.txt").write_text("| Memory | Pass |\n" if passed else "| Memory | Fail - row remap failure |\n")
        self.run_agent(node)

    def diagnosed(self, node: str, passed: bool) -> None:
        """A diagnosis result written into Extra directly, as the agent writes it: for the cases where the agent
        would not run one (a node awaiting repair, someone else's drain) and the service must not resume anyway."""
        now = self.node(node)
        data = json.loads(now["extra"]) if now["extra"].strip() else {}
        # "for": the drain it diagnosed, the node's current one (the contract: the service accepts no other)
        data.setdefault("gf", {"signals": []})["diag"] = {"level": 2, "passed": passed, "detail": "dcgmi diag -r 2",
                                                         "at": time.time(), "for": now["reason_changed_at"]}
        self.slurm("scontrol", "update", f"NodeName={node}", f"Extra={json.dumps(data)}")

    def round(self) -> None:
        done = subprocess.run([sys.executable, str(PROGRAM), "--config", str(self.config), "--once", "--host", CONTROLLER,
                               "--bin-dir", str(self.bin)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr

    def state(self, node: str) -> str:
        path = self.state_dir / "state.json"
        nodes = json.loads(path.read_text())["nodes"] if path.exists() else {}
        return nodes.get(node, {}).get("state", "healthy")

    def rounds_until(self, node: str, state: str, limit_s: float = 60) -> None:
        """Rounds a second apart until the service holds ``node`` in ``state`` (bounded)."""
        end = time.monotonic() + limit_s
        while True:
            self.round()
            if self.state(node) == state:
                return
            assert time.monotonic() < end, f"gave up waiting for {node} {state}: it is {self.state(node)}, {self.node(node)}"
            time.sleep(1)

    def wait(self, what, limit_s: float = 60, said: str = ""):
        end = time.monotonic() + limit_s
        while not what():
            assert time.monotonic() < end, (f"gave up waiting: {said}\n{self.slurm('squeue', '-o', '%i %T %N %r')}"
                                            f"{self.slurm('scontrol', 'show', 'nodes')[-3000:]}")
            time.sleep(0.5)


def job_state(c: Cluster, job: str) -> tuple[str, str]:
    line = c.slurm("squeue", "-h", "-j", job, "-o", "%T %N").split()
    return (line[0], line[1] if len(line) > 1 else "") if line else ("", "")


def scenarios(c: Cluster, record: dict) -> None:
    started = time.monotonic()
    # 1. XID 79 on node01: drained with the reason, rebooted, diagnosed, resumed on a passing diagnosis
    c.inject("node01", "xid", 79, "GPU has fallen off the bus")
    c.round()
    record["xid79.drained"] = c.node("node01")
    c.rounds_until("node01", "diagnosing")
    record["xid79.diagnosing"] = c.node("node01")
    c.agent_diagnoses("node01", passed=True)
    c.rounds_until("node01", "healthy")
    c.wait(lambda: "IDLE" in c.node("node01")["state"], said="node01 idle")
    record["xid79.resumed"] = c.node("node01")
    # 2. a second XID 79 within the window: awaiting repair, not resumed even on a passing diagnosis
    c.inject("node01", "xid", 79, "GPU has fallen off the bus again")
    c.round()
    c.diagnosed("node01", passed=True)
    for _ in range(3):
        c.round()
    record["xid79.second"] = {**c.node("node01"), "service": c.state("node01")}

    # 3. contained ECC (XID 94) on node02, the one free node (node02 weighs more: the others are taken first)
    filler = c.slurm("sbatch", "--parsable", "-A", "lab", "-N", "4", "-w", "node[03-06]", "--exclusive", "-o", "/dev/null",
                     "--wrap", "sleep 300").strip()
    c.wait(lambda: job_state(c, filler)[0] == "RUNNING", said="the filler job running")
    kept = c.slurm("sbatch", "--parsable", "-A", "lab", "-n", "1", "--mem=100", "--requeue", "-o", "/dev/null", "--wrap", "sleep 300").strip()
    left = c.slurm("sbatch", "--parsable", "-A", "lab", "-n", "1", "--mem=100", "--no-requeue", "-o", "/dev/null", "--wrap", "sleep 300").strip()
    c.wait(lambda: job_state(c, kept) == ("RUNNING", "node02") and job_state(c, left) == ("RUNNING", "node02"),
           said="both jobs running on node02")
    c.inject("node02", "xid", 94, "Contained ECC error")
    c.round()
    record["ecc.after_round"] = {"kept": job_state(c, kept), "left": job_state(c, left), "node": c.node("node02")}
    c.slurm("scancel", filler)
    # slurmctld holds a requeued job about two minutes (its BeginTime); the test brings that forward
    c.wait(lambda: job_state(c, kept)[0] == "PENDING", said="the requeued job pending")
    c.slurm("scontrol", "update", f"JobId={kept}", "StartTime=now")
    c.wait(lambda: job_state(c, kept)[0] == "RUNNING", said="the requeued job running again")
    record["ecc.restarted"] = {"kept": job_state(c, kept), "left": job_state(c, left), "node": c.node("node02"),
                               "service": c.state("node02")}
    c.slurm("scancel", kept, left)
    c.wait(lambda: not c.slurm("squeue", "-h").strip(), said="no jobs")

    # 4. node03 drained by an administrator: never changed or resumed, signals or not
    c.slurm("scontrol", "update", "NodeName=node03", "State=DRAIN", "Reason=bad DIMM")
    c.inject("node03", "xid", 79, "GPU has fallen off the bus")
    c.diagnosed("node03", passed=True)
    for _ in range(2):
        c.round()
    record["held"] = {**c.node("node03"), "service": c.state("node03")}

    # 5. malformed Extra on node04: an event, the node untouched
    c.slurm("scontrol", "update", "NodeName=node04", "Extra=not json {")
    c.round()
    record["unclear"] = c.node("node04")

    # 6. the breaker: 6 nodes, max(3, 0.05 x 6) = 3 drains within 600 s; node01 took one; node02 and node05 take two
    # more, node06 would be the fourth
    for node in ("node02", "node05", "node06"):
        c.inject(node, "dcgm_health", None, "PCIe replay rate")
    c.round()
    c.slurm("scontrol", "update", "NodeName=node04", "Extra={}")      # readable again; the breaker holds its fault
    c.inject("node04", "xid", 79, "after the breaker")
    c.round()
    record["breaker"] = {n: {**c.node(n), "service": c.state(n)} for n in ("node02", "node04", "node05", "node06")}
    record["state"] = json.loads((c.state_dir / "state.json").read_text())
    record["events"] = [json.loads(line) for line in (c.state_dir / "events.jsonl").read_text().splitlines()]
    record["metrics"] = (c.out / "remediation.prom").read_text()
    record["seconds"] = time.monotonic() - started


def drive(root: Path, out: Path) -> int:
    from realslurm import record_scenario
    return record_scenario(scenarios, Cluster(root, out), out)


# ---------------------------------------------------------------- the tests

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("debootstrap") or not shutil.which("unshare"),
                       reason="needs root, debootstrap and unshare"),
]


def remediation_config(out: Path) -> dict:
    """The contract's remediation.json with infra/site/healing.py's rules, a round a second."""
    from test_remediation_service import config_for
    return config_for(out, interval_s=1, reboot_timeout_s=120)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    import copy

    from conftest import DEMO, site_data
    from realslurm import daemon_logs, run_in_slurm, separate_slurmd, slurm_chroot
    from test_metering_real import _for_a_chroot

    from infra.plan import build_plan
    from infra.render.files import render_file, slurm_files
    from infra.site.load import validate_data

    data = copy.deepcopy(site_data(DEMO))
    {p["name"]: p for p in data["pools"]}["compute"]["hosts"] = "node[01-06]"
    for tenant in data.get("tenants", []):
        tenant.get("slurm", {}).pop("nodes", None)
    plan = build_plan(validate_data(data))
    addresses = {n: plan.hosts[n].address() for n in NODES}
    files = {f"/etc/{rel}": content for rel, content in slurm_files(plan).items()}
    conf = separate_slurmd(_for_a_chroot(files["/etc/slurm/slurm.conf"]), "node[01-06]", addresses)
    assert "\nRebootProgram=/usr/sbin/reboot\n" in conf, conf
    conf = conf.replace("RebootProgram=/usr/sbin/reboot", "RebootProgram=/usr/local/sbin/fake-reboot")
    conf = conf.replace("NodeName=node02 ", "NodeName=node02 Weight=10 ")       # taken last: scenario 3
    files["/etc/slurm/slurm.conf"] = conf
    files["/etc/slurm/cgroup.conf"] = "CgroupPlugin=disabled\n"
    files["/etc/hosts"] = render_file(plan, "hosts")
    files["/usr/local/sbin/fake-reboot"] = FAKE_REBOOT
    out = tmp_path_factory.mktemp("remediation")
    (out / "remediation.json").write_text(json.dumps(remediation_config(out)))
    root = slurm_chroot(slurmd=True)
    try:
        started = time.monotonic()
        result = run_in_slurm(
            root, files, controller=plan.slurm.controllers[0], dbd=plan.slurm.accounting, cluster=plan.slurm.cluster,
            slurmd=list(addresses.items()), timeout=600, host_timeout=400,
            commands=["chmod 755 /usr/local/sbin/fake-reboot", "sacctmgr -i add account lab",
                      "sacctmgr -i add user root account=lab"],
            host_commands=[f"{sys.executable} {__file__} {root} {out}"])
        print(f"cluster of 6 slurmd and every scenario: {time.monotonic() - started:.0f} s")
        if (out / "record.json").exists():
            print(f"the scenarios alone: {json.loads((out / 'record.json').read_text()).get('seconds', 0):.0f} s")
        context = result.stdout[-3000:] + result.stderr[-3000:] + daemon_logs(root)
        assert (out / "record.json").exists(), context
        record = json.loads((out / "record.json").read_text())
        events = out / "state" / "events.jsonl"
        assert record.get("done"), record.get("error", "") + "\n" + (events.read_text()[-3000:] if events.exists() else "") + context
        yield record
    finally:
        (root / "usr/local/sbin/fake-reboot").unlink(missing_ok=True)


def events_of(record: dict, node: str | None) -> list[dict]:
    return [e for e in record["events"] if e["node"] == node]


def test_xid_79_drains_reboots_diagnoses_and_resumes_the_node(cluster):
    drained = cluster["xid79.drained"]
    assert {"DRAIN", "REBOOT_REQUESTED"} <= set(drained["state"]) or "REBOOT_ISSUED" in drained["state"], drained
    assert drained["reason"].startswith("gigafactory-heal: reboot xid 79: PCI:0000:3b:00: GPU has fallen off the bus"), drained
    assert cluster["xid79.diagnosing"]["reason"].startswith("gigafactory-heal: diagnose xid 79: "), cluster["xid79.diagnosing"]
    assert "DRAIN" in cluster["xid79.diagnosing"]["state"]
    resumed = cluster["xid79.resumed"]
    assert not {"DRAIN", "DOWN"} & set(resumed["state"]) and resumed["reason"] == "", resumed
    steps = [(e["from"], e["to"]) for e in events_of(cluster, "node01") if e["from"] != e["to"]][:3]
    assert steps == [("healthy", "rebooting"), ("rebooting", "diagnosing"), ("diagnosing", "healthy")], steps


def test_a_second_xid_79_within_the_window_awaits_repair_and_stays_drained(cluster):
    second = cluster["xid79.second"]
    assert second["service"] == "awaiting_repair" and "DRAIN" in second["state"], second
    assert second["reason"].startswith("gigafactory-heal: repair xid 79: PCI:0000:3b:00: GPU has fallen off the bus again"), second


def test_contained_ecc_requeues_the_job_which_restarts_on_another_node_and_the_node_stays(cluster):
    after = cluster["ecc.after_round"]
    assert after["kept"][0] in ("PENDING", "REQUEUED", "CONFIGURING", "COMPLETING"), after
    assert after["left"] == ["RUNNING", "node02"], after                          # --no-requeue: left to finish
    assert not {"DRAIN", "DOWN"} & set(after["node"]["state"]), after
    restarted = cluster["ecc.restarted"]
    assert restarted["kept"][0] == "RUNNING" and restarted["kept"][1] != "node02", restarted
    assert restarted["service"] == "healthy"
    requeue = [e for e in events_of(cluster, "node02") if e["action"] == "requeue"]
    assert len(requeue) == 1 and "not requeueable" in requeue[0]["detail"], requeue


def test_an_administrators_drain_is_never_changed_or_resumed(cluster):
    held = cluster["held"]
    assert held["reason"] == "bad DIMM" and "DRAIN" in held["state"] and held["service"] == "held", held
    assert "held" in {e["to"] for e in events_of(cluster, "node03")}


def test_malformed_extra_is_an_event_and_the_node_untouched(cluster):
    assert cluster["unclear"]["reason"] == "" and "DRAIN" not in cluster["unclear"]["state"], cluster["unclear"]
    assert [e["action"] for e in events_of(cluster, "node04")][:1] == ["unclear"]


def test_the_breaker_opens_past_its_threshold_and_drains_no_more(cluster):
    nodes = cluster["breaker"]
    assert [n for n, v in nodes.items() if "DRAIN" in v["state"]] == ["node02", "node05"], nodes
    assert nodes["node06"]["service"] == nodes["node04"]["service"] == "suspect", nodes
    assert cluster["state"]["breaker"]["open"] is True
    opened = events_of(cluster, None)
    assert [e for e in opened if e["action"] == "breaker open"], opened
    assert "gigafactory_remediation_breaker_open 1" in cluster["metrics"]



@pytest.mark.slow
def test_ten_percent_of_100_slurmd_failing_at_once_are_drained_and_their_jobs_run_elsewhere():
    """benchmarks/remediation.py at 100 slurmd, faults through the real agent (its figures printed, time not asserted)."""
    sys.path.insert(0, str(HERE.parent / "benchmarks"))
    from remediation import measure
    figures = measure(100)
    print(figures)
    assert figures["slurmd"] == 100 and figures["flags"] == ["IDLE"], figures
    assert figures["reported"] == figures["drained"] == figures["failing"] == 10 and figures["other_drained"] == 0, figures
    assert figures["drain_events"] == 10 and figures["updates"] <= 10, figures
    assert figures["jobs"] == figures["requeued"] == figures["restarted_elsewhere"] == 10, figures


if __name__ == "__main__":
    sys.exit(drive(Path(sys.argv[1]), Path(sys.argv[2])))
