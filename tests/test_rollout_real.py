"""The rollout against real Slurm 24.11 daemons (Debian 13 chroot): slurmctld, slurmdbd and two slurmd, node01 and
node02, each in its own UTS namespace with its own loopback address and port.

A 75-second job runs on node01; a drain-class change to both nodes with at most one out of service updates node02
first while the job runs, node01 once it has ended; the job completes; both end idle. A failing update leaves its
node drained with the reason. A live-class change (the partition's MaxTime) is applied with ``scontrol reconfigure``
and drains nothing. A reboot-class change drains the node, updates it once idle and asks Slurm for ``scontrol
reboot ASAP nextstate=DOWN``; the chroot cannot reboot (slurmd's RebootProgram here is /bin/true, so the node
never comes back with a new boot time): the node shows the reboot requested and drained, and the rollout fails it
after its reboot timeout, drained. Every Slurm command goes through ansible-runner's ad-hoc command module.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys

import pytest

from infra.plan import build_plan
from infra.render.files import render_file, slurm_files
from infra.site import load_site

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("debootstrap") or not shutil.which("unshare"),
                       reason="needs root, debootstrap and unshare"),
]


def two_node_conf(conf: str, nodes: dict[str, str]) -> str:
    """demo's slurm.conf for a chroot with two slurmd on one machine (realslurm.separate_slurmd), and a
    RebootProgram that cannot reboot this machine, with a shorter ResumeTimeout."""
    from realslurm import separate_slurmd
    from test_metering_real import _for_a_chroot
    conf = separate_slurmd(_for_a_chroot(conf), "node[01-02]", nodes)
    for key, value in (("RebootProgram", "/bin/true"), ("ResumeTimeout", "300")):
        conf = re.sub(rf"^{key}=.*$", f"{key}={value}", conf, flags=re.MULTILINE)
    assert "RebootProgram=/bin/true" in conf and "ResumeTimeout=300" in conf, conf
    return conf


def test_a_drain_class_change_waits_for_the_running_job_and_never_takes_both_nodes_out(tmp_path):
    from conftest import DEMO
    from realslurm import daemon_logs, run_in_slurm, slurm_chroot

    plan = build_plan(load_site(DEMO))
    nodes = {n: plan.hosts[n].address() for n in ("node01", "node02")}
    files = {f"/etc/{rel}": content for rel, content in slurm_files(plan).items()}
    files["/etc/slurm/slurm.conf"] = two_node_conf(files["/etc/slurm/slurm.conf"], nodes)
    files["/etc/slurm/cgroup.conf"] = "CgroupPlugin=disabled\n"
    files["/etc/hosts"] = render_file(plan, "hosts")
    root = slurm_chroot(slurmd=True)

    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    for tool in ("scontrol", "squeue"):
        (wrappers / tool).write_text(f'#!/bin/sh\nexec chroot {root} {tool} "$@"\n')
        (wrappers / tool).chmod(0o755)
    (tmp_path / "hosts").write_text(f"ctl01 ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    driver = os.path.join(os.path.dirname(__file__), "rollout_real_driver.py")
    run = (f"env PATH={wrappers}:{os.path.dirname(sys.executable)}:/usr/sbin:/usr/bin:/sbin:/bin HOME={tmp_path} "
           f"ANSIBLE_LOCAL_TEMP={tmp_path / 'tmp'} {sys.executable} {driver} {root} {tmp_path}")
    result = run_in_slurm(
        root, files, controller=plan.slurm.controllers[0], dbd=plan.slurm.accounting, cluster=plan.slurm.cluster,
        slurmd=list(nodes.items()), commands=["sacctmgr -i add account lab", "sacctmgr -i add user root account=lab"],
        timeout=900, host_timeout=600, host_commands=[run])
    done = tmp_path / "result.json"
    assert done.exists(), result.stdout[-4000:] + result.stderr[-4000:] + daemon_logs(root)
    out = json.loads(done.read_text())
    context = json.dumps({k: v for k, v in out.items() if k != "log"}, indent=1)[-6000:]

    # the job ran on node01 the whole time and completed: not cancelled, requeued or failed with its node
    assert out["job_state_before"] == "RUNNING|node01", context
    assert out["sacct"].split("|")[1] == "COMPLETED", context
    # node02 first, while the job ran on node01; node01 once its job had ended
    applied = out["drain_applied"]
    assert [a["hosts"] for a in applied] == [["node02"], ["node01"]], context
    assert applied[0]["job"] == "RUNNING|node01" and applied[1]["job"] == "", context
    assert out["drain"]["node01"]["waited_s"] > 20 and out["drain"]["node02"]["waited_s"] < 20, context
    assert any("node01" in w["waits"] and w["waits"]["node01"][0].startswith("jobs") for w in out["waits"]), context
    # never both out: replay the drain/resume commands in order
    drained, most = set(), 0
    for entry in out["log"][:out["drain_log_end"]]:
        argv = entry["argv"]
        if argv[:2] == ["scontrol", "update"]:
            node = argv[2].split("=", 1)[1]
            (drained.add if argv[3] == "state=drain" else drained.discard)(node)
            most = max(most, len(drained))
    assert most == 1 and drained == set(), context
    reasons = [a for e in out["log"] for a in e["argv"] if a.startswith("reason=")]
    assert reasons[0] == "reason=gigafactory: slurm.node_types.vm-compute.memory_gb: 1 -> 2", reasons
    # both end idle, not drained
    # (NOT_RESPONDING may show for a moment on a loaded machine: slurmctld missed a ping; not the rollout's doing)
    states = re.findall(r"NodeName=(\S+) .*?\bState=(\S+)", out["nodes_after_drain"])
    assert {n: set(s.split("+")) - {"NOT_RESPONDING"} for n, s in states} == {"node01": {"IDLE"}, "node02": {"IDLE"}}, \
        out["nodes_after_drain"]

    # a failed update: drained, with the reason
    assert out["failing"]["node02"]["status"] == "failed", context
    assert "State=IDLE+DRAIN" in out["node02_after_failure"], out["node02_after_failure"]
    assert "Reason=gigafactory: update failed: apply failed on purpose" in out["node02_after_failure"]

    # live: scontrol reconfigure once, the new MaxTime in force, nothing drained
    assert out["reconfigure"] is None and out["live_commands"] == [["scontrol", "reconfigure"]], context
    assert "MaxTime=02:00:00" in out["partition_after_live"], out["partition_after_live"]
    assert "DRAIN" not in out["nodes_after_live"], out["nodes_after_live"]

    # reboot: drained, waited for the short job, updated, then scontrol reboot ASAP nextstate=DOWN; resumed only
    # after the health gate, which never runs here
    commands = [e["argv"] for e in out["reboot_log"] if e["argv"][1] in ("update", "reboot")]
    assert [c[:4] for c in commands[:2]] == [["scontrol", "update", "nodename=node01", "state=drain"],
                                             ["scontrol", "reboot", "ASAP", "nextstate=DOWN"]], commands
    assert commands[1][-1] == "node01" and commands[1][4].startswith("reason=gigafactory: "), commands
    assert out["reboot_applied"][0]["job"] == "", context          # updated only once the short job had ended
    assert out["sacct_short"].split("|")[1] == "COMPLETED", out["sacct_short"]
    seen = [re.search(r"State=(\S+)", e["stdout"]).group(1) for e in out["reboot_log"]
            if e["argv"][:3] == ["scontrol", "show", "node"] and "State=" in e["stdout"]]
    assert any("REBOOT_" in s and "DRAIN" in s for s in seen), seen
    # the chroot cannot reboot: the node never comes back, the rollout fails it after its timeout and it stays drained
    assert out["reboot"]["node01"]["status"] == "failed" and out["reboot_checked"] == [], context
    assert ["state=resume"] not in [c[3:4] for c in commands], commands
    assert "DRAIN" in out["node01_after_reboot"], out["node01_after_reboot"]
