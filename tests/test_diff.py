"""``gigafactory diff SITE --against REF``: each change's impact class and hosts, the hosts by class; nothing touched."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import DEMO, RIGA, site_data

from infra.cli import main
from infra.orchestrate.state import record_site_file


class Repo:
    """A git repository in tmp_path holding a site file at inv/site.yml, one commit per version."""

    def __init__(self, root: Path):
        self.root, self.site = root, root / "inv" / "site.yml"
        self.site.parent.mkdir(parents=True)
        self.git("init", "-q")

    def git(self, *args: str) -> str:
        return subprocess.run(["git", "-C", str(self.root), "-c", "user.name=t", "-c", "user.email=t@example.invalid",
                               *args], check=True, capture_output=True, text=True).stdout

    def commit(self, data: dict | str) -> None:
        self.site.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
        self.git("add", "-A")
        self.git("commit", "-q", "-m", "a version")


def diff(capsys, site: Path, ref: str, *extra: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["diff", str(site), f"--against={ref}", *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def changed(capsys, tmp_path, before: dict, mutate) -> dict:
    """The JSON diff of ``before`` (committed) and ``before`` mutated (the working copy)."""
    repo = Repo(tmp_path)
    repo.commit(before)
    after = yaml.safe_load(yaml.safe_dump(before))
    mutate(after)
    repo.site.write_text(yaml.safe_dump(after, sort_keys=False))
    code, out, err = diff(capsys, repo.site, "HEAD", "--json")
    assert code == 0, err
    return json.loads(out)


def only(result: dict, slurm_conf: str | None = None) -> dict:
    """The one change of the site file; ``slurm_conf``: the hosts the plans' Slurm configuration change adds."""
    fields = [c["field"] for c in result["changes"]]
    assert fields[1:] == (["(plan).slurm_conf"] if slurm_conf else []), result["changes"]
    if slurm_conf:
        assert (result["changes"][1]["hosts"], result["changes"][1]["impact"]) == (slurm_conf, "live")
    return result["changes"][0]


def classes(result: dict) -> dict[str, str]:
    """Host class -> hostlist, for the classes that have hosts."""
    return {cls: v["hosts"] for cls, v in result["hosts"].items() if v["count"]}


def test_a_driver_branch_is_a_reboot_of_the_gpu_hosts(capsys, tmp_path, riga):
    result = changed(capsys, tmp_path, riga, lambda d: d["software"]["nvidia_driver"].update(branch="580"))
    c = only(result)
    assert (c["field"], c["old"], c["new"], c["impact"]) == ("software.nvidia_driver.branch", "570", "580", "reboot")
    assert (c["hosts"], c["host_count"]) == ("gpu[0001-0128]", 128)
    assert classes(result) == {"nothing": "ctl[01-02],db01,k8s-cp[01-03],login[01-02],nfs01,sm[01-02]",
                               "reboot": "gpu[0001-0128]"}


def test_a_partition_time_limit_is_live_on_that_partitions_hosts(capsys, tmp_path, riga):
    result = changed(capsys, tmp_path, riga, lambda d: d["slurm"]["partitions"][1].update(max_time="08:00:00"))
    c = only(result, slurm_conf="ctl[01-02],db01,login[01-02]")      # every other holder of slurm.conf: live
    assert (c["field"], c["old"], c["new"], c["impact"]) == ("slurm.partitions[interactive].max_time", "04:00:00", "08:00:00", "live")
    assert c["hosts"] == "gpu[0001-0096]"                   # the train pool: not the inference hosts
    assert classes(result)["live"] == "ctl[01-02],db01,gpu[0001-0096],login[01-02]" and "drain" not in classes(result)


def test_a_node_types_memory_is_a_drain_of_the_hosts_of_that_type(capsys, tmp_path, riga):
    result = changed(capsys, tmp_path, riga, lambda d: d["node_types"]["hgx-h200"].update(memory_gb=1536))
    c = only(result, slurm_conf="ctl[01-02],db01,login[01-02]")     # slurmctld learns the new RealMemory
    assert (c["field"], c["impact"], c["hosts"]) == ("node_types.hgx-h200.memory_gb", "drain", "gpu[0001-0128]")
    assert classes(result)["drain"] == "gpu[0001-0128]" and classes(result)["live"] == "ctl[01-02],db01,login[01-02]"


def test_a_tenants_quota_is_live_on_the_slurm_controllers_only(capsys, tmp_path, riga):
    result = changed(capsys, tmp_path, riga, lambda d: d["tenants"][0]["slurm"].update(gpus=400))
    c = only(result)
    assert (c["field"], c["old"], c["new"], c["impact"], c["hosts"]) == ("tenants[acme-ai].slurm.gpus", 384, 400, "live",
                                                                        "ctl[01-02]")   # sacctmgr (slurm_tenants)
    assert list(classes(result)) == ["nothing", "live"] and classes(result)["live"] == "ctl[01-02]"


