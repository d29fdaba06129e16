"""The rollout engine's sequencing against a simulated Slurm (and a recorded kubectl): partitions' shares out of
service, idle nodes first, waiting for jobs, failures left drained, --max-fail, reboot class, Kubernetes workers.

The simulated controller answers the same argument vectors the real one gets (tests/test_rollout_real.py runs
them against real slurmctld and slurmd); time is a fake clock that the engine's sleep advances.
"""

from __future__ import annotations

import io
import re

import pytest

from infra.orchestrate.progress import LineProgress
from infra.orchestrate.rollout import (CommandResult, HostImpact, Kubernetes, Rollout, Slurm, Unscheduled,
                                       allowance, availability_domains, host_impacts, parse_nodes, reason_text,
                                       RolloutError)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeSlurm:
    """scontrol and squeue on a simulated controller: jobs end at given times; drained nodes take no new job."""

    def __init__(self, clock: Clock, nodes: list[str], jobs: dict[str, float] | None = None,
                 reboot_s: float = 30, domains: dict[str, list[str]] | None = None, limits: dict[str, int] | None = None):
        self.clock, self.nodes = clock, nodes
        self.jobs = dict(jobs or {})            # node -> when its job ends
        self.flags: dict[str, set[str]] = {n: set() for n in nodes}
        self.down: set[str] = set()
        self.reason: dict[str, str] = {}
        self.reboot_s, self.reboot_at = reboot_s, {}
        self.log: list[tuple[float, list[str]]] = []
        self.domains, self.limits = domains or {}, limits or {}
        self.most_out: dict[str, int] = dict.fromkeys(self.domains, 0)

    def _tick(self) -> None:
        for n, at in list(self.reboot_at.items()):
            if self.clock.now >= at:
                del self.reboot_at[n]
                self.flags[n] -= {"REBOOT_REQUESTED", "REBOOT_ISSUED", "DRAIN"}   # nextstate=DOWN: ASAP's drain
                self.down.add(n)                                                    # cleared, down, reason kept
        for n in self.nodes:
            if n in self.flags and "REBOOT_REQUESTED" in self.flags[n] and not self._busy(n):
                self.flags[n] = (self.flags[n] - {"REBOOT_REQUESTED"}) | {"REBOOT_ISSUED"}
                self.reboot_at[n] = self.clock.now + self.reboot_s

    def _busy(self, n: str) -> bool:
        return self.jobs.get(n, -1) > self.clock.now

    def _base(self, n: str) -> str:
        return "DOWN" if n in self.down else "ALLOCATED" if self._busy(n) else "IDLE"

    def out(self) -> set[str]:
        return {n for n, f in self.flags.items() if f & {"DRAIN", "REBOOT_REQUESTED", "REBOOT_ISSUED"}} | self.down

    def state(self, n: str) -> str:
        return "+".join([self._base(n), *sorted(self.flags[n])])

    def run(self, argv):
        argv = list(argv)
        self._tick()
        self.log.append((self.clock.now, argv))
        match argv:
            case ["scontrol", "update", node, "state=drain", reason] if node.startswith("nodename="):
                n = node.split("=", 1)[1]
                self.flags[n].add("DRAIN")
                self.reason[n] = reason.split("=", 1)[1]
            case ["scontrol", "update", node, "state=resume"]:
                n = node.split("=", 1)[1]
                self.flags[n].discard("DRAIN")
                self.down.discard(n)
                self.reason.pop(n, None)
            case ["scontrol", "reboot", "ASAP", "nextstate=DOWN", reason, n]:
                self.flags[n] |= {"DRAIN", "REBOOT_REQUESTED"}
                self.reason[n] = reason.split("=", 1)[1]
                self._tick()
            case ["scontrol", "show", "node", names, "--oneliner"]:
                lines = [f"NodeName={n} Arch=x86_64 CPUTot=2 State={'+'.join([self._base(n), *sorted(self.flags[n])])} "
                         f"Partitions=batch" + (f" Reason={self.reason[n]} [root@2025-01-01T00:00:00]" if n in self.reason else "")
                         for n in names.split(",")]
                return CommandResult(0, "\n".join(lines) + "\n")
            case ["squeue", "-h", "-w", n, "-o", "%i"]:
                return CommandResult(0, "42\n" if self._busy(n) else "")
            case ["scontrol", "reconfigure"]:
                pass
            case _:
                return CommandResult(1, "", f"unexpected {argv}")
        for d, members in self.domains.items():
            count = len(self.out() & set(members))
            self.most_out[d] = max(self.most_out[d], count)
            assert count <= self.limits[d], f"{d}: {count} nodes out at {self.clock.now}: {sorted(self.out())}"
        return CommandResult(0)

    def commands(self, node: str) -> list[str]:
        """The commands that change or ask about ``node`` alone (not the state polls), without node and reason."""
        out = []
        for _, argv in self.log:
            if argv[:2] != ["scontrol", "show"] and node in argv or f"nodename={node}" in argv:
                out.append(" ".join(a for a in argv if not a.startswith(("reason=", "nodename=")) and a != node))
        return out


