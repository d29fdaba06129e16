"""gigafactory up: phases in order through ansible-runner, failed hosts left out, max-fail, retry, check, waves, run dir.

Every host is ``ansible_connection=local`` with a directory of its own; the phase playbooks are tiny test
playbooks injected through ``UpOptions.playbook_dir``/``phases``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import sys
from pathlib import Path

import pytest
import yaml
from conftest import DEMO, RIGA, site_data

from infra.cli import main as cli_main
from infra.orchestrate import PHASES, Phase, UpOptions, up
from infra.runner.execution import Worker
from infra.orchestrate.up import OrchestrationError
from infra.orchestrate.waves import phase_waves, waves
from infra.plan import build_plan
from infra.site import SiteInvalid, load_site

HOSTS = ["ctl01", "node01", "node02"]
SECRET = "gf-test-secret-8d41c"
TEST_PHASES = (Phase("one", first=("slurm_controller",)), Phase("two", ("slurm_compute",)), Phase("three"))

PLAYBOOK = """\
- name: Phase {phase}
  hosts: {hosts}
  gather_facts: false
  tasks:
    - name: Kill the executor whose process group the marker names
      ansible.builtin.shell: /bin/kill -s KILL -- "-$(cat "$(cat {{{{ gf_test_dir }}}}/kill-executor-{phase})")"
      when: (gf_test_dir ~ '/kill-executor-{phase}') is exists
      changed_when: true
    - name: Look for this phase's failure marker
      ansible.builtin.stat:
        path: "{{{{ gf_test_dir }}}}/fail-{phase}"
      register: marker
    - name: Fail where the marker says so
      ansible.builtin.assert:
        that: not marker.stat.exists
        fail_msg: "{phase} failed on purpose"
    - name: Use the secret
      ansible.builtin.debug:
        msg: "{{{{ gf_test_secret }}}}"
      no_log: true
    - name: Fail with the secret where the marker says so
      ansible.builtin.fail:
        msg: "leaking {{{{ gf_test_secret }}}}"
      when: (gf_test_dir ~ '/secret-fail-{phase}') is exists
      no_log: true
    - name: Record the phase
      ansible.builtin.shell: "echo {phase} >> {{{{ gf_test_dir }}}}/log"
      changed_when: true
    - name: Keep a file
      ansible.builtin.copy:
        dest: "{{{{ gf_test_dir }}}}/{phase}.txt"
        content: "{phase}\\n"
        mode: "0644"