def test_a_pools_grown_hosts_are_new(capsys, tmp_path, demo):
    result = changed(capsys, tmp_path, demo, lambda d: d["pools"][1].update(hosts="node[01-03]"))
    c = only(result, slurm_conf="ctl01,node[01-02]")          # slurm.conf learns node03 on every holder
    assert (c["field"], c["old"], c["new"], c["impact"]) == ("pools[compute].hosts", "node[01-02]", "node[01-03]", "live")
    assert (c["new_hosts"], c["removed_hosts"], c["hosts"]) == ("node03", "", "")
    assert classes(result) == {"live": "ctl01,node[01-02]", "new": "node03"}


def test_a_pools_removed_hosts_are_removed(capsys, tmp_path, demo):
    result = changed(capsys, tmp_path, demo, lambda d: d["pools"][1].update(hosts="node01"))
    assert only(result, slurm_conf="ctl01,node01")["removed_hosts"] == "node02"
    assert classes(result) == {"live": "ctl01,node01", "removed": "node02"}


def test_an_address_change_is_a_replace(capsys, tmp_path, demo):
    result = changed(capsys, tmp_path, demo, lambda d: d["networks"]["management"].update(cidr="192.168.200.0/24"))
    c = only(result)
    assert (c["field"], c["impact"], c["hosts"]) == ("networks.management.cidr", "replace", "ctl01,node[01-02]")
    assert classes(result) == {"replace": "ctl01,node[01-02]"}


def test_addresses_moved_by_another_field_are_found_in_the_plans(capsys, tmp_path, demo):
    # ctl[01-17] outgrows its block of 16 addresses: every block after it moves (infra/site/addresses.py).
    result = changed(capsys, tmp_path, demo, lambda d: d["pools"][0].update(hosts="ctl[01-17]"))
    fields = {c["field"]: c for c in result["changes"]}
    assert fields["pools[service].hosts"]["impact"] == "live"
    moved = fields["(plan).addresses"]
    assert moved["impact"] == "replace" and moved["hosts"] == "ctl01,node[01-02]"
    assert moved["old"] == {"ctl01": {"management": "192.168.100.17/24"}}
    assert classes(result) == {"replace": "ctl01,node[01-02]", "new": "ctl[02-17]"}


def test_a_tenant_isolated_on_the_fabric_drains_its_hosts(capsys, tmp_path, riga):
    def isolate(d):
        d["tenants"][1].update(fabric_isolation=True, pools=["infer"])
    result = changed(capsys, tmp_path, riga, isolate)
    by_field = {c["field"]: c for c in result["changes"]}
    assert by_field["tenants[univ-latvia].fabric_isolation"]["impact"] == "drain"
    assert by_field["tenants[univ-latvia].pools"]["hosts"] == "gpu[0097-0128]"


def test_text_output_names_each_change_its_class_and_hosts(capsys, tmp_path, riga):
    repo = Repo(tmp_path)
    repo.commit(riga)
    riga["software"]["nvidia_driver"]["branch"] = "580"
    riga["slurm"]["partitions"][0]["max_time"] = "3-00:00:00"
    repo.commit(riga)
    code, out, err = diff(capsys, repo.site, "HEAD~1")
    assert code == 0, err
    assert out.splitlines() == [
        "riga-1: 3 changes against HEAD~1:inv/site.yml",
        "  software.nvidia_driver.branch: '570' -> '580'",
        "      reboot   gpu[0001-0128] (128 hosts)",
        "  slurm.partitions[batch].max_time: '2-00:00:00' -> '3-00:00:00'",
        "      live     gpu[0001-0096] (96 hosts)",
        "  (plan).slurm_conf: (unset) -> [\"partitions\"]",
        "      live     ctl[01-02],db01,login[01-02] (5 hosts)",
        "hosts by what they need:",
        "  nothing       6  k8s-cp[01-03],nfs01,sm[01-02]",
        "  live          5  ctl[01-02],db01,login[01-02]",
        "  reboot      128  gpu[0001-0128]",
    ]


def test_json_shape(capsys, tmp_path, demo):
    result = changed(capsys, tmp_path, demo, lambda d: d["slurm"]["partitions"][0].update(max_time="02:00:00"))
    assert set(result) == {"site", "against", "changes", "hosts"}
    assert (result["site"], result["against"]) == ("demo", "HEAD:inv/site.yml")
    assert result["changes"] == [{"field": "slurm.partitions[batch].max_time", "old": "01:00:00", "new": "02:00:00",
                                  "impact": "live", "hosts": "node[01-02]", "host_count": 2, "new_hosts": "",
                                  "removed_hosts": ""},
                                 {"field": "(plan).slurm_conf", "old": None, "new": ["partitions"], "impact": "live",
                                  "hosts": "ctl01", "host_count": 1, "new_hosts": "", "removed_hosts": ""}]
    assert list(result["hosts"]) == ["nothing", "live", "restart", "drain", "reboot", "replace", "new", "removed"]
    assert result["hosts"]["live"] == {"count": 3, "hosts": "ctl01,node[01-02]"}
    assert result["hosts"]["nothing"] == {"count": 0, "hosts": ""}