class Recorder:
    """The update and health stand-ins: what ran, when, on which nodes; failing where told."""

    def __init__(self, clock: Clock, name: str, fail: set[str] = frozenset(), slurm: FakeSlurm | None = None,
                 on_call=None):
        self.clock, self.name, self.fail, self.slurm, self.on_call = clock, name, set(fail), slurm, on_call
        self.calls: list[tuple[float, list[str]]] = []

    def __call__(self, hosts: list[str]) -> dict[str, str]:
        if self.on_call:
            self.on_call(hosts)
        if self.slurm is not None:
            for h in hosts:     # never on a node that still runs a job
                assert not self.slurm._busy(h), f"{self.name} on {h} while its job runs"
        self.calls.append((self.clock.now, list(hosts)))
        self.clock.now += 5
        return {h: f"{self.name} failed on purpose" for h in hosts if h in self.fail}

    def order(self) -> list[str]:
        return [h for _, hosts in self.calls for h in hosts]


def rollout(clock, slurm, impacts, domains, percent=10, max_fail=100, apply_fail=(), health_fail=(), out=None,
            on_health=None):
    from infra.orchestrate.up import stop_reason
    apply = Recorder(clock, "apply", set(apply_fail), slurm)
    health = Recorder(clock, "health", set(health_fail), on_call=on_health)
    control = Slurm(slurm)
    r = Rollout(impacts={h: HostImpact(h, c, ("slurm.nodes: gres changed",)) for h, c in impacts.items()},
                domains=domains, schedulers=dict.fromkeys(impacts, control), apply=apply, health=health,
                reboot=lambda hosts: {}, max_unavailable_percent=percent, max_fail=max_fail,
                progress=LineProgress(out or io.StringIO(), clock=clock), poll_s=5, clock=clock, sleep=clock.sleep,
                stop_reason=lambda f, s, t: stop_reason("rollout", f, s, f, t, max_fail))
    return r.run(), apply, health


def test_idle_node_first_then_the_busy_one_once_its_job_ended():
    clock = Clock()
    slurm = FakeSlurm(clock, ["node01", "node02"], jobs={"node01": 75},
                      domains={"batch": ["node01", "node02"]}, limits={"batch": 1})
    out = io.StringIO()
    result, apply, health = rollout(clock, slurm, {"node01": "drain", "node02": "drain"},
                                    {"partition batch": ["node01", "node02"]}, out=out)
    assert apply.order() == ["node02", "node01"]
    assert apply.calls[0][0] < 75 <= apply.calls[1][0]          # node02 while node01's job ran; node01 after it
    assert health.order() == ["node02", "node01"]
    assert {h: n.status for h, n in result.nodes.items()} == {"node01": "ok", "node02": "ok"}
    assert result.nodes["node01"].waited_s >= 60 and result.nodes["node02"].waited_s == 0
    assert slurm.out() == set() and slurm.most_out["batch"] == 1
    assert slurm.commands("node01") == ["scontrol update state=drain", "squeue -h -w -o %i",
                                        "scontrol update state=resume"]
    assert re.search(r"\[rollout\] waiting for node01 \(jobs \(ALLOCATED\+DRAIN\), \d+s\)", out.getvalue()), out.getvalue()
    assert slurm.reason == {}