"""


@pytest.fixture
def bed(tmp_path: Path):
    """A demo-shaped site, a local-connection inventory with a directory per host, and the test playbooks."""
    data = site_data(DEMO)
    data["provisioning"] = {"max_fail_percent": 50, "batch": ["100%"]}
    (tmp_path / "site").mkdir()
    site = tmp_path / "site" / "site.yml"
    site.write_text(yaml.safe_dump(data))
    hosts = {h: {"gf_test_dir": str(tmp_path / "hosts" / h)} for h in HOSTS}
    for h in HOSTS:
        (tmp_path / "hosts" / h).mkdir(parents=True)
    inv = tmp_path / "local.yml"
    inv.write_text(yaml.safe_dump({"all": {"hosts": hosts, "vars": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable, "gf_test_secret": SECRET}}}))
    books = tmp_path / "playbooks"
    books.mkdir()
    for p in TEST_PHASES:
        (books / f"{p.name}.yml").write_text(PLAYBOOK.format(phase=p.name, hosts=",".join(p.groups) or "all"))

    class Bed:
        root = tmp_path
        site_file = site

        @staticmethod
        def dir(host: str) -> Path:
            return tmp_path / "hosts" / host

        @staticmethod
        def log(host: str) -> list[str]:
            f = tmp_path / "hosts" / host / "log"
            return f.read_text().split() if f.exists() else []

        @staticmethod
        def mark(host: str, phase: str, kind: str = "fail") -> Path:
            f = tmp_path / "hosts" / host / f"{kind}-{phase}"
            f.touch()
            return f

        out = io.StringIO()

        @classmethod
        def output(cls) -> str:
            return cls.out.getvalue()

        @classmethod
        def options(cls, run: str = "run1", **kw) -> UpOptions:
            kw.setdefault("out", cls.out)
            kw.setdefault("run_dir", tmp_path / "runs" / run)
            return UpOptions(site=site, phases=TEST_PHASES, playbook_dir=books, inventories=[inv], **kw)
    return Bed


def hosts_json(run_dir: Path) -> dict:
    return json.loads((run_dir / "hosts.json").read_text())


def test_phases_run_in_order_and_the_run_dir_keeps_everything(bed):
    outcome = up(bed.options())
    assert outcome.exit_code == 0, outcome.hosts
    assert bed.log("ctl01") == ["one", "three"]              # not in slurm_compute
    assert bed.log("node01") == bed.log("node02") == ["one", "two", "three"]
    run = outcome.run_dir
    assert {h: r["status"] for h, r in hosts_json(run).items()} == dict.fromkeys(HOSTS, "ok")
    assert hosts_json(run)["node01"]["phases_done"] == ["one", "two", "three"]
    assert hosts_json(run)["node01"]["changed"] == 6         # shell + copy in each of three phases
    summary = json.loads((run / "summary.json").read_text())
    assert summary["exit_code"] == 0 and [p["name"] for p in summary["phases"]] == ["one", "two", "three"]
    assert (run / "rendered" / "slurm" / "slurm.conf").is_file()
    assert list((run / "ansible" / "artifacts" / "01-one-w1" / "job_events").glob("*.json"))


def test_a_failed_host_is_left_out_of_later_phases_and_the_others_go_on(bed):
    bed.mark("node01", "one")
    outcome = up(bed.options())
    assert outcome.exit_code == 1 and outcome.stopped is None
    assert bed.log("node01") == []
    assert bed.log("node02") == ["one", "two", "three"] and bed.log("ctl01") == ["one", "three"]
    r = hosts_json(outcome.run_dir)["node01"]
    assert (r["status"], r["phase"], r["failed_task"]) == ("failed", "one", "Fail where the marker says so")
    assert r["message"] == "one failed on purpose"
    assert "one failed on purpose" in bed.output()


def test_more_failures_than_max_fail_stop_the_run(bed):
    bed.mark("node01", "one")
    outcome = up(bed.options(max_fail=10))        # 1 of 3 hosts = 33% > 10%
    assert outcome.exit_code == 1 and outcome.stopped and "one" in outcome.stopped
    assert bed.log("ctl01") == ["one"] and bed.log("node02") == ["one"]
    statuses = {h: r["status"] for h, r in hosts_json(outcome.run_dir).items()}
    assert statuses == {"ctl01": "pending", "node01": "failed", "node02": "pending"}
    assert [p.name for p in outcome.phases] == ["one"]


def test_retry_reruns_only_the_failed_hosts_from_their_failed_phase(bed):
    marker = bed.mark("node02", "two")
    first = up(bed.options("a"))
    assert first.exit_code == 1 and bed.log("node02") == ["one"]
    marker.unlink()
    again = up(bed.options("b", retry=True))
    assert again.exit_code == 0
    assert bed.log("node02") == ["one", "two", "three"]
    assert bed.log("node01") == ["one", "two", "three"] and bed.log("ctl01") == ["one", "three"]
    assert list(hosts_json(again.run_dir)) == ["node02"]
    summary = json.loads((again.run_dir / "summary.json").read_text())
    assert summary["retry_of"] == str(first.run_dir)
    assert [p["hosts"] for p in summary["phases"]] == [[], ["node02"], ["node02"]]


def test_check_mode_changes_nothing(bed):
    outcome = up(bed.options(check=True))
    assert outcome.exit_code == 0
    for h in HOSTS:
        assert list(bed.dir(h).iterdir()) == []
    assert hosts_json(outcome.run_dir)["node01"]["changed"] > 0   # the copies it would have made


def test_a_failing_canary_stops_the_later_waves(bed):
    bed.mark("ctl01", "one")
    outcome = up(bed.options(batch=["1", "100%"]))
    assert outcome.exit_code == 1 and "wave" in outcome.stopped
    # ctl01 (the Slurm controller the nodes depend on) leads, then the canary node01, then the rest.
    assert outcome.phases[0].waves == [["ctl01"], ["node01"], ["node02"]]
    assert bed.log("node01") == bed.log("node02") == []
    assert {h: r["status"] for h, r in hosts_json(outcome.run_dir).items()}["node01"] == "pending"


def test_waves_follow_ansible_serial_semantics():
    hosts = [f"n{i}" for i in range(10)]
    assert [len(w) for w in waves(hosts, ["1", "25%", "100%"])] == [1, 2, 7]
    assert [len(w) for w in waves(hosts, ["3"])] == [3, 3, 3, 1]
    assert sum(waves(hosts, ["1", "10%"]), []) == hosts


def test_an_invalid_site_exits_2_and_runs_nothing(bed, monkeypatch, capsys):
    data = yaml.safe_load(bed.site_file.read_text())
    data["pools"][0]["type"] = "no-such-type"
    bed.site_file.write_text(yaml.safe_dump(data))
    with pytest.raises(SiteInvalid):
        up(bed.options())
    from infra import cli
    from infra.cli import orchestrate as ocli
    monkeypatch.setattr(ocli, "options_from", lambda args: bed.options())
    assert cli.main(["up", str(bed.site_file)]) == 2
    assert not (bed.root / "runs").exists()
    assert all(list(bed.dir(h).iterdir()) == [] for h in HOSTS)


def test_bad_input_is_refused_before_anything_runs(bed):
    with pytest.raises(OrchestrationError, match="unknown phase"):
        up(bed.options(only=["nope"]))
    with pytest.raises(OrchestrationError, match="not a host or group"):
        up(bed.options(limit="node09"))
    with pytest.raises(OrchestrationError, match="no earlier run"):
        up(bed.options(retry=True))
    assert all(list(bed.dir(h).iterdir()) == [] for h in HOSTS)


def test_a_no_log_secret_never_reaches_the_run_dir(bed):
    bed.mark("node01", "one", kind="secret-fail")
    outcome = up(bed.options())
    assert outcome.exit_code == 1
    assert "no_log" in hosts_json(outcome.run_dir)["node01"]["message"]
    files = [p for p in outcome.run_dir.rglob("*") if p.is_file()]
    assert len(files) > 10
    leaked = [str(p) for p in files if SECRET in p.read_text(errors="replace")]
    assert leaked == []
    assert "node01: FAILED" in bed.output() and SECRET not in bed.output()


def test_the_run_dir_and_everything_in_it_are_readable_by_their_owner_only(bed, capsys):
    import os
    import stat

    bed.root.joinpath("runs").mkdir(mode=0o755)
    before = os.umask(0o022)      # a usual umask: the run must not depend on the caller's
    try:
        outcome = up(bed.options(run_dir=None, runs_root=bed.root / "runs"))
        assert os.umask(0o022) == 0o022                          # the caller's umask is given back
    finally:
        os.umask(before)
    assert outcome.exit_code == 0, outcome.hosts
    assert outcome.run_dir.parent.parent == bed.root / "runs"   # runs/<site>/<stamp>, both made by the run
    paths = [outcome.run_dir.parent, outcome.run_dir, *outcome.run_dir.rglob("*")]
    assert len(paths) > 20 and any(p.parts[-2] == "job_events" for p in paths)
    loose = [f"{oct(stat.S_IMODE(p.lstat().st_mode))} {p}" for p in paths
             if not p.is_symlink() and stat.S_IMODE(p.lstat().st_mode) & 0o077]
    assert loose == []
    # The run keeps the site file it validated, for `gigafactory diff --against RUN_DIR`: nothing changed since.
    recorded = outcome.run_dir / "site.yml"
    assert recorded.read_text() == Path(bed.options().site).read_text()
    capsys.readouterr()
    assert cli_main(["diff", str(bed.options().site), "--against", str(outcome.run_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["changes"] == []


def test_stop_reason_is_strictly_more_than_max_fail_of_the_wave_or_the_phase():
    from infra.orchestrate.up import stop_reason
    assert stop_reason("base", 1, 3, 1, 3, 34) is None              # 33% is not more than 34%
    assert "wave" in stop_reason("base", 1, 1, 1, 10, 34)           # a failed canary
    assert "phase" in stop_reason("base", 1, 5, 4, 10, 34)          # 40% of the phase so far
    assert stop_reason("base", 0, 5, 0, 10, 0) is None
    assert stop_reason("base", 1, 100, 1, 100, 0) is not None


def test_the_kubernetes_phase_takes_control_planes_before_workers():
    from infra.orchestrate import PHASES
    from infra.plan import build_plan
    from infra.site import load_site
    plan = build_plan(load_site(RIGA), RIGA)
    [phase] = [p for p in PHASES if p.name == "kubernetes"]
    hosts = phase.hosts(plan)
    assert hosts[:3] == ["k8s-cp01", "k8s-cp02", "k8s-cp03"]
    assert hosts[3:] == [f"gpu{n:04d}" for n in range(97, 129)]
    first, canary, *_ = phase_waves(hosts, ["1", "100%"], phase.providers(plan, hosts))
    assert first == ["k8s-cp01", "k8s-cp02", "k8s-cp03"] and canary == ["gpu0097"]


def riga_waves(name: str, sizes: list[str]) -> list[list[str]]:
    from infra.orchestrate import PHASES
    from infra.plan import build_plan
    from infra.site import load_site
    plan = build_plan(load_site(RIGA), RIGA)
    [phase] = [p for p in PHASES if p.name == name]
    hosts = phase.hosts(plan)
    return phase_waves(hosts, sizes, phase.providers(plan, hosts))


def test_riga_1_slurm_phase_runs_accounting_and_controllers_first_then_a_compute_canary():
    slurm = riga_waves("slurm", ["1", "25%", "100%"])
    assert sorted(slurm[0]) == ["ctl01", "ctl02", "db01"]
    assert slurm[1] == ["gpu0001"]
    assert [len(w) for w in slurm] == [3, 1, 24, 73]
    assert not {"ctl01", "ctl02", "db01"} & {h for w in slurm[1:] for h in w}
    assert sorted(h for w in slurm for h in w) == sorted(riga_waves("slurm", ["100%"])[0])


def test_riga_1_rdma_phase_runs_the_subnet_managers_first():
    rdma = riga_waves("rdma", ["1", "25%", "100%"])
    assert rdma[0] == ["sm01", "sm02"] and len(rdma[1]) == 1 and rdma[1] != ["sm01"]


def test_a_phase_without_providers_starts_with_its_canary():
    gpu = riga_waves("gpu", ["1", "25%", "100%"])
    assert [len(w) for w in gpu] == [1, 32, 95] and gpu[0] == ["gpu0001"]


def test_a_small_phase_runs_as_one_wave_and_a_large_one_keeps_its_canary():
    from infra.orchestrate.waves import is_small
    demo = build_plan(load_site(DEMO), DEMO)
    hosts = list(demo.hosts)
    [slurm] = [p for p in PHASES if p.name == "slurm"]
    first = slurm.providers(demo, hosts)
    assert first == ["ctl01"]
    assert phase_waves(hosts, ["1", "25%", "100%"], first) == [["ctl01", "node01", "node02"]]
    assert phase_waves(hosts, ["1", "100%"], first, one_wave_when_small=False) == [["ctl01"], ["node01"], ["node02"]]
    assert is_small(9, ["1", "100%"]) and not is_small(10, ["1", "100%"])   # a canary of 1: fewer than 10 hosts
    assert is_small(40, ["5", "100%"]) and not is_small(40, ["10%", "100%"])
    assert len(riga_waves("kubernetes", ["1", "25%", "100%"])) == 4             # 35 hosts: not small


def test_the_demo_runs_each_phase_once_with_the_default_batch(bed):
    data = yaml.safe_load(bed.site_file.read_text())
    data["provisioning"]["batch"] = ["1", "25%", "100%"]
    bed.site_file.write_text(yaml.safe_dump(data))
    outcome = up(bed.options())
    assert outcome.exit_code == 0
    assert [len(p.waves) for p in outcome.phases] == [1, 1, 1]


HUNG_SECONDS = 150      # how long a hung stand-in sleeps; the idle timeout of the test that hangs one is far shorter


def local_executors(root: Path):
    """Execution hosts as local ``ansible-runner worker`` processes, each the leader of its own process group,
    whose id it leaves in ``<root>/work/<executor>.pgid`` (so that a task can kill its executor mid-shard).
    An executor with a file ``<root>/work/<executor>.hung`` sleeps instead: it reads nothing and says nothing."""
    (root / "work").mkdir(exist_ok=True)

    def command(executor: str, ident: str) -> Worker:
        workdir = str(root / "work" / executor / ident)
        script = (f'echo $$ > "$2"; if [ -e "$3" ]; then exec sleep {HUNG_SECONDS}; fi; '
                  'exec "$0" -m ansible_runner worker --private-data-dir "$1" --delete')
        return Worker(["sh", "-c", script, sys.executable, workdir, str(root / "work" / f"{executor}.pgid"),
                       str(root / "work" / f"{executor}.hung")], workdir)
    return command


def sharded_site(bed, hosts=("ctl01", "node01"), split="count", **more) -> None:
    data = yaml.safe_load(bed.site_file.read_text())
    data["provisioning"]["execution"] = {"hosts": list(hosts), "split": split, **more}
    bed.site_file.write_text(yaml.safe_dump(data))


def test_shards_on_execution_hosts_feed_one_run(bed):
    sharded_site(bed)
    bed.mark("node02", "one", kind="secret-fail")
    outcome = up(bed.options(max_fail=100, worker_command=local_executors(bed.root)))
    assert outcome.exit_code == 1
    run = outcome.run_dir
    statuses = {h: (r["status"], r["phase"]) for h, r in hosts_json(run).items()}
    assert statuses == {"ctl01": ("ok", "three"), "node01": ("ok", "three"), "node02": ("failed", "one")}
    assert hosts_json(run)["node01"]["changed"] == 6
    assert "no_log" in hosts_json(run)["node02"]["message"]
    # ctl01's shard ran on executor ctl01, node01's and node02's on node01: each with its own artifacts here.
    arts = run / "ansible" / "artifacts"
    assert (arts / "01-one-w1-ctl01" / "status").read_text() == "successful"
    assert (arts / "01-one-w1-node01" / "status").read_text() == "failed"
    assert (arts / "01-one-w1-node01" / "rc").read_text() == "2"
    events = [json.loads(line) for line in (arts / "01-one-w1-node01" / "job_events.jsonl").read_text().splitlines()]
    assert {e["event_data"].get("host") for e in events if e["event"] == "runner_on_ok"} == {"node01", "node02"}
    assert "node02: FAILED" in bed.output() and "node01: changed" in bed.output()
    files = [p for p in run.rglob("*") if p.is_file()]
    assert [str(p) for p in files if SECRET in p.read_text(errors="replace")] == []
    assert bed.log("node01") == ["one", "two", "three"] and bed.log("node02") == []
    # Every host's task result of phase one, counted from the events of both shards (for the benchmark's rate).
    results = [json.loads(line)["event"] for f in arts.glob("01-one-w1-*/job_events.jsonl")
               for line in f.read_text().splitlines()]
    one = json.loads((run / "summary.json").read_text())["phases"][0]
    assert one["host_tasks"] == sum(e.startswith("runner_on_") and e != "runner_on_start" for e in results) > 0
    assert one["controller_seconds"] > 0


def test_an_executor_killed_mid_shard_fails_only_its_shard_and_retry_completes_it(bed):
    sharded_site(bed)
    executors = local_executors(bed.root)
    kill = bed.mark("node02", "one", kind="kill-executor")
    kill.write_text(str(bed.root / "work" / "node01.pgid"))    # node02's shard runs on node01
    first = up(bed.options("a", max_fail=100, worker_command=executors))
    assert first.exit_code == 1
    hosts = hosts_json(first.run_dir)
    assert hosts["ctl01"]["status"] == "ok" and bed.log("ctl01") == ["one", "three"]
    for h in ("node01", "node02"):                     # the killed executor's shard: both its hosts
        assert (hosts[h]["status"], hosts[h]["phase"]) == ("unreachable", "one")
        assert "execution host node01 stopped before the shard finished" in hosts[h]["message"]
        assert bed.log(h) == []
    kill.unlink()
    again = up(bed.options("b", retry=True, worker_command=executors))
    assert again.exit_code == 0
    assert sorted(hosts_json(again.run_dir)) == ["node01", "node02"]
    assert bed.log("node01") == bed.log("node02") == ["one", "two", "three"] and bed.log("ctl01") == ["one", "three"]


def test_a_killed_executor_counts_against_max_fail(bed):
    sharded_site(bed)
    bed.mark("node02", "one", kind="kill-executor").write_text(str(bed.root / "work" / "node01.pgid"))
    outcome = up(bed.options(worker_command=local_executors(bed.root)))      # the bed's max-fail: 50%
    assert outcome.exit_code == 1 and outcome.stopped and "67%" in outcome.stopped
    assert bed.log("ctl01") == ["one"] and [p.name for p in outcome.phases] == ["one"]   # its shard finished


class RecordedSlurm:
    """scontrol and squeue on the controller, recorded: every node idle, drains and resumes kept."""

    def __init__(self, watch=None):
        self.log: list[list[str]] = []
        self.drained: set[str] = set()
        self.most = 0
        self.watch, self.seen = watch, []      # what watch() said at each command

    def run(self, argv):
        from infra.orchestrate.rollout import CommandResult
        self.log.append(list(argv))
        self.seen.append(self.watch() if self.watch else None)
        if argv[:2] == ["scontrol", "show"]:
            return CommandResult(0, "\n".join(f"NodeName={n} State=IDLE" + ("+DRAIN" if n in self.drained else "")
                                              for n in argv[3].split(",")))
        if argv[:2] == ["scontrol", "update"]:
            node = argv[2].split("=", 1)[1]
            (self.drained.add if argv[3] == "state=drain" else self.drained.discard)(node)
            self.most = max(self.most, len(self.drained))
        return CommandResult(0, "")


def test_up_with_impacts_rolls_drain_class_nodes_one_at_a_time_then_the_controller_and_one_reconfigure(bed):
    # A node definition changes (memory): the nodes drain-class, the controller live (its slurm.conf). Each node is
    # updated while drained; the controller's phases and scontrol reconfigure come only after every node has its
    # update, so slurmctld never holds a definition that a node it schedules on has not got.
    slurm = RecordedSlurm(watch=lambda: {h: bed.log(h) for h in HOSTS})
    asked: list[str] = []
    impacts = {"ctl01": ("live", ["(plan).slurm_conf"]),
               "node01": ("drain", ["node_types.vm-compute.memory_gb"]), "node02": ("drain", ["same"])}
    outcome = up(bed.options(impacts=impacts, node_control=lambda host: asked.append(host) or slurm, rollout_poll_s=0))
    assert outcome.exit_code == 0, bed.output()
    assert bed.log("ctl01") == ["one", "three"] and bed.log("node01") == bed.log("node02") == ["one", "two", "three"]
    assert set(asked) == {"ctl01"} and slurm.log.count(["scontrol", "reconfigure"]) == 1
    changes = [a[:4] for a in slurm.log if a[1] == "update"]
    assert changes == [["scontrol", "update", f"nodename={n}", s] for n in ("node01", "node02")
                       for s in ("state=drain", "state=resume")]
    assert slurm.most == 1
    first_drain = slurm.log.index(changes[0] + ["reason=gigafactory: node_types.vm-compute.memory_gb"])
    reconfigure = slurm.log.index(["scontrol", "reconfigure"])
    assert slurm.seen[first_drain] == {"ctl01": [], "node01": [], "node02": []}       # nothing ran before the drain
    assert reconfigure > slurm.log.index(changes[-1])                                  # after the last resume
    assert slurm.seen[reconfigure]["ctl01"] == ["one", "three"]                        # the controller updated by then
    assert slurm.seen[slurm.log.index(changes[-1])]["ctl01"] == []                     # not before the nodes were
    assert "after the rollout: the live-class hosts ctl01, then scontrol reconfigure" in bed.output()
    summary = json.loads((outcome.run_dir / "summary.json").read_text())
    assert summary["rollout"]["node01"]["steps"] == ["drained", "idle", "updated", "resumed"]


def test_up_with_impacts_leaves_none_class_hosts_alone_and_refuses_replace(bed):
    slurm = RecordedSlurm()
    outcome = up(bed.options(impacts={"node01": ("none", ["docs"]), "node02": ("restart", ["slurm.version"])},
                             node_control=lambda host: slurm))
    assert outcome.exit_code == 0 and bed.log("node01") == [] and bed.log("node02") == ["one", "two", "three"]
    assert slurm.log == []                                  # restart: applied without draining
    with pytest.raises(OrchestrationError, match="replace-class change"):
        up(bed.options("run2", impacts={"node01": ("replace", ["pools.compute.hosts"])}))
    with pytest.raises(OrchestrationError, match="impact class 'melt'"):
        up(bed.options("run3", impacts={"node01": ("melt", [])}))


def test_a_silent_executor_is_stopped_and_only_its_shards_hosts_are_unreachable(bed):
    sharded_site(bed, idle_timeout=45)            # the healthy shard sends events far more often than that
    executors = local_executors(bed.root)
    hung = bed.root / "work" / "node01.hung"      # node01's and node02's shard runs on node01, which hangs
    hung.touch()
    first = up(bed.options("a", max_fail=100, worker_command=executors))
    assert first.exit_code == 1
    hosts = hosts_json(first.run_dir)
    # Phase one: ctl01's shard on ctl01 finishes. Phase three's only host, ctl01, falls to node01 (split by count).
    assert bed.log("ctl01") == ["one"] and (hosts["ctl01"]["status"], hosts["ctl01"]["phase"]) == ("unreachable", "three")
    for h in ("node01", "node02"):
        assert (hosts[h]["status"], hosts[h]["phase"]) == ("unreachable", "one") and bed.log(h) == []
    for h in HOSTS:
        assert hosts[h]["message"].startswith("execution host node01 sent nothing for 45 s "
                                              "(provisioning.execution.idle_timeout) and was stopped (exit -9)")
    pgid = int((bed.root / "work" / "node01.pgid").read_text())
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)                          # the hung worker's process group is gone
    hung.unlink()
    again = up(bed.options("b", retry=True, worker_command=executors))
    assert again.exit_code == 0
    assert bed.log("ctl01") == ["one", "three"] and bed.log("node02") == ["one", "two", "three"]


PROBE = """\
- name: Phase probe
  hosts: all
  gather_facts: false
  tasks:
    - name: Record the process that runs this host's tasks
      ansible.builtin.shell: "tr '\\\\0' ' ' < /proc/$PPID/cmdline > {{ gf_test_dir }}/runner"
      changed_when: true
