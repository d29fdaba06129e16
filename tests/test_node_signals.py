"""The node's signal agent (``gigafactory-node-health --signals``, node_health's program), run as a subprocess with
stand-ins: a kernel log file, ``nvidia-smi``, ``dcgmi`` and ``scontrol`` as small scripts that record their argv and
answer what the test wrote, and a fake InfiniBand sysfs tree. The report is issue 25's contract
(infra/site/healing.py): a ring of signals in the gf key of the node's Slurm Extra field."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT
from infra.site.healing import GATE_PREFIX, HEAL_PREFIX, SIGNALS

PROGRAM = ROOT / "playbooks" / "roles" / "node_health" / "files" / "gigafactory-node-health"
NODE = "gpu0001"
BUS = ("00000000:3B:00.0", "00000000:5E:00.0")

# scontrol: `show node N --json` prints node.json (a list of node records: one answer per call, the last repeated),
# `update NodeName=N Extra=..` writes Extra into it, like slurmctld; every call is recorded.
SCONTROL = """#!{python}
import json, sys
from pathlib import Path
here = Path(__file__).parent
with open(here / "calls.jsonl", "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
node = json.loads((here / "node.json").read_text())
if sys.argv[1:3] == ["show", "node"]:
    print(json.dumps({{"nodes": [node]}}))
elif sys.argv[1] == "update":
    node["extra"] = sys.argv[3].split("=", 1)[1]
    (here / "node.json").write_text(json.dumps(node))
"""
# nvidia-smi: the gate's name query from gpus.csv, the agent's ECC query from ecc.csv
SMI = """#!{python}
import json, sys
from pathlib import Path
here = Path(__file__).parent
with open(here / "calls.jsonl", "a") as f:
    f.write(json.dumps(["nvidia-smi", *sys.argv[1:]]) + "\\n")
print((here / ("ecc.csv" if "pci.bus_id" in sys.argv[1] else "gpus.csv")).read_text(), end="")
"""
# dcgmi: `health -c` prints health.txt, `diag -r N` prints diag.txt and exits with diag.rc
DCGMI = """#!{python}
import json, sys
from pathlib import Path
here = Path(__file__).parent
with open(here / "calls.jsonl", "a") as f:
    f.write(json.dumps(["dcgmi", *sys.argv[1:]]) + "\\n")
if sys.argv[1] == "health":
    print((here / "health.txt").read_text(), end="")
else:
    print((here / "diag.txt").read_text(), end="")
    sys.exit(int((here / "diag.rc").read_text()))
"""
HEALTHY = "Health Monitor Report\n+---------+\n| Overall Health: Healthy |\n"


class Node:
    """A node's stand-ins in ``tmp_path`` and the agent run against them."""

    def __init__(self, tmp_path: Path, dcgmi: bool = True):
        self.dir = tmp_path
        self.now = time.time()
        for name, text in (("scontrol", SCONTROL), ("nvidia-smi", SMI), ("dcgmi", DCGMI)):
            if name == "dcgmi" and not dcgmi:
                continue
            (tmp_path / name).write_text(text.format(python=sys.executable))
            (tmp_path / name).chmod(0o755)
        self.kernel = tmp_path / "kern.log"
        self.kernel.write_text("")
        (tmp_path / "gpus.csv").write_text("NVIDIA H200, 570.86.15\nNVIDIA H200, 570.86.15\n")
        (tmp_path / "ecc.csv").write_text(f"{BUS[0]}, 0, No\n{BUS[1]}, 0, No\n")
        (tmp_path / "health.txt").write_text(HEALTHY)
        (tmp_path / "diag.txt").write_text("Successfully ran diagnostic for group.\n| Diagnostic | Result |\n| Memory | Pass |\n")
        (tmp_path / "diag.rc").write_text("0")
        self.node({"state": ["IDLE"], "reason": "", "reason_changed_at": {"set": False, "infinite": False, "number": 0},
                   "extra": ""})
        # two compute rails (InfiniBand) and a storage HCA (Ethernet, counters moving: never a compute rail's signal)
        for dev, layer in (("mlx5_0", "InfiniBand"), ("mlx5_1", "InfiniBand"), ("mlx5_2", "Ethernet")):
            self.port(dev, "4: ACTIVE", layer=layer, symbol_error=0, link_downed=0, link_error_recovery=0)
        self.expect = tmp_path / "expect.json"
        self.expect.write_text(json.dumps({
            "node": NODE, "node_type": "hgx-h200", "gpus": 2, "gpu_model": "H200", "driver_branch": None, "cuda": {},
            "hcas": 3, "fabric_gbits": None, "rails": ["10.50.1.1/19", "10.50.33.1/19"], "dcgm_level": 0,
            "bw_min_gbits": 0.0, "diagnose_level": 3, "diagnose_timeout_s": 60, "rail_devices": [], "ib_error_threshold": 10,
            "heal_prefix": HEAL_PREFIX}))

    def node(self, record: dict) -> None:
        (self.dir / "node.json").write_text(json.dumps(record))

    def record(self) -> dict:
        return json.loads((self.dir / "node.json").read_text())

    def extra(self) -> dict:
        return json.loads(self.record()["extra"])

    def port(self, dev: str, state: str, layer: str = "InfiniBand", **counters: int) -> None:
        port = self.dir / "ib" / dev / "ports" / "1"
        (port / "counters").mkdir(parents=True, exist_ok=True)
        (port / "state").write_text(state + "\n")
        (port / "link_layer").write_text(layer + "\n")
        for name, value in counters.items():
            (port / "counters" / name).write_text(f"{value}\n")

    def log(self, *lines: bytes | str) -> None:
        with open(self.kernel, "ab") as handle:
            for line in lines:
                handle.write((line.encode() if isinstance(line, str) else line) + b"\n")

    def calls(self) -> list[list[str]]:
        path = self.dir / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def updates(self) -> list[list[str]]:
        return [c for c in self.calls() if c[0] == "update"]

    def run(self) -> subprocess.CompletedProcess:
        (self.dir / "calls.jsonl").unlink(missing_ok=True)
        result = subprocess.run(
            [sys.executable, str(PROGRAM), "--signals", "--expect", str(self.expect), "--state", str(self.dir / "state.json"),
             "--kernel-log", str(self.kernel), "--sysfs-ib", str(self.dir / "ib"), "--scontrol", str(self.dir / "scontrol"),
             "--nvidia-smi", str(self.dir / "nvidia-smi"), "--dcgmi", str(self.dir / "dcgmi"),
             "--journalctl", str(self.dir / "no-journalctl")],
            capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        return result


def xid_line(at: float, code: int, bus: str, text: str) -> str:
    return f"{at:.6f} {NODE} kernel: NVRM: Xid (PCI:{bus}): {code}, {text}"


def test_xids_from_the_kernel_log_are_reported_in_the_nodes_extra_exactly(tmp_path):
    node = Node(tmp_path)
    t = node.now - 100
    node.log(f"{t - 1:.6f} {NODE} kernel: mlx5_core 0000:0c:00.0: link up",
             xid_line(t, 79, "0000:3b:00", "pid='<unknown>', name=<unknown>, GPU has fallen off the bus."),
             xid_line(t + 1, 94, "0000:5e:00", "pid=4242, name=python3, Contained: SM (0x1). RST: No, D-RST: No"),
             xid_line(t + 2, 13, "0000:5e:00", "Graphics SM Warp Exception on (GPC 0, TPC 1, SM 0): Out Of Range Address"))
    out = node.run().stdout
    assert "SIGNAL xid 79: PCI:0000:3b:00: pid='<unknown>', name=<unknown>, GPU has fallen off the bus." in out
    (update,) = node.updates()
    assert update[:2] == ["update", f"NodeName={NODE}"] and update[2].startswith("Extra={")
    assert node.extra() == {"gf": {"signals": [
        {"signal": "xid", "code": 79, "detail": "PCI:0000:3b:00: pid='<unknown>', name=<unknown>, GPU has fallen off the bus.",
         "at": round(t, 6)},
        {"signal": "xid", "code": 94, "detail": "PCI:0000:5e:00: pid=4242, name=python3, Contained: SM (0x1). RST: No, D-RST: No",
         "at": round(t + 1, 6)},
        {"signal": "xid", "code": 13,
         "detail": "PCI:0000:5e:00: Graphics SM Warp Exception on (GPC 0, TPC 1, SM 0): Out Of Range Address", "at": round(t + 2, 6)},
    ]}}
    assert json.loads((tmp_path / "state.json").read_text())["kernel_cursor"] == round(t + 2, 6)
    # the cursor: a second run with no new line writes nothing (no load on slurmctld); a new line is taken alone
    assert "slurm: nothing new" in node.run().stdout and node.updates() == []
    node.log(xid_line(t + 50, 48, "0000:3b:00", "An uncorrectable double bit error"))
    node.run()
    assert [(s["code"], s["at"]) for s in node.extra()["gf"]["signals"]] == [(79, round(t, 6)), (94, round(t + 1, 6)),
                                                                             (13, round(t + 2, 6)), (48, round(t + 50, 6))]


def test_ecc_dcgm_health_rails_and_acceptance_checks_signal_once_on_a_change(tmp_path):
    node = Node(tmp_path)
    node.run()
    assert node.updates() == []                         # the first run's counters are the baseline, all is well
    (tmp_path / "ecc.csv").write_text(f"{BUS[0]}, 2, No\n{BUS[1]}, [N/A], Yes\n")
    (tmp_path / "health.txt").write_text("| Overall Health: Failure |\n| GPU 1 | Fail - NVLink link 3 down |\n")
    (tmp_path / "gpus.csv").write_text("NVIDIA H200, 570.86.15\n")
    node.port("mlx5_0", "4: ACTIVE", symbol_error=7, link_downed=1, link_error_recovery=4)      # +12 past 10
    node.port("mlx5_1", "1: DOWN", symbol_error=3, link_downed=0, link_error_recovery=0)        # +3: under 10
    node.port("mlx5_2", "1: DOWN", layer="Ethernet", symbol_error=500, link_downed=9, link_error_recovery=9)
    node.run()
    signals = node.extra()["gf"]["signals"]
    assert [(s["signal"], s["code"], s["detail"]) for s in signals] == [
        ("ecc_contained", None, f"{BUS[0]}: uncorrected ECC errors 0 -> 2"),
        ("ecc_uncontained", None, f"{BUS[1]}: row remapping failed"),
        ("dcgm_health", None, "| Overall Health: Failure |; | GPU 1 | Fail - NVLink link 3 down |"),
        ("ib_errors", None, "mlx5_0/1: link_downed +1, link_error_recovery +4, symbol_error +7"),
        ("ib_link_down", None, "mlx5_1/1: 1: DOWN"),
        ("health_check", None, "gpu_count: expected 2 GPUs, found 1"),
        ("health_check", None, "port_mlx5_1_1_active: mlx5_1/1: 1: DOWN"),
        ("health_check", None, "port_mlx5_2_1_active: mlx5_2/1: 1: DOWN"),
    ]
    assert {s["signal"] for s in signals} <= set(SIGNALS)
    # the same faults standing: nothing new, nothing written
    node.run()
    assert node.updates() == []


def signal(at: float, code: int = 79) -> dict:
    return {"signal": "xid", "code": code, "detail": "x", "at": at}


def test_the_ring_keeps_the_16_newest_none_older_than_a_day_and_the_rest_of_extra(tmp_path):
    node = Node(tmp_path)
    old = [signal(node.now - 90000)] + [signal(node.now - 1000 + i, 31) for i in range(12)]
    node.node({"state": ["IDLE"], "extra": json.dumps({"rack": "r01, slot 3", "gf": {"signals": old, "other": 1}})})
    node.log(*(xid_line(node.now - 20 + i, 43, "0000:3b:00", f"job {i} killed") for i in range(3)))
    node.run()
    extra = node.extra()
    assert extra["rack"] == "r01, slot 3"
    ring = extra["gf"]["signals"]                       # the day-old signal dropped, the ring not full
    assert [s["code"] for s in ring] == [31] * 12 + [43] * 3 and ring == sorted(ring, key=lambda s: s["at"])
    node.log(*(xid_line(node.now - 10 + i, 45, "0000:3b:00", f"job {i} ended") for i in range(3)))
    node.run()
    ring = node.extra()["gf"]["signals"]                # 18: the two oldest dropped
    assert [s["code"] for s in ring] == [31] * 10 + [43] * 3 + [45] * 3 and ring[0]["at"] == node.now - 1000 + 2


@pytest.mark.parametrize("extra", ['{"rack": "r01", "gf": "garbage"}', '{"rack": "r01", "gf": {"signals": "x", "diag": 3}}'])
def test_a_malformed_gf_key_is_written_anew_and_the_rest_of_extra_kept(tmp_path, extra):
    node = Node(tmp_path)
    node.node({"state": ["IDLE"], "extra": extra})
    node.log(xid_line(node.now - 5, 79, "0000:3b:00", "GPU has fallen off the bus."))
    node.run()
    assert node.extra() == {"rack": "r01", "gf": {"signals": [
        {"signal": "xid", "code": 79, "detail": "PCI:0000:3b:00: GPU has fallen off the bus.", "at": round(node.now - 5, 6)}]}}


def test_an_extra_that_is_not_a_json_object_is_left_alone_and_the_signals_wait(tmp_path):
    node = Node(tmp_path)
    node.node({"state": ["IDLE"], "extra": "rack=r01 owner=ops"})
    node.log(xid_line(node.now - 5, 79, "0000:3b:00", "GPU has fallen off the bus."))
    assert "left alone" in node.run().stdout
    assert node.updates() == [] and node.record()["extra"] == "rack=r01 owner=ops"
    node.node({"state": ["IDLE"], "extra": ""})          # the operator cleared it: the waiting signal is written
    node.run()
    assert [s["code"] for s in node.extra()["gf"]["signals"]] == [79]


def test_an_extra_or_a_state_nested_past_the_parser_never_crashes_the_agent(tmp_path):
    node = Node(tmp_path)
    (tmp_path / "state.json").write_text("[" * 200_000)
    node.node({"state": ["IDLE"], "extra": "[" * 200_000})
    node.log(xid_line(node.now - 5, 79, "0000:3b:00", "GPU has fallen off the bus."))
    assert "left alone" in node.run().stdout and node.updates() == []
    # a state file of the wrong shapes: each part dropped, the waiting signal kept
    state = json.loads((tmp_path / "state.json").read_text())
    assert [s["code"] for s in state["pending"]] == [79]
    state.update(ecc=[1], ib={"mlx5_0/1": "up"}, health_failed="gpu_count", kernel_cursor="soon", dcgm_health=7,
                 pending=state["pending"] + [{"signal": ["xid"], "code": 1, "detail": "x", "at": 1}, 3])
    (tmp_path / "state.json").write_text(json.dumps(state))
    node.node({"state": ["IDLE"], "extra": ""})
    node.run()
    assert [s["code"] for s in node.extra()["gf"]["signals"]] == [79]


def test_a_code_outside_0_to_65535_is_no_signal(tmp_path):
    node = Node(tmp_path)
    t = node.now - 50
    bad = [dict(signal(t - i, code), detail=f"bad {code!r}") for i, code in enumerate((65536, -1, "79", True, 1.5))]
    node.node({"state": ["IDLE"], "extra": json.dumps({"gf": {"signals": [*bad, signal(t - 9, 0)]}})})
    node.log(xid_line(t, 99999, "0000:3b:00", "past the limit"), xid_line(t + 1, 65535, "0000:3b:00", "at the limit"))
    out = node.run().stdout
    assert "99999" not in out
    assert [s["code"] for s in node.extra()["gf"]["signals"]] == [0, 65535]


def test_a_flood_of_one_signal_never_pushes_another_out_of_the_ring(tmp_path):
    """XID 48 and then one XID 43 per killed process, more than 16 in one run: the 48 stays, the older 43s go."""
    node = Node(tmp_path)
    t = node.now - 100
    node.log(xid_line(t, 48, "0000:3b:00", "An uncorrectable double bit error"),
             *(xid_line(t + 1 + i, 43, "0000:3b:00", f"pid={1000 + i}, Ch 00000008") for i in range(20)))
    node.run()
    ring = node.extra()["gf"]["signals"]
    assert [(s["code"], s["at"]) for s in ring] == [(48, round(t, 6))] + [(43, round(t + 1 + i, 6)) for i in range(5, 20)]
    # a run later, more of them: still the 48 and the newest 43s
    node.log(*(xid_line(t + 30 + i, 43, "0000:3b:00", f"pid={2000 + i}") for i in range(20)))
    node.run()
    assert [s["code"] for s in node.extra()["gf"]["signals"]] == [48] + [43] * 15


def test_the_heal_prefix_comes_from_the_expectations_and_the_gates_from_the_one_table(tmp_path):
    import importlib.machinery
    import importlib.util
    loader = importlib.machinery.SourceFileLoader("agent", str(PROGRAM))
    agent = importlib.util.module_from_spec(importlib.util.spec_from_loader("agent", loader))
    loader.exec_module(agent)
    assert agent.REASON_PREFIX == GATE_PREFIX
    assert not re.search(rf"{HEAL_PREFIX}(?!th)", PROGRAM.read_text())     # no copy of the service's prefix
    node = Node(tmp_path)
    node.expect.write_text(json.dumps(dict(json.loads(node.expect.read_text()), heal_prefix="acme-heal")))
    drained(node, f"{HEAL_PREFIX}: diagnose xid 79: GPU has fallen off the bus")
    node.run()
    assert diag_calls(node) == []
    drained(node, "acme-heal: diagnose xid 79: GPU has fallen off the bus")
    node.run()
    assert diag_calls(node) == [["dcgmi", "diag", "-r", "3"]]
    # no heal_prefix in the expectations: no drain is taken for the service's, and the run says so
    node.expect.write_text(json.dumps({k: v for k, v in json.loads(node.expect.read_text()).items() if k != "heal_prefix"}))
    drained(node, "acme-heal: diagnose xid 79: GPU has fallen off the bus")
    assert "diagnosis: off" in node.run().stdout and diag_calls(node) == []


def test_a_hostile_kernel_log_never_crashes_the_agent(tmp_path):
    node = Node(tmp_path)
    t = node.now - 50
    node.log(b"\x00\xff\xfe binary \x80\x81" * 1000,
             b"A" * 2_000_000,
             f"{t:.6f} {NODE} kernel: ".encode() + b"NVRM: Xid (PCI:0000:3b:00): 79, \xff\xfe\x1b[31m" + b"B" * 100_000,
             b"nan kernel: NVRM: Xid (PCI:0000:3b:00): 79, not a time",
             b"1e999 kernel: NVRM: Xid (PCI:0000:3b:00): 79, infinity",
             f"{t + 1:.6f} {NODE} kernel: NVRM: Xid (PCI:0000:3b:00): 99999999999, too long a code".encode())
    node.run()
    (taken,) = node.extra()["gf"]["signals"]
    assert (taken["code"], taken["at"]) == (79, round(t, 6))
    assert len(taken["detail"]) == 200 and taken["detail"].isprintable()


def drained(node: Node, reason: str, state: tuple[str, ...] = ("IDLE", "DRAIN"), extra: str = "") -> None:
    node.node({"state": list(state), "reason": reason, "extra": extra,
               "reason_changed_at": {"set": True, "infinite": False, "number": int(node.now) - 60}})


def diag_calls(node: Node) -> list[list[str]]:
    return [c for c in node.calls() if c[:2] == ["dcgmi", "diag"]]


def test_the_diagnosis_runs_once_per_diagnose_drain_and_reports_a_pass(tmp_path):
    node = Node(tmp_path)
    drained(node, "gigafactory-heal: diagnose xid 79: GPU has fallen off the bus")
    node.run()
    assert diag_calls(node) == [["dcgmi", "diag", "-r", "3"]]
    diag = node.extra()["gf"]["diag"]
    assert (diag["level"], diag["passed"], diag["detail"]) == (3, True, "dcgmi diag -r 3: | Memory | Pass |")
    assert diag["for"] == int(node.now) - 60            # the drain's reason_changed_at, as slurmctld gives it
    assert diag["at"] >= node.now and node.extra()["gf"]["signals"] == []
    node.run()                                          # this drain's diagnosis stands: not run again, nothing written
    assert diag_calls(node) == [] and node.updates() == []
    # a new drain to diagnose (after the diagnosis): run again
    node.node(dict(node.record(), reason_changed_at={"set": True, "number": int(time.time()) + 1}))
    node.run()
    assert diag_calls(node) == [["dcgmi", "diag", "-r", "3"]]


def test_a_diagnosis_names_its_drain_and_no_clock_decides_whether_it_stands(tmp_path):
    """The node's clock against slurmctld's: a diag whose ``at`` (node clock, here far ahead) is newer than the new
    drain's reason_changed_at (controller clock) is still another drain's; only ``for`` says which drain it was."""
    node = Node(tmp_path)
    ahead = {"level": 3, "passed": True, "detail": "dcgmi diag -r 3: passed an hour ahead", "at": node.now + 3600,
             "for": int(node.now) - 7200}
    drained(node, "gigafactory-heal: diagnose xid 79: GPU has fallen off the bus", extra=json.dumps({"gf": {"diag": ahead}}))
    node.run()
    assert diag_calls(node) == [["dcgmi", "diag", "-r", "3"]] and node.extra()["gf"]["diag"]["for"] == int(node.now) - 60
    # a diag without for (an older agent's) never stands for a drain
    node.node(dict(node.record(), extra=json.dumps({"gf": {"diag": {k: v for k, v in ahead.items() if k != "for"}}})))
    node.run()
    assert diag_calls(node) == [["dcgmi", "diag", "-r", "3"]]
    node.run()
    assert diag_calls(node) == [] and node.updates() == []


@pytest.mark.parametrize(("reason", "state"), [
    ("gigafactory-heal: reboot xid 79: GPU has fallen off the bus", ("IDLE", "DRAIN")),
    ("gigafactory-heal: diagnose xid 79: GPU has fallen off the bus", ("MIXED", "DRAIN")),     # a job still runs
    ("gigafactory-heal: diagnose xid 79: GPU has fallen off the bus", ("IDLE",)),              # resumed
    ("gigafactory-health: gpu_count: expected 8 GPUs, found 7", ("IDLE", "DRAIN")),
    ("bad DIMM, diagnose later", ("IDLE", "DRAIN")),
])
def test_the_diagnosis_runs_only_under_the_diagnose_reason_on_an_idle_drained_node(tmp_path, reason, state):
    node = Node(tmp_path)
    drained(node, reason, state)
    node.run()
    assert diag_calls(node) == [] and node.updates() == []


def test_a_failed_diagnosis_reports_its_level_and_a_dcgm_diag_signal(tmp_path):
    node = Node(tmp_path)
    (tmp_path / "diag.txt").write_text("| Memory | Fail - GPU 1: DBE detected |\n")
    (tmp_path / "diag.rc").write_text("226")
    drained(node, "gigafactory-heal: diagnose xid 48: double bit error", extra='{"gf": {"signals": []}}')
    node.run()
    gf = node.extra()["gf"]
    assert (gf["diag"]["passed"], gf["diag"]["detail"]) == (False, "dcgmi diag -r 3: | Memory | Fail - GPU 1: DBE detected |")
    assert [(s["signal"], s["code"], s["detail"]) for s in gf["signals"]] == [
        ("dcgm_diag", 3, "dcgmi diag -r 3: | Memory | Fail - GPU 1: DBE detected |")]


def test_without_dcgmi_the_acceptance_checks_stand_in_as_the_diagnosis(tmp_path):
    node = Node(tmp_path, dcgmi=False)
    drained(node, "gigafactory-heal: diagnose health_check: gpu_count")
    node.run()
    diag = node.extra()["gf"]["diag"]
    assert (diag["passed"], diag["detail"]) == (True, "6 acceptance checks passed (no dcgmi)")
    (tmp_path / "gpus.csv").write_text("NVIDIA H200, 570.86.15\n")
    node.node(dict(node.record(), reason_changed_at={"set": True, "number": int(time.time()) + 1}))
    node.run()
    diag = node.extra()["gf"]["diag"]
    assert (diag["passed"], diag["detail"]) == (False, "gpu_count: expected 2 GPUs, found 1")


REAL_DRIVER = """
set -u
run() {{ {python} {program} --signals --expect {d}/expect.json --state {d}/state.json --kernel-log {d}/kern.log \\
  --sysfs-ib {d}/no-ib --scontrol {d}/bin/scontrol --nvidia-smi {d}/none --dcgmi {d}/none --journalctl {d}/none; }}
echo '=== first'; run
echo '=== second'; run
{d}/bin/scontrol update NodeName=node01 State=DRAIN "Reason=gigafactory-heal: diagnose xid 79: GPU has fallen off the bus"
echo '=== diagnose'; run
echo '=== again'; run
echo '=== json'; {d}/bin/scontrol show node node01 --json
"""


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("debootstrap") or not shutil.which("unshare"),
                    reason="needs root, debootstrap and unshare")
def test_slurm_24_11_takes_the_agents_extra_and_gives_it_back_intact(tmp_path):
    """A real slurmctld and slurmd (node01 of demo): the agent's ``scontrol update .. Extra=<json>`` with quotes,
    blanks and commas in a detail reads back byte for byte from ``scontrol show node --json``; the diagnosis runs
    under a real ``gigafactory-heal: diagnose`` drain (no dcgmi here: the acceptance checks stand in), once."""
    from conftest import DEMO
    from realslurm import daemon_logs, run_in_slurm, slurm_chroot
    from test_metering_real import _for_a_chroot

    from infra.plan import build_plan
    from infra.render.files import render_file, slurm_files
    from infra.site import load_site

    plan = build_plan(load_site(DEMO))
    files = {f"/etc/{rel}": content for rel, content in slurm_files(plan).items()}
    files["/etc/slurm/slurm.conf"] = _for_a_chroot(files["/etc/slurm/slurm.conf"])
    files["/etc/slurm/cgroup.conf"] = "CgroupPlugin=disabled\n"
    files["/etc/hosts"] = render_file(plan, "hosts")
    root = slurm_chroot(slurmd=True)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "scontrol").write_text(f'#!/bin/sh\nexec chroot {root} scontrol "$@"\n')
    (tmp_path / "bin" / "scontrol").chmod(0o755)
    (tmp_path / "expect.json").write_text(json.dumps({"node": "node01", "gpus": 0, "cuda": {}, "hcas": 0, "rails": [],
                                                      "heal_prefix": HEAL_PREFIX}))
    at = time.time() - 30
    detail = """pid=4242, name="python3 train.py", it's 'quoted', {braces}, a\\\\backslash"""
    (tmp_path / "kern.log").write_text(xid_line(at, 79, "0000:3b:00", detail) + "\n" + xid_line(at + 1, 13, "0000:5e:00", "a, b c") + "\n")
    driver = tmp_path / "driver.sh"
    driver.write_text(REAL_DRIVER.format(python=sys.executable, program=PROGRAM, d=tmp_path))
    nodes = {n: plan.hosts[n].address() for n in ("node01",)}
    result = run_in_slurm(root, files, controller=plan.slurm.controllers[0], dbd=plan.slurm.accounting,
                          cluster=plan.slurm.cluster, slurmd=next(iter(nodes.items())), commands=[],
                          host_commands=[f"bash {driver}"], timeout=300, host_timeout=120)
    out = result.stdout
    assert "=== json" in out, out[-4000:] + result.stderr[-3000:] + daemon_logs(root)
    sections = dict(part.split("\n", 1) for part in out.split("=== ")[1:])
    assert "slurm: written" in sections["first"] and "slurm: nothing new" in sections["second"], out
    assert "diagnosed: 2 acceptance checks passed (no dcgmi)" in sections["diagnose"], out
    assert "slurm: nothing new" in sections["again"], out
    (node,) = json.loads(sections["json"])["nodes"]
    gf = json.loads(node["extra"])["gf"]
    assert [(s["code"], s["detail"]) for s in gf["signals"]] == [(79, f"PCI:0000:3b:00: {detail}"), (13, "PCI:0000:5e:00: a, b c")]
    assert gf["diag"]["passed"] and gf["diag"]["level"] == 2
    assert "DRAIN" in node["state"] and node["reason"].startswith("gigafactory-heal: diagnose xid 79")