def test_overlapping_partitions_never_exceed_their_share_and_a_node_in_both_counts_in_both():
    clock = Clock()
    a = [f"n{i:02d}" for i in range(1, 11)]          # n01-n10
    b = [f"n{i:02d}" for i in range(6, 21)]          # n06-n20: n06-n10 in both
    nodes = sorted(set(a) | set(b))
    jobs = {n: 20 + 13 * i for i, n in enumerate(nodes) if i % 3}   # some idle, some busy for a while
    slurm = FakeSlurm(clock, nodes, jobs=jobs, domains={"a": a, "b": b},
                      limits={"a": allowance(10, 20), "b": allowance(15, 20)})
    result, apply, _ = rollout(clock, slurm, dict.fromkeys(nodes, "drain"),
                               {"partition a": a, "partition b": b}, percent=20)
    assert allowance(10, 20) == 2 and allowance(15, 20) == 3
    assert all(n.status == "ok" for n in result.nodes.values())
    assert sorted(apply.order()) == nodes
    assert slurm.most_out == {"a": 2, "b": 3}
    assert slurm.out() == set()


def test_a_share_below_one_node_still_lets_one_node_out():
    assert allowance(3, 10) == 1 and allowance(96, 10) == 9 and allowance(1, 100) == 1


def test_a_failed_update_stays_drained_with_its_reason_and_blocks_its_partitions_slot():
    clock = Clock()
    nodes = ["node01", "node02", "node03"]
    slurm = FakeSlurm(clock, nodes, domains={"batch": nodes}, limits={"batch": 1})
    result, apply, health = rollout(clock, slurm, dict.fromkeys(nodes, "drain"), {"partition batch": nodes},
                                    apply_fail={"node01"})
    assert result.nodes["node01"].status == "failed"
    assert "DRAIN" in slurm.flags["node01"]
    assert slurm.reason["node01"].startswith("gigafactory: update failed: apply failed on purpose")
    assert result.nodes["node02"].status == result.nodes["node03"].status == "pending"
    assert apply.order() == ["node01"] and health.calls == []
    assert result.stopped


def test_max_fail_stops_taking_nodes_out_after_too_many_failures_but_lets_started_ones_finish():
    clock = Clock()
    nodes = [f"n{i:02d}" for i in range(1, 11)]
    for max_fail, expect_started in ((10, 2), (60, 10)):
        clock.now = 0
        slurm = FakeSlurm(clock, nodes, domains={"p": nodes}, limits={"p": 2})
        result, apply, _ = rollout(clock, slurm, dict.fromkeys(nodes, "drain"), {"partition p": nodes},
                                   percent=20, max_fail=max_fail, apply_fail={"n01"})
        started = [h for h, n in result.nodes.items() if n.status != "pending"]
        assert len(started) == expect_started, (max_fail, started)
        if max_fail == 10:
            assert "more than --max-fail 10%" in result.stopped
            assert result.nodes["n02"].status == "ok"         # taken out with n01, finished its update
        else:
            assert result.failed == ["n01"] and not result.stopped


def test_a_failed_health_gate_keeps_the_node_drained():
    clock = Clock()
    slurm = FakeSlurm(clock, ["node01", "node02"], domains={"b": ["node01", "node02"]}, limits={"b": 2})
    result, _, _ = rollout(clock, slurm, {"node01": "drain", "node02": "drain"},
                           {"partition b": ["node01", "node02"]}, percent=100, health_fail={"node02"})
    assert result.nodes["node02"].status == "failed" and "health gate" in result.nodes["node02"].message
    assert slurm.out() == {"node02"} and result.nodes["node01"].status == "ok"