"""


@pytest.mark.parametrize("strategy, sharded", [("mitogen_linear", False), ("mitogen_linear", True), ("linear", True)])
def test_provisioning_strategy_mitogen_runs_the_tasks_here_and_on_execution_hosts(bed, strategy, sharded):
    pytest.importorskip("ansible_mitogen", reason="the [mitogen] extra is not installed")
    data = yaml.safe_load(bed.site_file.read_text())
    data["provisioning"]["strategy"] = strategy
    bed.site_file.write_text(yaml.safe_dump(data))
    if sharded:
        sharded_site(bed)
    (bed.root / "playbooks" / "probe.yml").write_text(PROBE)
    options = bed.options(worker_command=local_executors(bed.root) if sharded else None)
    outcome = up(dataclasses.replace(options, phases=(Phase("probe"),)))
    assert outcome.exit_code == 0
    runners = [(bed.dir(h) / "runner").read_text() for h in HOSTS]
    assert all(("(mitogen:" in r) == strategy.startswith("mitogen_") for r in runners), runners


def test_a_mitogen_strategy_without_mitogen_is_refused_before_anything_runs(bed, monkeypatch):
    import importlib.util
    data = yaml.safe_load(bed.site_file.read_text())
    data["provisioning"]["strategy"] = "mitogen_free"
    bed.site_file.write_text(yaml.safe_dump(data))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ansible_mitogen" else real(name, *a))
    with pytest.raises(OrchestrationError, match=r"provisioning.strategy: mitogen_free needs the mitogen package"):
        up(bed.options())
    assert not (bed.root / "runs").exists()


def test_execution_hosts_get_the_base_phase_first_from_the_controller(bed):
    sharded_site(bed)                                         # execution hosts ctl01 and node01
    options = bed.options(max_fail=100, worker_command=local_executors(bed.root))
    prepare = Phase("one", first=("execution",), local=("execution",))       # as the base phase
    outcome = up(dataclasses.replace(options, phases=(prepare,)))
    assert outcome.exit_code == 0
    assert outcome.phases[0].waves == [["ctl01", "node01"], ["node02"]]     # their own wave, though the phase is small
    arts = outcome.run_dir / "ansible" / "artifacts"
    assert sorted(p.name for p in arts.iterdir()) == ["01-one-w1-controller", "01-one-w2-node01"]
    assert all(bed.log(h) == ["one"] for h in HOSTS)
    events = [json.loads(line)["event"] for line in (arts / "01-one-w1-controller" / "job_events.jsonl").read_text().splitlines()]
    # Warnings Python prints at start (e.g. a CryptographyDeprecationWarning) come first as 'verbose' events.
    assert [e for e in events if e != "verbose"][0] == "playbook_on_start", events
    assert [p.name for p in (outcome.run_dir / "project").iterdir()][0].startswith("project-")  # packed for them


class BusySlurm(RecordedSlurm):
    """RecordedSlurm whose node01 runs a job for its first ``polls`` state queries after being drained."""

    def __init__(self, polls: int, **kw):
        super().__init__(**kw)
        self.polls = polls

    def run(self, argv):
        from infra.orchestrate.rollout import CommandResult
        if argv[:3] == ["scontrol", "show", "node"] and "node01" in self.drained and self.polls > 0:
            self.polls -= 1
            self.log.append(list(argv))
            self.seen.append(self.watch() if self.watch else None)
            return CommandResult(0, "\n".join(f"NodeName={n} State=" + ("ALLOCATED" if n == "node01" else "IDLE")
                                              + ("+DRAIN" if n in self.drained else "") for n in argv[3].split(",")))
        return super().run(argv)


def against(bed, mutate) -> Path:
    """The bed's site as it was before ``mutate`` (written beside it as old.yml); the site file gets the change."""
    old = bed.root / "old.yml"
    old.write_text(bed.site_file.read_text())
    data = yaml.safe_load(bed.site_file.read_text())
    mutate(data)
    bed.site_file.write_text(yaml.safe_dump(data))
    return old


