"""gigafactory demo's wiring: boot the site's VMs, write their connection inventory, hand it to ``up``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from infra.vm import demo
from infra.orchestrate.up import RunOutcome
from infra.vm.launcher import RunningVM

from conftest import DEMO


def fake_vm(name: str, port: int, tmp: Path):
    return RunningVM(name=name, ssh_port=port, user="gigafactory", key_path=tmp / "id_ed25519",
                     known_hosts=tmp / "known_hosts", serial_log=tmp / name)


def test_connection_inventory_pins_each_vm_with_strict_host_keys(tmp_path):
    inv = demo.connection_inventory([fake_vm("ctl01", 2201, tmp_path)])
    ctl = inv["all"]["hosts"]["ctl01"]
    assert (ctl["ansible_host"], ctl["ansible_port"], ctl["ansible_user"]) == ("127.0.0.1", 2201, "gigafactory")
    assert ctl["ansible_become"] is True
    assert ctl["ansible_ssh_private_key_file"] == str(tmp_path / "id_ed25519")
    assert ctl["ansible_ssh_common_args"] == (f"-o UserKnownHostsFile={tmp_path / 'known_hosts'} "
                                              "-o StrictHostKeyChecking=yes")
    assert ctl["ansible_ssh_timeout"] == demo.CONNECT_TIMEOUT_S > 10   # an emulated guest's connect outlasts 10 s


class FakeLauncher:
    booted: list[tuple[str, object]] = []

    def __init__(self, state_dir):
        self.state_dir = state_dir

    def status(self):
        return []

    def up(self, specs, images=None):
        FakeLauncher.booted = [(s.name, (images or {}).get(s.name)) for s in specs]
        return [fake_vm(s.name, 2200 + i, self.state_dir) for i, s in enumerate(specs)]


def built_images(site, plan, site_path, node_types=None, say=None, mapping=None, start_mirrors=None):
    """What ``site_images`` returns, without building: one image per node type, named after it."""
    from infra.image.cache import BuiltImage
    return [BuiltImage(t, Path("/cache") / t, t, cached=True) for t in sorted({h.node_type for h in plan.hosts.values()})]


def test_demo_up_boots_every_site_host_from_its_node_types_image_and_runs_up_with_their_connections(tmp_path, monkeypatch):
    runs, mirrors = [], []
    monkeypatch.setattr("infra.vm.launcher.Launcher", FakeLauncher)
    monkeypatch.setattr("infra.vm.mirror_cache.ensure_mirror_cache", lambda: mirrors.append(1))
    monkeypatch.setattr("infra.image.build.site_images", built_images)
    monkeypatch.setattr(demo, "state_dir", lambda name: tmp_path / name)
    monkeypatch.setattr(demo, "up", lambda options: runs.append(options) or RunOutcome(tmp_path / "run", {}, [], 0))
    (tmp_path / "demo").mkdir()
    assert demo.demo_up(DEMO) == 0
    assert [(n, i.disk) for n, i in FakeLauncher.booted] == [
        ("ctl01", Path("/cache/vm-service/disk.qcow2")), ("node01", Path("/cache/vm-compute/disk.qcow2")),
        ("node02", Path("/cache/vm-compute/disk.qcow2"))]
    assert {i.disk_format for _, i in FakeLauncher.booted} == {"qcow2"} and mirrors == [1]
    hosts = yaml.safe_load(runs[0].inventories[0].read_text())["all"]["hosts"]
    assert set(hosts) == {"ctl01", "node01", "node02"}
    assert {h["gigafactory_part"] for h in hosts.values()} == {"configure"}    # the image holds the install part
    assert runs[0].site == DEMO


def test_demo_from_scratch_boots_the_bare_image_and_applies_both_parts(tmp_path, monkeypatch):
    runs = []
    monkeypatch.setattr("infra.vm.launcher.Launcher", FakeLauncher)
    monkeypatch.setattr("infra.vm.mirror_cache.ensure_mirror_cache", lambda: None)
    monkeypatch.setattr("infra.image.build.site_images", lambda *a, **k: pytest.fail("no image build from scratch"))
    monkeypatch.setattr(demo, "state_dir", lambda name: tmp_path / name)
    monkeypatch.setattr(demo, "up", lambda options: runs.append(options) or RunOutcome(tmp_path / "run", {}, [], 0))
    (tmp_path / "demo").mkdir()
    assert demo.demo_up(DEMO, from_scratch=True) == 0
    assert FakeLauncher.booted == [("ctl01", None), ("node01", None), ("node02", None)]
    hosts = yaml.safe_load(runs[0].inventories[0].read_text())["all"]["hosts"]
    assert not any("gigafactory_part" in h for h in hosts.values())


def test_acceptance_report_prints_every_check(tmp_path, capsys):
    report = {"slurm": {"account": "acme-ai", "ran_on": ["node01", "node02"]},
              "rdma": {"pair": ["node01", "node02"], "gbits": 0.42, "floor": 0.05},
              "health": {"node01": True, "node02": False}, "health_reasons": {"node01": None, "node02": "hca_count: 0 of 1"}}
    demo.print_acceptance(report, tmp_path / "acceptance.json")
    out = capsys.readouterr().out
    assert "node01, node02 (account acme-ai)" in out and "0.42 Gb/s" in out
    assert "FAILED: hca_count: 0 of 1" in out and "passed" in out


def test_a_second_demo_provisions_the_running_vms_again(tmp_path, monkeypatch):
    from infra.vm.launcher import VMStatus
    runs = []

    class RunningLauncher:
        def __init__(self, state_dir):
            pass

        def status(self):
            return [VMStatus(n, 100 + i, True, 2200 + i) for i, n in enumerate(["ctl01", "node01", "node02"])]

        def running(self):
            return [fake_vm(n, 2200 + i, tmp_path) for i, n in enumerate(["ctl01", "node01", "node02"])]

        def up(self, specs, images=None):
            raise AssertionError("must not boot again")

    monkeypatch.setattr("infra.vm.launcher.Launcher", RunningLauncher)
    monkeypatch.setattr("infra.vm.mirror_cache.ensure_mirror_cache", lambda: None)
    monkeypatch.setattr(demo, "state_dir", lambda name: tmp_path / name)
    monkeypatch.setattr(demo, "up", lambda options: runs.append(options) or RunOutcome(tmp_path / "run", {}, [], 0))
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "booted.json").write_text('["node01", "node02"]')     # the first demo booted these from images
    assert demo.demo_up(DEMO) == 0
    hosts = yaml.safe_load(runs[0].inventories[0].read_text())["all"]["hosts"]
    assert set(hosts) == {"ctl01", "node01", "node02"}
    assert [n for n, h in sorted(hosts.items()) if h.get("gigafactory_part") == "configure"] == ["node01", "node02"]


def test_demo_reports_a_launcher_failure_without_a_traceback(monkeypatch, capsys):
    from infra.cli import main
    from infra.vm.launcher import LauncherError

    def fail(site, options, from_scratch=False):
        raise LauncherError("VMs of .cache/demo/demo are still running: run 'down' first")

    monkeypatch.setattr(demo, "demo_up", fail)
    assert main(["demo", str(DEMO)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the demo's VMs: VMs of") and "Traceback" not in err