def test_reboot_class_drains_updates_reboots_to_down_and_resumes_only_after_the_health_gate():
    clock = Clock()
    slurm = FakeSlurm(clock, ["node01"], jobs={"node01": 40}, reboot_s=30, domains={"b": ["node01"]}, limits={"b": 1})
    seen: list[str] = []
    result, apply, health = rollout(clock, slurm, {"node01": "reboot"}, {"partition b": ["node01"]},
                                    on_health=lambda hosts: seen.extend(slurm.state(h) for h in hosts))
    assert slurm.commands("node01") == [
        "scontrol update state=drain", "squeue -h -w -o %i", "scontrol reboot ASAP nextstate=DOWN",
        "scontrol update state=resume"]
    reboot_at = next(t for t, argv in slurm.log if argv[1] == "reboot")
    resume_at = next(t for t, argv in slurm.log if argv[-1] == "state=resume")
    assert apply.calls[0][0] >= 40 and apply.calls[0][0] < reboot_at < health.calls[0][0] < resume_at
    assert seen == ["DOWN"]            # back from its reboot, still down (no job can land) while the gate runs
    assert result.nodes["node01"].steps == ["drained", "idle", "updated", "reboot requested", "rebooted", "resumed"]
    assert result.nodes["node01"].status == "ok" and slurm.out() == set()


def test_a_failed_health_gate_after_a_reboot_leaves_the_node_down_and_drained_with_the_reason():
    clock = Clock()
    slurm = FakeSlurm(clock, ["node01"], reboot_s=30, domains={"b": ["node01"]}, limits={"b": 1})
    result, _, _ = rollout(clock, slurm, {"node01": "reboot"}, {"partition b": ["node01"]}, health_fail={"node01"})
    assert result.nodes["node01"].status == "failed" and "health gate" in result.nodes["node01"].message
    assert slurm.state("node01") == "DOWN+DRAIN"
    assert slurm.reason["node01"].startswith("gigafactory: update failed: health gate: health failed on purpose")
    assert not any(argv[-1] == "state=resume" for _, argv in slurm.log)


def test_a_node_that_does_not_come_back_from_its_reboot_fails_and_stays_drained():
    clock = Clock()
    slurm = FakeSlurm(clock, ["node01"], reboot_s=10**6, domains={"b": ["node01"]}, limits={"b": 1})
    apply, health = Recorder(clock, "apply"), Recorder(clock, "health")
    r = Rollout(impacts={"node01": HostImpact("node01", "reboot", ("kernel",))},
                domains={"partition b": ["node01"]}, schedulers={"node01": Slurm(slurm)}, apply=apply, health=health,
                reboot=lambda hosts: {}, poll_s=5, reboot_timeout_s=60, clock=clock, sleep=clock.sleep)
    result = r.run()
    assert result.nodes["node01"].status == "failed" and "not back 60 s" in result.nodes["node01"].message
    assert health.calls == [] and "DRAIN" in slurm.flags["node01"]


class RecordedKubectl:
    """A stand-in for kubectl on the control plane: records each argument vector; drain answers from a script
    (rc 1 while a PodDisruptionBudget blocks the eviction)."""

    def __init__(self, drain_rcs: list[int]):
        self.drain_rcs, self.log = list(drain_rcs), []

    def run(self, argv):
        self.log.append(list(argv))
        if argv[2] == "drain":
            rc = self.drain_rcs.pop(0) if self.drain_rcs else 0
            return CommandResult(rc, "", "" if rc == 0 else "Cannot evict pod as it would violate the pod's disruption budget.")
        return CommandResult(0, f"node/{argv[3]} done")