def test_up_against_prints_the_diff_then_rolls_out_by_class_and_the_live_table_shows_the_wait(bed, monkeypatch, capsys):
    from rich.console import Console
    from infra.cli import orchestrate as ocli
    from infra.orchestrate.progress import LiveProgress
    old = against(bed, lambda d: d["node_types"]["vm-compute"].update(memory_gb=d["node_types"]["vm-compute"]["memory_gb"] + 1))
    slurm = BusySlurm(polls=2, watch=lambda: {h: bed.log(h) for h in HOSTS})
    table = io.StringIO()
    monkeypatch.setattr(ocli, "options_from", lambda args: bed.options(    # the table starts after the diff's print
        node_control=lambda host: slurm, rollout_poll_s=0.2,
        progress=LiveProgress([p.name for p in TEST_PHASES], Console(file=table, force_terminal=True, width=200))))
    capsys.readouterr()
    assert cli_main(["up", str(bed.site_file), "--against", str(old)]) == 0, bed.output()
    diff = capsys.readouterr().out.splitlines()
    assert diff[0] == f"demo: 2 changes against {old}"
    assert "  drain         2  node[01-02]" in diff and "  live          1  ctl01" in diff
    # drain class: node01 (busy) and node02 rolled one at a time, the controller (live) after, one reconfigure
    drains = [a[2] for a in slurm.log if a[1] == "update" and a[3] == "state=drain"]
    assert sorted(drains) == ["nodename=node01", "nodename=node02"] and slurm.most == 1
    assert [r for r in slurm.log if r[1] == "update" and r[3] == "state=drain"][0][4] == \
        "reason=gigafactory: node_types.vm-compute.memory_gb"
    assert slurm.seen[slurm.log.index(["scontrol", "reconfigure"])]["ctl01"] == ["one", "three"]
    assert bed.log("node01") == bed.log("node02") == ["one", "two", "three"]
    # the live table's rollout row named the node waiting for its job and for how long
    import re
    assert re.search(r"waiting for node01 \(jobs \(ALLOCATED\+DRAIN\), \d+s\)", table.getvalue()), table.getvalue()[-3000:]