def test_the_periodic_quick_diagnosis_runs_on_an_idle_node_in_service_at_its_interval(tmp_path):
    node = Node(tmp_path)
    expect = json.loads(node.expect.read_text())
    node.expect.write_text(json.dumps(dict(expect, periodic_diag_s=3600)))
    node.run()                                          # idle, in service, never run: due
    assert diag_calls(node) == [["dcgmi", "diag", "-r", "1"]] and node.updates() == []     # passed: nothing to report
    node.run()                                          # within the interval: not again
    assert diag_calls(node) == []
    state = json.loads((tmp_path / "state.json").read_text())
    (tmp_path / "state.json").write_text(json.dumps(dict(state, periodic_diag_at=state["periodic_diag_at"] - 3600)))
    (tmp_path / "diag.txt").write_text("| PCIe | Fail - GPU 0: link width x8 of x16 |\n")
    (tmp_path / "diag.rc").write_text("226")
    node.run()                                          # due again, and failing: a dcgm_diag signal of code 1
    assert diag_calls(node) == [["dcgmi", "diag", "-r", "1"]]
    assert [(s["signal"], s["code"], s["detail"]) for s in node.extra()["gf"]["signals"]] == [
        ("dcgm_diag", 1, "dcgmi diag -r 1: | PCIe | Fail - GPU 0: link width x8 of x16 |")]


@pytest.mark.parametrize("state", [("MIXED",), ("ALLOCATED",), ("IDLE", "DRAIN"), ("DOWN",), ("IDLE", "NOT_RESPONDING")])
def test_the_periodic_quick_diagnosis_never_runs_under_a_job_or_out_of_service(tmp_path, state):
    node = Node(tmp_path)
    expect = json.loads(node.expect.read_text())
    node.expect.write_text(json.dumps(dict(expect, periodic_diag_s=60)))
    drained(node, "", state)
    node.run()
    assert diag_calls(node) == []