@pytest.mark.parametrize("fails", [False, True])
def test_kubernetes_workers_are_cordoned_drained_through_evictions_updated_and_uncordoned(fails):
    clock = Clock()
    kubectl = RecordedKubectl([1, 1, 0])
    apply, health = Recorder(clock, "apply", {"gpu01"} if fails else set()), Recorder(clock, "health")
    k8s = Kubernetes(kubectl, drain_timeout_s=30)
    r = Rollout(impacts={"gpu01": HostImpact("gpu01", "drain", ("driver",))},
                domains={"kubernetes infer": ["gpu01", "gpu02"]}, schedulers={"gpu01": k8s}, apply=apply,
                health=health, reboot=lambda hosts: {}, poll_s=5, clock=clock, sleep=clock.sleep)
    result = r.run()
    kc = ["kubectl", "--kubeconfig=/etc/kubernetes/admin.conf"]
    drain = [*kc, "drain", "gpu01", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=30s"]
    assert kubectl.log[:4] == [[*kc, "cordon", "gpu01"], drain, drain, drain]
    assert "--disable-eviction" not in sum(kubectl.log, []) and "--force" not in sum(kubectl.log, [])
    assert result.nodes["gpu01"].waited_s == 10
    if fails:
        assert len(kubectl.log) == 4 and result.nodes["gpu01"].status == "failed"    # stays cordoned
    else:
        assert kubectl.log[4:] == [[*kc, "uncordon", "gpu01"]] and result.nodes["gpu01"].status == "ok"


def test_hosts_of_no_scheduler_follow_their_pools_share_and_reboot_through_the_plain_reboot():
    clock = Clock()
    rebooted: list[list[str]] = []
    apply, health = Recorder(clock, "apply"), Recorder(clock, "health")
    none = Unscheduled()
    r = Rollout(impacts={h: HostImpact(h, "reboot", ("kernel",)) for h in ("s1", "s2")},
                domains={"pool service": ["s1", "s2"]}, schedulers={"s1": none, "s2": none}, apply=apply,
                health=health, reboot=lambda hosts: rebooted.append(hosts) or {}, clock=clock, sleep=clock.sleep)
    result = r.run()
    assert rebooted == [["s1"], ["s2"]] and apply.order() == ["s1", "s2"]
    assert all(n.status == "ok" for n in result.nodes.values())


def test_reason_text_names_the_change_without_template_or_shell_characters():
    text = reason_text(["pools.train.kernel_args: '{{ lookup(\"pipe\", \"id\") }}' $(id) `id` %x #y\nz"])
    assert text.startswith("gigafactory: pools.train.kernel_args")
    assert not set(text) & set('{}%#$`"\n')
    assert len(reason_text(["x" * 500])) == 200


def test_host_impacts_take_strings_or_enums_and_refuse_unknown_classes_and_hosts():
    import enum

    class Impact(enum.Enum):
        DRAIN = "drain"

    class Ordered(enum.IntEnum):          # as day two's infra.site.impact.Impact
        NONE, LIVE, RESTART, DRAIN, REBOOT, REPLACE = range(6)

    got = host_impacts({"node01": (Impact.DRAIN, ["a"]), "node02": ("live", ()), "node03": (Ordered.REBOOT, ["k"])},
                       ["node01", "node02", "node03"])
    assert got["node01"] == HostImpact("node01", "drain", ("a",)) and got["node02"].impact == "live"
    assert got["node03"].impact == "reboot"
    with pytest.raises(RolloutError, match="not one of"):
        host_impacts({"node01": ("melt", [])}, ["node01"])
    with pytest.raises(RolloutError, match="not a host"):
        host_impacts({"node09": ("drain", [])}, ["node01"])


def test_scontrol_oneliner_output_parses_state_flags_and_reason():
    text = ("NodeName=node01 Arch=x86_64 CoresPerSocket=1 State=MIXED+DRAIN+REBOOT_REQUESTED ThreadsPerCore=1 "
            "NextState=RESUME Partitions=batch Reason=gigafactory: kernel [root@2025-01-01T10:00:00]\n"
            "NodeName=node02 Arch=x86_64 State=IDLE ThreadsPerCore=1\n")
    nodes = parse_nodes(text)
    assert nodes["node01"].base == "MIXED" and nodes["node01"].flags == {"DRAIN", "REBOOT_REQUESTED"}
    assert nodes["node01"].reason == "gigafactory: kernel" and nodes["node02"].base == "IDLE"


def test_domains_of_riga1_partitions_the_inference_cluster_and_the_other_pools(riga):
    from infra.plan import build_plan
    from infra.site.model import Site
    domains = availability_domains(build_plan(Site.model_validate(riga)))
    assert len(domains["partition batch"]) == 96 and domains["partition batch"] == domains["partition interactive"]
    assert len(domains["kubernetes riga-infer"]) == 32
    assert not set(domains["kubernetes riga-infer"]) & set(domains["partition batch"])
    assert all(k.split()[0] in ("partition", "kubernetes", "pool") for k in domains)


@pytest.mark.parametrize("value", [0, -5, 101, "ten"])
def test_max_unavailable_percent_out_of_range_is_refused_naming_the_field(tmp_path, demo, value):
    import subprocess
    import sys
    import yaml
    from conftest import ROOT
    demo["provisioning"]["max_unavailable_percent"] = value
    site = tmp_path / "site.yml"
    site.write_text(yaml.safe_dump(demo))
    r = subprocess.run([sys.executable, "-c", "import sys; from infra.cli import main; sys.exit(main())",
                        "validate", str(site)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "provisioning.max_unavailable_percent" in r.stdout + r.stderr
    assert "Traceback" not in r.stderr


def test_riga1_schedulers_slurm_nodes_kubernetes_workers_and_the_rest_reached_on_their_control_hosts(riga):
    from infra.orchestrate.rollout import schedulers_for
    from infra.plan import build_plan
    from infra.site.model import Site
    plan = build_plan(Site.model_validate(riga))
    asked: list[str] = []
    schedulers = schedulers_for(plan, lambda host: asked.append(host) or f"control on {host}")
    assert asked == ["ctl01", "k8s-cp01"]
    kinds = {h: s.name for h, s in schedulers.items()}
    assert {kinds[h] for h in plan.groups["slurm_compute"]} == {"slurm"}
    assert {kinds[h] for h in plan.groups["k8s_worker"]} == {"kubernetes"}
    assert kinds["nfs01"] == kinds["ctl01"] == "none"
    assert schedulers["gpu0001"].control == "control on ctl01"


def test_slurm_can_reboot_a_node_and_waits_for_it_as_long_as_the_rollout_does():
    """``scontrol reboot`` needs a RebootProgram, and slurmctld sets a node DOWN after ResumeTimeout: the rendered
    slurm.conf names both, the timeout the rollout's own."""
    import dataclasses
    from conftest import DEMO
    from infra.orchestrate.up import UpOptions
    from infra.plan import build_plan
    from infra.render.files import slurm_files
    from infra.site import load_site
    site = load_site(str(DEMO))
    conf = slurm_files(build_plan(site, str(DEMO)))["slurm/slurm.conf"]
    timeout = re.search(r"^ResumeTimeout=(\d+)$", conf, flags=re.MULTILINE)
    assert re.search(r"^RebootProgram=/usr/sbin/reboot$", conf, flags=re.MULTILINE)
    rollout = {f.name: f.default for f in dataclasses.fields(Rollout)}
    assert timeout and int(timeout.group(1)) == rollout["reboot_timeout_s"] == UpOptions.rollout_reboot_timeout_s


def test_a_scheduler_that_cannot_be_read_is_said_and_its_node_is_updated_after_the_next_poll():
    from infra.orchestrate.rollout import CommandFailed
    clock = Clock()
    slurm = FakeSlurm(clock, ["node01"])
    failures = [CommandFailed("scontrol show failed (rc 1): Unable to contact slurm controller")]

    class Unreadable(Slurm):
        def busy(self, nodes: list[str]) -> dict[str, str]:
            if failures:
                raise failures.pop()
            return super().busy(nodes)

    apply, health, out = Recorder(clock, "apply", slurm=slurm), Recorder(clock, "health"), io.StringIO()
    result = Rollout(impacts={"node01": HostImpact("node01", "drain")}, domains={"partition batch": ["node01"]},
                     schedulers={"node01": Unreadable(slurm)}, apply=apply, health=health, reboot=lambda hosts: {},
                     progress=LineProgress(out, clock=clock), poll_s=5, clock=clock, sleep=clock.sleep).run()
    assert "rollout: could not read node01: scontrol show failed (rc 1)" in out.getvalue(), out.getvalue()
    assert apply.calls == [(5.0, ["node01"])]           # not in the round that could not read it: one poll later
    assert result.nodes["node01"].status == "ok" and slurm.out() == set()
