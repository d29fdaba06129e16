"""A run stops when asked: SIGINT or SIGTERM to a real ``gigafactory up`` stops it between tasks, writes hosts.json and
summary.json and exits 130 or 143; a second SIGINT stops it at once (docs/hardening.md).

Every host is ``ansible_connection=local`` (as in test_orchestrate.py); the driver below runs the real command line
with two test phases: ``one`` starts a long command, then records that it went on; ``two`` records that it ran.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT
from test_orchestrate import HOSTS, bed, sharded_site  # noqa: F401 - bed is the fixture run_bed builds on

WAIT_S = 120            # bounds every wait: a run that does not stop fails the test instead of hanging it

DRIVER = """\
import dataclasses, sys
from pathlib import Path
from infra.cli import orchestrate as cli
from infra.plan.phases import Phase
books, executors, argv = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
sys.path.insert(0, str(Path(__file__).parent))
if executors:               # the shards' workers as local processes (test_orchestrate.local_executors)
    sys.path.insert(0, executors)
    from test_orchestrate import local_executors
plain = cli.options_from
cli.options_from = lambda args: dataclasses.replace(
    plain(args), phases=(Phase("one"), Phase("two")), playbook_dir=books,
    worker_command=local_executors(Path(args.site).parent.parent) if executors else None)
from infra.cli import main
sys.exit(main(argv))
"""

ONE = """\
- name: Phase one
  hosts: all
  gather_facts: false
  tasks:
    - name: Sleep
      ansible.builtin.shell: "echo $$ > {{ gf_test_dir }}/sleep.pid && exec sleep 300"
      changed_when: true
    - name: Go on
      ansible.builtin.file:
        path: "{{ gf_test_dir }}/after-sleep"
        state: touch
        mode: "0644"
"""
TWO = """\
- name: Phase two
  hosts: all
  gather_facts: false
  tasks:
    - name: Phase two ran
      ansible.builtin.file:
        path: "{{ gf_test_dir }}/two"
        state: touch
        mode: "0644"