def test_up_against_nothing_changed_touches_nothing_and_new_hosts_get_every_phase(bed, monkeypatch, capsys):
    from infra.cli import orchestrate as ocli
    old = bed.root / "old.yml"
    old.write_text(bed.site_file.read_text())
    slurm = RecordedSlurm()
    monkeypatch.setattr(ocli, "options_from", lambda args: bed.options(node_control=lambda host: slurm))
    assert cli_main(["up", str(bed.site_file), "--against", str(old)]) == 0
    assert all(bed.log(h) == [] for h in HOSTS) and slurm.log == []
    # node02 new: every phase, nothing drained; the holders of slurm.conf (ctl01, node01) live, reconfigured once
    data = yaml.safe_load(old.read_text())
    data["pools"][1]["hosts"] = "node01"
    old.write_text(yaml.safe_dump(data))
    capsys.readouterr()
    monkeypatch.setattr(ocli, "options_from", lambda args: bed.options("run2", node_control=lambda host: slurm))
    assert cli_main(["up", str(bed.site_file), "--against", str(old)]) == 0
    assert "  new           1  node02" in capsys.readouterr().out
    assert bed.log("node02") == ["one", "two", "three"] and bed.log("ctl01") == ["one", "three"]
    assert slurm.log == [["scontrol", "reconfigure"]]