def test_the_same_site_has_no_changes_and_nothing_to_do(capsys, tmp_path):
    repo = Repo(tmp_path)
    repo.commit(Path("/work/shared/sites/riga-1.yml").read_text() if Path("/work/shared/sites/riga-1.yml").exists()
                else RIGA.read_text())
    code, out, _ = diff(capsys, repo.site, "HEAD")
    assert code == 0
    assert out.splitlines()[0] == "riga-1: 0 changes against HEAD:inv/site.yml"
    assert out.splitlines()[-1].split()[:2] == ["nothing", "139"]


def test_against_a_run_directory_and_a_site_file(capsys, tmp_path):
    site = tmp_path / "site.yml"
    data = site_data(DEMO)
    site.write_text(yaml.safe_dump(data))
    run = tmp_path / "runs" / "demo" / "20260101T000000Z"
    run.mkdir(parents=True)
    data["slurm"]["partitions"][0]["max_time"] = "00:30:00"
    record_site_file(run, yaml.safe_dump(data))
    assert (run / "site.yml").stat().st_mode & 0o777 == 0o600
    for ref in (str(run), str(run / "site.yml")):
        code, out, err = diff(capsys, site, ref, "--json")
        assert code == 0, err
        assert [(c["field"], c["old"], c["impact"]) for c in json.loads(out)["changes"]] == [
            ("slurm.partitions[batch].max_time", "00:30:00", "live"), ("(plan).slurm_conf", None, "live")]
    code, _, err = diff(capsys, site, str(tmp_path / "runs"))
    assert code == 2 and "without a recorded site file (site.yml)" in err


@pytest.mark.parametrize("ref, message", [
    ("no-such-branch", "'no-such-branch': no such revision in the git repository"),
    ("HEAD~5", "'HEAD~5': no such revision"),
    ("--output=/tmp/x", "is neither a file, a run directory nor a git revision"),
])
def test_a_bad_revision_is_refused(capsys, tmp_path, demo, ref, message):
    repo = Repo(tmp_path)
    repo.commit(demo)
    code, out, err = diff(capsys, repo.site, ref)
    assert (code, out) == (2, "")
    assert message in err and "Traceback" not in err


def test_a_site_file_absent_at_the_revision_is_refused(capsys, tmp_path, demo):
    repo = Repo(tmp_path)
    (tmp_path / "README").write_text("first")
    repo.git("add", "README")
    repo.git("commit", "-q", "-m", "before the site")
    repo.commit(demo)
    code, _, err = diff(capsys, repo.site, "HEAD~1")
    assert code == 2 and "inv/site.yml does not exist at that revision" in err


def test_a_site_outside_git_with_an_unknown_ref_is_refused(capsys, tmp_path, demo):
    site = tmp_path / "site.yml"
    site.write_text(yaml.safe_dump(demo))
    code, _, err = diff(capsys, site, "HEAD")
    assert code == 2 and "not in a git repository" in err


def test_an_invalid_site_on_either_side_is_refused_naming_the_field(capsys, tmp_path, demo):
    repo = Repo(tmp_path)
    bad = yaml.safe_load(yaml.safe_dump(demo))
    bad["node_types"]["vm-compute"]["memory_gb"] = 0
    repo.commit(bad)
    repo.commit(demo)
    code, out, err = diff(capsys, repo.site, "HEAD~1")
    assert (code, out) == (2, "")
    assert "HEAD~1:inv/site.yml" in err and "node_types.vm-compute.memory_gb:" in err
    repo.site.write_text(yaml.safe_dump(bad))            # the working copy invalid, the revision fine
    code, out, err = diff(capsys, repo.site, "HEAD")
    assert (code, out) == (2, "")
    assert "node_types.vm-compute.memory_gb:" in err


def test_diff_touches_nothing(capsys, tmp_path, demo):
    repo = Repo(tmp_path)
    repo.commit(demo)
    demo["pools"][1]["hosts"] = "node[01-04]"
    repo.site.write_text(yaml.safe_dump(demo))
    status = repo.git("status", "--porcelain")
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    assert diff(capsys, repo.site, "HEAD")[0] == 0
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before
    assert repo.git("status", "--porcelain") == status and repo.git("rev-list", "--count", "HEAD") == "1\n"