"""


@pytest.fixture
def run_bed(bed):  # noqa: F811 - the parameter names test_orchestrate's fixture, imported above
    """test_orchestrate's bed (a demo-shaped site, a local-connection inventory, a directory per host), this file's
    playbooks, and a way to start the real command line on them."""
    tmp_path, site, inv = bed.root, bed.site_file, bed.root / "local.yml"
    books = tmp_path / "stop-playbooks"
    books.mkdir()
    (books / "one.yml").write_text(ONE)
    (books / "two.yml").write_text(TWO)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    run_dir = tmp_path / "run"

    def start(sharded: bool = False) -> subprocess.Popen:
        if sharded:
            sharded_site(bed)
        env = dict(os.environ, PYTHONPATH=str(ROOT), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
        return subprocess.Popen([sys.executable, str(driver), str(books), str(ROOT / "tests") if sharded else "", "up", str(site), "-i", str(inv),
                                 "--run-dir", str(run_dir)], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    return tmp_path, run_dir, start


def _sleep_started(run_dir: Path, hosts_dir: Path, sharded: bool = False) -> bool:
    """The Sleep task's start events in the run's job events (a shard's, buffered, are read after the shard), and
    its command running on every host."""
    started = set()
    for path in (run_dir / "ansible" / "artifacts").glob("*/job_events/*.json"):
        try:
            event = json.loads(path.read_text())
        except (OSError, ValueError):
            continue            # being written
        data = event.get("event_data") or {}
        if event.get("event") == "runner_on_start" and data.get("task") == "Sleep":
            started.add(data.get("host"))
    return (sharded or started == set(HOSTS)) and all((hosts_dir / h / "sleep.pid").is_file() for h in HOSTS)


def _wait_for(condition, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"the run never reached its long task (rc {proc.returncode}): {out[-2000:]} {err[-2000:]}")
        time.sleep(0.2)


def _ended(proc: subprocess.Popen) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=WAIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the run did not stop when asked: {out[-2000:]} {err[-2000:]}")


def _process_gone(pid: int) -> bool:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state == "Z":
            return True
        time.sleep(0.2)
    return False


def _assert_stopped_between_tasks(tmp: Path, run_dir: Path, proc: subprocess.Popen, out: str, err: str,
                                  code: int, name: str) -> dict:
    assert proc.returncode == code, (out, err)
    assert "Traceback" not in err
    summary = json.loads((run_dir / "summary.json").read_text())
    hosts = json.loads((run_dir / "hosts.json").read_text())
    assert summary["exit_code"] == code and "interrupted" in summary["stopped"], summary
    assert set(hosts) == set(HOSTS)
    for h in HOSTS:
        assert not (tmp / "hosts" / h / "after-sleep").exists(), f"{h}: the task after the interrupted one ran"
        assert not (tmp / "hosts" / h / "two").exists(), f"{h}: the next phase ran"
        assert _process_gone(int((tmp / "hosts" / h / "sleep.pid").read_text())), f"{h}: the long command still runs"
    return summary


@pytest.mark.parametrize("sig, code, sharded", [(signal.SIGINT, 130, False), (signal.SIGTERM, 143, False),
                                               (signal.SIGINT, 130, True)])
def test_a_signal_stops_a_real_run_between_tasks_and_writes_its_record(run_bed, sig, code, sharded):
    """Sharded: the wave runs as shards on execution hosts (ansible-runner's transmit / worker / process)."""
    tmp, run_dir, start = run_bed
    proc = start(sharded)
    _wait_for(lambda: _sleep_started(run_dir, tmp / "hosts", sharded), proc)
    proc.send_signal(sig)
    out, err = _ended(proc)
    summary = _assert_stopped_between_tasks(tmp, run_dir, proc, out, err, code, signal.Signals(sig).name)
    assert signal.Signals(sig).name in summary["stopped"]
    hosts = json.loads((run_dir / "hosts.json").read_text())
    assert all(r["status"] == "pending" and r["message"] == "interrupted during one" for r in hosts.values()), hosts
    assert f"stopped: interrupted ({signal.Signals(sig).name})" in out


def test_a_second_sigint_stops_at_once(run_bed):
    """The first SIGINT alone would stop the run only at ansible-runner's next poll, here 300 s away (its
    pexpect_timeout from the private data directory's env/settings); the second stops it at once."""
    tmp, run_dir, start = run_bed
    (run_dir / "ansible" / "env").mkdir(parents=True)
    (run_dir / "ansible" / "env" / "settings").write_text("pexpect_timeout: 300\n")
    proc = start()
    _wait_for(lambda: _sleep_started(run_dir, tmp / "hosts"), proc)
    proc.send_signal(signal.SIGINT)
    line = proc.stderr.readline()          # the first signal's message: its handler ran
    assert "again to stop at once" in line, line
    proc.send_signal(signal.SIGINT)
    out, err = _ended(proc)
    summary = _assert_stopped_between_tasks(tmp, run_dir, proc, out, err, 130, "SIGINT")
    assert summary["stopped"].startswith("interrupted at once"), summary
    assert "SIGINT: stopped at once" in err


def _interrupted_rollout(when: str):
    """Two nodes of one partition, one out at a time; node01 runs a job for long. The cancellation is set while the
    rollout waits for node01's job (``when="waiting"``) or during node02's health gate (``when="health"``)."""
    import io

    from test_rollout import Clock, FakeSlurm, Recorder

    from infra.runner.cancel import Cancellation
    from infra.orchestrate.progress import LineProgress
    from infra.orchestrate.rollout import HostImpact, Rollout, Slurm
    clock, cancel = Clock(), Cancellation()
    nodes = ["node01", "node02"]
    slurm = FakeSlurm(clock, nodes, jobs={"node01": 10_000})

    def sleep(seconds: float) -> None:
        if when == "waiting":
            cancel.request()
        clock.sleep(seconds)

    apply = Recorder(clock, "apply")
    health = Recorder(clock, "health", on_call=lambda hosts: when == "health" and cancel.request())
    result = Rollout(impacts={h: HostImpact(h, "drain", ("slurm.nodes: gres changed",)) for h in nodes},
                     domains={"partition batch": nodes}, schedulers=dict.fromkeys(nodes, Slurm(slurm)), apply=apply,
                     health=health, reboot=lambda hosts: {}, max_unavailable_percent=50,
                     progress=LineProgress(io.StringIO(), clock=clock), poll_s=5, clock=clock, sleep=sleep,
                     cancelled=cancel).run()
    return result, slurm, apply


def test_a_rollout_interrupted_while_waiting_leaves_its_drained_nodes_named():
    result, slurm, apply = _interrupted_rollout("waiting")
    assert result.stopped.startswith("interrupted"), result.stopped
    assert result.nodes["node02"].status == "ok"                     # idle first: updated, gated, back before
    assert result.left_out == ["node01"] and "DRAIN" in slurm.flags["node01"]
    assert "node01" not in apply.order()                             # its job still runs: never updated


def test_a_rollout_interrupted_during_the_health_gate_never_puts_the_node_back():
    result, slurm, apply = _interrupted_rollout("health")
    assert result.stopped.startswith("interrupted"), result.stopped
    assert result.left_out == ["node02"] and "DRAIN" in slurm.flags["node02"]
    assert result.nodes["node02"].status == "pending" and "resumed" not in result.nodes["node02"].steps
    assert "node01" not in slurm.out()                               # never taken out after the interruption


def test_the_hosts_left_drained_come_with_the_command_that_resumes_them():
    from infra.orchestrate.up import resume_commands
    from infra.plan import build_plan
    from infra.site import load_site
    from conftest import RIGA
    plan = build_plan(load_site(str(RIGA)), str(RIGA))
    worker = plan.groups["k8s_worker"][0]
    assert resume_commands(plan, ["gpu0001", "gpu0002", worker]) == [
        "scontrol update nodename=gpu[0001-0002] state=resume", f"kubectl uncordon {worker}"]


def test_a_scheduler_command_asked_after_the_interruption_is_not_run(tmp_path):
    from infra.orchestrate.rollout import AnsibleCommand
    control = AnsibleCommand("ctl01", [tmp_path / "none.yml"], tmp_path / "control", ROOT / "ansible.cfg",
                             cancel=lambda: True)
    result = control.run(["scontrol", "update", "nodename=node01", "state=resume"])
    assert result.rc == 1 and "interrupted" in result.stderr
    assert control.calls == 0 and not (tmp_path / "control").exists()
