"""How a wave's hosts are split among execution hosts (provisioning.execution): by count, rack or scalable unit."""

from __future__ import annotations

import pytest
from conftest import RIGA

from infra.orchestrate.execution import default_worker_command, shards
from infra.plan import build_plan
from infra.site import load_site
from infra.site.model import Execution


@pytest.fixture(scope="module")
def riga():
    return build_plan(load_site(RIGA), RIGA)


def test_one_execution_host_takes_the_whole_wave(riga):
    hosts = list(riga.hosts)
    assert [(s.executor, s.hosts) for s in shards(riga, hosts, Execution())] == [("controller", hosts)]


def test_by_count_cuts_equal_runs_in_wave_order(riga):
    hosts = list(riga.hosts)[:10]
    parts = shards(riga, hosts, Execution(hosts=["controller", "ctl01", "ctl02"], split="count"))
    assert [len(s.hosts) for s in parts] == [3, 3, 4]
    assert [h for s in parts for h in s.hosts] == hosts
    assert [s.executor for s in shards(riga, hosts[:2], Execution(hosts=["controller", "ctl01", "ctl02"]))] \
        == ["ctl01", "ctl02"]           # no empty shard


def test_by_scalable_unit_an_executor_takes_its_own_unit_and_whole_units_stay_together(riga):
    gpus = [h for h in riga.hosts if riga.hosts[h].scalable_unit]
    parts = {s.executor: s.hosts for s in
             shards(riga, gpus, Execution(hosts=["gpu0040", "gpu0100"], split="scalable_unit"))}
    units = {e: sorted({riga.hosts[h].scalable_unit for h in hs}) for e, hs in parts.items()}
    assert 2 in units["gpu0040"] and 4 in units["gpu0100"]
    assert sorted(len(hs) for hs in parts.values()) == [64, 64]          # the other two units balance the load
    assert sorted(h for hs in parts.values() for h in hs) == sorted(gpus)


def test_by_rack_keeps_racks_whole(riga):
    hosts = list(riga.hosts)
    parts = shards(riga, hosts, Execution(hosts=["controller", "ctl01"], split="rack"))
    racks = [{riga.hosts[h].rack for h in s.hosts} for s in parts]
    assert not racks[0] & racks[1]
    assert "b01" in racks[1]                                               # ctl01's own rack
    assert sorted([h for s in parts for h in s.hosts]) == sorted(hosts)


def test_a_site_host_is_reached_over_ssh_with_known_host_keys_the_controller_locally(riga, tmp_path):
    command = default_worker_command(riga, "root", tmp_path)
    argv, workdir = command("ctl01", "01-base-w1-ctl01")
    assert argv[0] == "ssh" and "BatchMode=yes" in argv and "StrictHostKeyChecking=yes" in argv
    assert riga.hosts["ctl01"].address("management") in argv and argv[-1].startswith("ansible-runner worker")
    argv, workdir = command("controller", "01-base-w1-controller")
    assert argv[1:4] == ["-m", "ansible_runner", "worker"] and workdir == str(tmp_path / "01-base-w1-controller")
