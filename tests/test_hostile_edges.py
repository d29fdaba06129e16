"""Edges of issue 22's classes found by a review after the first round: each was accepted, or crashed, before."""

from __future__ import annotations

import copy
import signal

import pytest
from test_site_validation import problems_of

from infra.site.openpgp import NotAKey, fingerprint
from infra.site.yamldata import load_yaml
from infra.site import SiteInvalid
from infra.usage import UsageInvalid
from infra.usage.sacct import _tres


def test_a_version_4_key_longer_than_its_fingerprint_holds_is_no_key():
    with pytest.raises(NotAKey, match="at most 65535"):
        fingerprint(b"\x04" + b"\x00" * 70_000)


@pytest.mark.parametrize("tres", ["cpu=1,mem=nanG,node=1", "cpu=1,mem=1e308G,node=1", "cpu=" + "9" * 300 + ",node=1",
                                  "cpu=1,gres/gpu:h200=" + "9" * 30 + ",node=1", "cpu=1,node=" + "9" * 20])
def test_an_accounting_record_beyond_any_allocation_is_refused(tres):
    with pytest.raises(UsageInvalid, match="no allocation is that large"):
        _tres(tres, "--sacct line 2, AllocTRES")


@pytest.mark.parametrize("mutate, path, fragment", [
    (lambda d: d["slurm"].update(state_save_location="/var/lib/dpkg"), "slurm.state_save_location", "Slurm's own"),
    (lambda d: d["slurm"].update(state_save_location="/var/spool/cron"), "slurm.state_save_location", "Slurm's own"),
    (lambda d: d["slurm"]["partitions"][0].update(max_time="99999999-00"), "slurm.partitions[0].max_time", "longer than Slurm holds"),
    (lambda d: d["slurm"]["partitions"][0].update(max_time="9" * 100_000), "slurm.partitions[0].max_time", "not a Slurm time limit"),
    (lambda d: d["provisioning"].update(batch=["0"]), "provisioning.batch[0]", "0 hosts make no wave"),
    (lambda d: d["provisioning"].update(batch=["1000%"]), "provisioning.batch[0]", "more than 100%"),
    (lambda d: d["site"].update(name="x" * 100_000), "site.name", "(100002 characters)"),
], ids=["dpkg's state", "cron's spool", "max_time beyond 32 bits", "max_time of 100,000 digits", "wave of 0", "wave of 1000%",
        "a long value"])
def test_values_that_passed_the_first_round_are_refused(riga, mutate, path, fragment):
    data = copy.deepcopy(riga)
    data.setdefault("provisioning", {})
    mutate(data)
    found = problems_of(data)
    assert any(p.startswith(f"{path}: ") and fragment in p for p in found), [p[:200] for p in found]
    assert all(len(p) < 1000 for p in found)                   # a problem line quotes a long value cut short


def test_the_legitimate_state_paths_and_time_limits_pass(riga):
    for location, limit in (("/var/spool/slurmctld", "UNLIMITED"), ("/var/lib/slurm/state", "2982616-00"),
                            ("/srv/slurm", "4294967294")):
        data = copy.deepcopy(riga)
        data["slurm"].update(state_save_location=location)
        data["slurm"]["partitions"][0].update(max_time=limit)
        assert problems_of(data) == []


@pytest.mark.parametrize("host", ["gpu", "execution", "rdma", "slurm", "ip6-localhost", "localhost6"])
def test_a_host_named_like_a_role_group_is_refused_even_where_the_site_has_no_such_hosts(demo, host):
    """The demo has no GPU host: a host named 'gpu' would still be matched by the gpu playbook's 'hosts: gpu'."""
    demo["pools"][1]["hosts"] = f"{host},node02"
    found = problems_of(demo)
    assert any(p.startswith("pools[1].hosts: ") and repr(host) in p for p in found), found


def test_a_merge_key_appears_once_in_a_mapping():
    with pytest.raises(SiteInvalid, match="key '<<' is declared twice"):
        load_yaml("r:\n  <<: {debian: http://a/}\n  <<: {debian: http://b/}\n")


def test_the_demo_command_stops_on_a_signal_with_the_shells_code(monkeypatch, tmp_path):
    """gigafactory demo installs the same handlers as up: a second signal ends it at once with 128 + the signal."""
    import os

    from infra.vm import demo as demo_module
    from infra.cli.orchestrate import cmd_demo

    def interrupted(site, options, from_scratch):
        assert options.cancel is not None
        os.kill(os.getpid(), signal.SIGTERM)            # the first: the run is asked to stop
        assert options.cancel.requested
        os.kill(os.getpid(), signal.SIGTERM)            # the second: at once
        raise AssertionError("not reached")
    monkeypatch.setattr(demo_module, "demo_up", interrupted)
    args = type("Args", (), dict(site=str(tmp_path / "site.yml"), down=False, from_scratch=False, phase=None, limit=None,
                                 check=False, max_fail=None, batch=None, retry=False, run_dir=None, inventory=[]))()
    assert cmd_demo(args) == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