def test_up_against_refuses_a_replace_unless_forced_and_removed_hosts_are_named_only(bed, monkeypatch, capsys):
    from infra.cli import orchestrate as ocli
    old = against(bed, lambda d: d["networks"]["management"].update(cidr="192.168.201.0/24"))
    slurm = RecordedSlurm()
    monkeypatch.setattr(ocli, "options_from", lambda args: bed.options(node_control=lambda host: slurm))
    capsys.readouterr()
    assert cli_main(["up", str(bed.site_file), "--against", str(old)]) == 2
    err = capsys.readouterr().err
    assert "networks.management.cidr is a replace-class change of ctl01,node[01-02]" in err and "--force-replace" in err
    assert all(bed.log(h) == [] for h in HOSTS) and not (bed.root / "runs").exists()
    assert cli_main(["up", str(bed.site_file), "--against", str(old), "--force-replace"]) == 0
    assert bed.log("node01") == ["one", "two", "three"] and slurm.log == []     # like new hosts: nothing drained
    # a host removed from the site: named, not touched
    data = yaml.safe_load(bed.site_file.read_text())
    data["pools"][1]["hosts"] = "node01"
    old.write_text(bed.site_file.read_text())
    bed.site_file.write_text(yaml.safe_dump(data))
    capsys.readouterr()
    monkeypatch.setattr(ocli, "options_from", lambda args: bed.options("run3", node_control=lambda host: slurm))
    assert cli_main(["up", str(bed.site_file), "--against", str(old)]) == 0
    assert "removed from the site, not touched: node02" in capsys.readouterr().out
    assert bed.log("node02") == ["one", "two", "three"]                          # from the forced run only


@pytest.mark.parametrize("case", ["no-such-ref", "invalid-old", "invalid-site", "retry", "force-alone"])
def test_up_against_bad_input_exits_2_and_touches_nothing(bed, monkeypatch, capsys, case):
    from infra.cli import orchestrate as ocli
    monkeypatch.setattr(ocli, "options_from", lambda args: bed.options())
    old = bed.root / "old.yml"
    data = yaml.safe_load(bed.site_file.read_text())
    bad = yaml.safe_load(bed.site_file.read_text())
    bad["node_types"]["vm-compute"]["memory_gb"] = 0
    old.write_text(yaml.safe_dump(bad if case == "invalid-old" else data))
    if case == "invalid-site":
        bed.site_file.write_text(yaml.safe_dump(bad))
    argv = {"no-such-ref": ["--against", "no-such-branch"], "retry": ["--against", str(old), "--retry"],
            "force-alone": ["--force-replace"]}.get(case, ["--against", str(old)])
    capsys.readouterr()
    assert cli_main(["up", str(bed.site_file), *argv]) == 2
    out = capsys.readouterr()
    assert "Traceback" not in out.err and out.err.strip()
    if case.startswith("invalid"):
        assert "node_types.vm-compute.memory_gb" in out.err
    assert all(list(bed.dir(h).iterdir()) == [] for h in HOSTS) and not (bed.root / "runs").exists()
