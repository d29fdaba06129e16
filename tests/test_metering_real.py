"""Metering on real daemons: slurmctld, slurmd and slurmdbd 24.11 on MariaDB (Debian 13) in a chroot.

A node declares eight H200 GPUs without devices (the rendered ``File=/dev/nvidia[0-7]`` point at empty files:
slurmd 24.11 drops a GPU declared without ``File=``, with ``Flags=CountOnly`` or not; ``SlurmdParameters=
config_overrides``) and reads its energy
from ``acct_gather_energy/pm_counters``, whose counter file the test advances by 1,000 J a second. Two tenants run
real jobs side by side on it; each job's record holds the meter's joules over the job (read by the job's extern step,
which the rendered ``PrologFlags=Contain`` starts: slurmctld records no energy of a batch step), and sacct's record
goes through ``gigafactory usage``, which apportions them by each job's share of the node's GPUs;
a prepaid tenant whose budget a running job has committed has its next job pending on the budget.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from metering_data import with_billing

from infra.plan import build_plan
from infra.render.files import render_file, slurm_files
from infra.site.load import validate_data
from infra.usage import parse_period, read_sacct, usage_report
from infra.usage.sacct import SACCT_FIELDS

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("debootstrap") or not shutil.which("unshare"),
                       reason="needs root, debootstrap and unshare"),
]

WATTS = 1000


def metering_site(demo: dict) -> dict:
    """demo with one GPU node (node01: 8 H200, no devices), EUR tariffs, pm_counters, a tiny prepaid budget."""
    demo["node_types"]["vm-compute"].update(gpu={"model": "H200", "count": 8}, memory_gb=16,
                                            cpu={"sockets": 1, "cores_per_socket": 8, "threads_per_core": 1})
    demo["pools"][1]["hosts"] = "node01"
    demo["tenants"][0]["slurm"].pop("nodes")
    demo["tenants"][1]["slurm"].pop("nodes")
    demo["storage"] = []
    data = with_billing(demo)
    data["billing"]["tariffs"] = {"gpu_hour": {"H200": 3.0}, "cpu_hour": 0.4, "energy_kwh": 0.1}
    data["billing"]["classes"] = [{"name": "startup", "price_factor": 1.0}]
    data["energy"] = {"node": "pm_counters", "node_frequency_s": 1}
    tenants = {t["name"]: t for t in data["tenants"]}
    tenants["acme-ai"]["billing"] = {"class": "startup"}
    # 0.15 EUR at factor 1 = 9 billing-minutes: one 1-minute job of 2 GPUs and 1 CPU (billing 6.4) fits, two do not
    tenants["univ-latvia"]["billing"] = {"class": "startup", "prepaid": {"amount": 0.15, "currency": "EUR"}}
    return data


def _for_a_chroot(conf: str) -> str:
    """What a chroot without systemd or cgroup delegation cannot run, swapped for what it can (named here)."""
    conf = conf.replace("ProctrackType=proctrack/cgroup", "ProctrackType=proctrack/linuxproc")
    conf = conf.replace("TaskPlugin=task/cgroup,task/affinity", "TaskPlugin=task/none")
    conf = conf.replace("JobAcctGatherType=jobacct_gather/cgroup", "JobAcctGatherType=jobacct_gather/linux")
    conf = re.sub(r"^HealthCheck.*\n", "", conf, flags=re.MULTILINE)
    return conf + "SlurmdParameters=config_overrides\nSlurmdUser=root\n"


TENANTS_PLAY = """
- name: The slurm_tenants role, budgets included
  hosts: ctl01
  connection: local
  gather_facts: false
  roles:
    - slurm_tenants
"""


def test_two_tenants_jobs_are_metered_priced_and_a_spent_budget_holds_the_next_job(demo, tmp_path):
    import json

    from conftest import ROOT, bin_path
    from realslurm import daemon_logs, run_in_slurm, slurm_chroot

    data = metering_site(demo)
    site = validate_data(data)
    plan = build_plan(site)
    files = {f"/etc/{rel}": content for rel, content in slurm_files(plan).items()}
    conf = files["/etc/slurm/slurm.conf"]
    assert "AcctGatherEnergyType=acct_gather_energy/pm_counters" in conf and "AccountingStorageEnforce=associations,limits,qos,safe" in conf
    assert "\nPrologFlags=Contain\n" in conf
    files["/etc/slurm/slurm.conf"] = _for_a_chroot(conf)
    gres = files["/etc/slurm/gres.conf"]
    # slurmd 24.11's gpu plugin drops a GPU without File= ("Ignoring file-less GPU", Flags=CountOnly or not):
    # the rendered File=/dev/nvidia[0-7] stays, and the chroot gets eight empty files there in place of devices
    files["/etc/slurm/gres.conf"] = gres
    files["/etc/slurm/cgroup.conf"] = "CgroupPlugin=disabled\n"
    files["/etc/hosts"] = render_file(plan, "hosts")
    node = ("node01", plan.hosts["node01"].address())
    root = slurm_chroot(slurmd=True)
    for i in range(8):
        (root / "dev" / f"nvidia{i}").touch()
    counter = root / "sys" / "cray" / "pm_counters"
    counter.mkdir(parents=True, exist_ok=True)
    for name, value in (("energy", "0 J"), ("power", f"{WATTS} W"), ("freshness", "0"), ("generation", "1")):
        (counter / name).write_text(f"{value}\n")

    from infra.render.inventory import slurm_vars
    tenants = slurm_vars(site, plan)["gf_slurm_tenants"]
    assert [t["budget_billing_minutes"] for t in tenants] == [None, 9]
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"slurm_tenants": tenants, "slurm_tenants_cluster": plan.slurm.cluster,
                                 "slurm_tenants_members": {"acme-ai": ["root"], "univ-latvia": ["root"]}}))
    (tmp_path / "hosts").write_text("ctl01\n")          # the role's variables all come from extra.json
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    (wrappers / "sacctmgr").write_text(f'#!/bin/sh\nexec chroot {root} sacctmgr "$@"\n')
    (wrappers / "sacctmgr").chmod(0o755)
    # gigafactory usage without --sacct: its AnsibleCommand reaches the accounting host on a local connection
    # (the extra inventory), where a sacct on PATH runs the chroot's sacct against the real slurmdbd
    (wrappers / "sacct").write_text(f'#!/bin/sh\nexec chroot {root} sacct "$@"\n')
    (wrappers / "sacct").chmod(0o755)
    import yaml
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "site.yml").write_text(yaml.safe_dump(data))
    (tmp_path / "local.yml").write_text(yaml.safe_dump({"all": {"hosts": {plan.slurm.accounting[0]: {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    month_now = datetime.now(ZoneInfo(site.site.timezone)).strftime("%Y-%m")    # the jobs run now (not a fixed month)
    usage = (f"env PATH={wrappers}:{os.path.dirname(sys.executable)}:/usr/sbin:/usr/bin:/sbin:/bin HOME={tmp_path} "
             f"PYTHONPATH={ROOT} ANSIBLE_LOCAL_TEMP={tmp_path / 'tmp'} {bin_path('gigafactory')} usage "
             f"{tmp_path / 'site' / 'site.yml'} --period {month_now} --format json -i {tmp_path / 'local.yml'}")
    (tmp_path / "play.yml").write_text(TENANTS_PLAY)
    ansible = (f"env PATH={wrappers}:{os.path.dirname(sys.executable)}:/usr/sbin:/usr/bin:/sbin:/bin HOME={tmp_path} "
               f"ANSIBLE_CONFIG={ROOT / 'ansible.cfg'} ANSIBLE_ROLES_PATH={ROOT / 'playbooks' / 'roles'} "
               f"ANSIBLE_LOCAL_TEMP={tmp_path / 'tmp'} {bin_path('ansible-playbook')} -i {tmp_path / 'hosts'} "
               f"-e ansible_python_interpreter={sys.executable} -e @{extra} {tmp_path / 'play.yml'}")
    # the node's meter: 1,000 J more every second, for at most 120 s (a bounded loop that stops by itself)
    meter = (f"sh -c 'i=0; while [ $i -lt 120 ]; do i=$((i+1)); echo \"$((i*{WATTS})) J\" > {counter}/energy; sleep 1; done' &")
    sacct = (f"env SLURM_TIME_FORMAT=%s chroot {root} sacct --allusers --allocations --parsable2 --starttime 2026-01-01 "
             f"--format={','.join(SACCT_FIELDS)},State,JobName")
    sbatch = f"chroot {root} sbatch --parsable -p batch -c 1 --mem=100M"
    result = run_in_slurm(
        root, files, controller=plan.slurm.controllers[0], dbd=plan.slurm.accounting, cluster=plan.slurm.cluster,
        slurmd=node, commands=[], timeout=900, host_commands=[
            "echo '=== role'", ansible,
            meter,
            "echo '=== qos'", f"chroot {root} sacctmgr --noheader --parsable2 show qos format=name,grptresmins,flags",
            f"chroot {root} scontrol reconfigure",
            "echo '=== jobs'",
            f"{sbatch} -A acme-ai --gres=gpu:h200:4 -t 2 -J acme --wrap 'sleep 20'",
            f"{sbatch} -A univ-latvia --gres=gpu:h200:2 -t 1 -J univ1 --wrap 'sleep 40'",
            "sleep 5",
            f"{sbatch} -A univ-latvia --gres=gpu:h200:2 -t 1 -J univ2 --wrap 'sleep 1'",
            "sleep 5",
            "echo '=== queue'", f"chroot {root} squeue --noheader -o '%j|%T|%r'",
            f"sh -c 'for i in $(seq 60); do chroot {root} squeue --noheader -n acme,univ1 | grep -q . || exit 0; sleep 1; done; exit 1'",
            "sleep 3",
            "echo '=== after'", f"chroot {root} squeue --noheader -o '%j|%T|%r'",
            "echo '=== sacct'", sacct,
            "echo '=== usage'", usage,
        ])
    out = result.stdout
    assert "=== sacct" in out, out[-4000:] + result.stderr[-3000:] + daemon_logs(root)
    sections = dict(part.split("\n", 1) for part in out.split("=== ")[1:])
    assert "univ-latvia|billing=9|NoDecay" in sections["qos"], sections["qos"]
    queue = dict(line.split("|", 1) for line in sections["queue"].splitlines() if "|" in line)
    assert queue["univ1"].startswith("RUNNING") and queue["acme"].startswith("RUNNING"), sections["queue"]
    assert queue["univ2"] == "PENDING|QOSGrpBillingMinutes", sections["queue"] + daemon_logs(root)
    lines = sections["sacct"].strip().splitlines()
    records = {row.split("|")[-1]: row.split("|") for row in lines[1:]}
    assert {"acme", "univ1"} <= set(records), sections["sacct"]
    assert records["acme"][-2] == "COMPLETED" and records["univ1"][-2] == "COMPLETED", sections["sacct"]
    # univ1 used 40 s of its 9 billing-minutes at about 6 a minute: what is left cannot hold univ2's 1-minute limit
    after = dict(line.split("|", 1) for line in sections["after"].splitlines() if "|" in line)
    assert after == {"univ2": "PENDING|QOSGrpBillingMinutes"}, sections["after"]
    (tmp_path / "sacct.txt").write_text(sections["sacct"])

    report = usage_report(site, parse_period(month_now, site.site.timezone),
                          read_sacct(lines, site.site.timezone))
    # the same records read from the accounting host by the command line give the same report
    from infra.usage.render import as_json
    # (the tenants' lines: the idle and unmetered lines count up to each report's own clock, a few seconds apart)
    def tenant_lines(text: str) -> list:
        return [t for t in json.loads(text)["tenants"] if not t["tenant"].startswith("(")]
    assert tenant_lines(sections["usage"]) == tenant_lines(as_json(report)), sections["usage"] + result.stderr[-3000:]
    rows = {r.name: r for r in report.tenants}
    acme, univ = rows["acme-ai"], rows["univ-latvia"]
    acme_s = int(records["acme"][4]) - int(records["acme"][3])
    univ_s = int(records["univ1"][4]) - int(records["univ1"][3])
    assert acme_s >= 20 and univ_s >= 40
    assert acme.gpu_hours == {"h200": pytest.approx(4 * acme_s / 3600)}
    assert acme.cpu_hours == pytest.approx(acme_s / 3600)
    assert univ.jobs == 1 and univ.gpu_hours == {"h200": pytest.approx(2 * univ_s / 3600)}
    # the node meter ran at 1 kW: each job's record holds the meter's joules over the job, to within two of its
    # 1,000 J steps (the counter moves once a second and sacct's Start/End are whole seconds: each end of the job can
    # fall one step either way)
    for name, seconds in (("acme", acme_s), ("univ1", univ_s)):
        consumed = records[name][SACCT_FIELDS.index("ConsumedEnergyRaw")]
        assert consumed and abs(int(consumed) - WATTS * seconds) <= 2 * WATTS, sections["sacct"] + daemon_logs(root)
    # the jobs shared node01 (4 and 2 of its 8 GPUs): the report gives each its GPU share of the node's joules,
    # apportioned, and estimates nothing (the joules are the record's own: the meter's steps at each end of a job
    # already have their tolerance above, and two steps' worth at the boundary once failed on float rounding in CI)
    for row, gpus, name in ((acme, 4, "acme"), (univ, 2, "univ1")):
        share = gpus / 8
        consumed = int(records[name][SACCT_FIELDS.index("ConsumedEnergyRaw")])
        assert row.energy_kwh["apportioned"] == pytest.approx(consumed * share / 3.6e6)
        assert row.energy_kwh["measured"] == row.energy_kwh["estimated"] == 0, row.energy_kwh
    assert acme.costs["gpu"] == pytest.approx(4 * acme_s / 3600 * 3.0)
    # Slurm keeps a job's billing TRES whole: 4 GPUs × 3 + 1 CPU × 0.4 = 12.4 EUR/h is recorded as 12
    assert "billing=12," in records["acme"][5] and "billing=6," in records["univ1"][5], sections["sacct"]

    # a period boundary inside acme's job (the month cut 10 s after it started, as a month's end would cut a job
    # that straddles it): each side gets the job's usage of its own seconds, and the two add up to the whole
    import dataclasses
    month = parse_period(month_now, site.site.timezone)
    cut = int(records["acme"][3]) + 10
    before, after = (usage_report(site, dataclasses.replace(month, **bounds), read_sacct(lines, site.site.timezone))
                     for bounds in ({"end": cut}, {"start": cut}))
    acme_before = next(r for r in before.tenants if r.name == "acme-ai")
    acme_after = next(r for r in after.tenants if r.name == "acme-ai")
    assert acme_before.gpu_hours == {"h200": pytest.approx(4 * 10 / 3600)}
    assert acme_after.gpu_hours == {"h200": pytest.approx(4 * (acme_s - 10) / 3600)}
    assert acme_before.cpu_hours + acme_after.cpu_hours == pytest.approx(acme.cpu_hours)
    assert acme_before.it_kwh + acme_after.it_kwh == pytest.approx(acme.it_kwh)
    assert acme_before.it_kwh == pytest.approx(acme.it_kwh * 10 / acme_s)


JOB_SCRIPTS_PLAY = """
- name: slurm_compute's Prolog/Epilog pairs, into the chroot's Slurm folders
  hosts: node01
  connection: local
  gather_facts: false
  tasks:
    - name: The role's job_scripts part, as its install part runs it
      ansible.builtin.include_role:
        name: slurm_compute
        tasks_from: job_scripts
"""
JOULES_PER_GPU = 30_000


def install_job_scripts(root, work, gf_slurm: dict) -> None:
    """slurm_compute's job_scripts tasks, run on this machine with ``gf_slurm``, into ``root``'s Slurm prolog.d and
    epilog.d (the role's variables all from one extra-vars file in ``work``); fails with the play's output."""
    import json
    import subprocess

    from conftest import ROOT, bin_path
    extra = work / "extra.json"
    extra.write_text(json.dumps({"gf_slurm": gf_slurm, "slurm_compute_prolog_dir": str(root / "etc/slurm/prolog.d"),
                                 "slurm_compute_epilog_dir": str(root / "etc/slurm/epilog.d")}))
    (work / "hosts").write_text("node01\n")
    (work / "play.yml").write_text(JOB_SCRIPTS_PLAY)
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(ROOT / "playbooks" / "roles"),
               HOME=str(work), ANSIBLE_LOCAL_TEMP=str(work / "ansible-tmp"))
    role = subprocess.run([bin_path("ansible-playbook"), "-i", str(work / "hosts"), "-e",
                           f"ansible_python_interpreter={sys.executable}", "-e", f"@{extra}", str(work / "play.yml")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert role.returncode == 0, role.stdout[-3000:] + role.stderr[-2000:]


def test_dcgm_gpu_energy_of_each_job_reaches_the_report_through_slurmdbd(demo, tmp_path):
    """energy.gpu: dcgm-job-stats on real daemons: two slurmd (node01, node02, 8 H200 each, no GPU behind them).

    The Prolog/Epilog is the slurm_compute role's own file, installed by its job_scripts tasks and run by slurmd
    through the rendered ``Prolog=/etc/slurm/prolog.d/*``. dcgmi is a stand-in (tests/dcgmi_standin.sh): there is no
    GPU and no DCGM here, so it prints DCGM's documented ``dcgmi stats -v -j`` layout with 30,000 J for every GPU of
    a job; what is real is Slurm handing the job's GPUs to the prolog, the epilogs of a two-node job storing their
    words in the job's AdminComment in slurmdbd at once, and sacct returning them. A job whose dcgmi answer is
    refused ("Not Supported") completes, its nodes stay idle, nothing is stored and the refusal is logged.
    """
    import json
    import stat
    import subprocess

    import yaml
    from conftest import ROOT, bin_path
    from realslurm import daemon_logs, run_in_slurm, slurm_chroot
    from test_rollout_real import two_node_conf

    from infra.render.inventory import slurm_vars
    from infra.usage.sacct import SACCT_FORMAT

    data = metering_site(demo)
    data["pools"][1]["hosts"] = "node[01-02]"
    data["energy"] = {"node": "none", "gpu": "dcgm-job-stats"}
    data["tenants"][1]["billing"] = {"class": "startup"}             # no budget: jobs here only meter
    site = validate_data(data)
    plan = build_plan(site)
    nodes = {n: plan.hosts[n].address() for n in ("node01", "node02")}
    files = {f"/etc/{rel}": content for rel, content in slurm_files(plan).items()}
    assert "Prolog=/etc/slurm/prolog.d/*\nEpilog=/etc/slurm/epilog.d/*\nPrologFlags=Alloc\n" in files["/etc/slurm/slurm.conf"]
    files["/etc/slurm/slurm.conf"] = two_node_conf(files["/etc/slurm/slurm.conf"], nodes)
    files["/etc/slurm/cgroup.conf"] = "CgroupPlugin=disabled\n"
    files["/etc/hosts"] = render_file(plan, "hosts")
    root = slurm_chroot(slurmd=True)
    placed = [root / "etc/slurm/prolog.d", root / "etc/slurm/epilog.d", root / "etc/dcgmi-standin",
              root / "usr/local/bin/dcgmi", *(root / "dev" / f"nvidia{i}" for i in range(8))]
    try:
        # slurmd hands a job's GPU indices to its prolog and epilog (SLURM_JOB_GPUS) only for GPUs whose File= is a
        # character device: here each /dev/nvidiaN is one (the null device's numbers), nothing stands behind it
        for i in range(8):
            dev = root / "dev" / f"nvidia{i}"
            dev.unlink(missing_ok=True)
            os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        (root / "etc/dcgmi-standin").mkdir(exist_ok=True)
        (root / "etc/dcgmi-standin/joules-per-gpu").write_text(f"{JOULES_PER_GPU}\n")
        shutil.copy(os.path.join(os.path.dirname(__file__), "dcgmi_standin.sh"), root / "usr/local/bin/dcgmi")
        (root / "usr/local/bin/dcgmi").chmod(0o755)

        gf_slurm = slurm_vars(site, plan)["gf_slurm"]
        assert gf_slurm["job_scripts"] == ["dcgm-energy"]
        install_job_scripts(root, tmp_path, gf_slurm)
        script = ROOT / "playbooks/roles/slurm_compute/files/gigafactory-dcgm-energy"
        for part in ("prolog.d", "epilog.d"):
            installed = root / "etc/slurm" / part / "50-gigafactory-dcgm-energy"
            assert installed.read_bytes() == script.read_bytes() and installed.stat().st_mode & 0o777 == 0o755

        sbatch = f"chroot {root} sbatch --parsable -p batch -c 1 --mem=100M"
        idle = (f"sh -c 'for i in $(seq 120); do chroot {root} squeue --noheader | grep -q . || exit 0; sleep 1; done; "
                "echo jobs left; exit 1'")
        sacct = (f"env SLURM_TIME_FORMAT=%s chroot {root} sacct --allusers --allocations --parsable2 --starttime 2026-01-01 "
                 f"--format=JobName,State,{','.join(SACCT_FORMAT)}")
        result = run_in_slurm(
            root, files, controller=plan.slurm.controllers[0], dbd=plan.slurm.accounting, cluster=plan.slurm.cluster,
            slurmd=list(nodes.items()), timeout=900,
            commands=["sacctmgr -i add account acme-ai,univ-latvia", "sacctmgr -i add user root account=acme-ai,univ-latvia"],
            host_commands=[
                f"{sbatch} -A acme-ai -N 2 --gres=gpu:h200:2 -J two-nodes --wrap 'sleep 4'",
                f"{sbatch} -A acme-ai -J cpu-only --wrap 'sleep 1'",
                idle,
                f"sh -c 'echo Not Supported > {root}/etc/dcgmi-standin/joules-per-gpu'",
                f"{sbatch} -A univ-latvia --gres=gpu:h200:2 -J refused --wrap 'sleep 2'",
                idle,
                "echo '=== nodes'", f"chroot {root} sinfo --noheader -N -o '%N|%t'",
                "echo '=== sacct'", sacct,
                "echo '=== calls'", f"cat {root}/run/dcgmi-standin/calls",
                "echo '=== left'", f"ls -A {root}/run/dcgmi-standin/groups {root}/run/dcgmi-standin/jobs",
                "echo '=== log'", f"cat {root}/var/log/slurm/gigafactory-dcgm-energy.log",
            ])
        out = result.stdout
        assert "=== log" in out, out[-4000:] + result.stderr[-3000:] + daemon_logs(root)
        sections = dict(part.split("\n", 1) for part in out.split("=== ")[1:])
        context = out[-5000:] + daemon_logs(root)
        # no node drained, though one epilog refused what dcgmi printed
        assert sorted(sections["nodes"].split()) == ["node01|idle", "node02|idle"], context
        lines = sections["sacct"].strip().splitlines()
        records = {row.split("|")[0]: row.split("|") for row in lines[1:]}
        assert {name: r[1] for name, r in records.items()} == {"two-nodes": "COMPLETED", "cpu-only": "COMPLETED",
                                                             "refused": "COMPLETED"}, context
        ids = {name: r[2] for name, r in records.items()}
        # each node's epilog stored its word; neither overwrote the other's
        words = sorted(records["two-nodes"][-1].split())
        assert words == [f"dcgm-energy:node01:gpus=2:joules={2 * JOULES_PER_GPU}",
                         f"dcgm-energy:node02:gpus=2:joules={2 * JOULES_PER_GPU}"], context
        assert records["cpu-only"][-1] == records["refused"][-1] == "", context
        # the prologs gave DCGM the job's GPUs on each node; a job without GPUs never reached dcgmi
        calls = sections["calls"].splitlines()
        for node in nodes:
            mine = [c.split(" ", 1)[1] for c in calls if c.startswith(f"{node} ") and c.endswith(f" {ids['two-nodes']}")]
            assert f"stats -x {ids['two-nodes']}" in mine and f"stats -v -j {ids['two-nodes']}" in mine, calls
            assert any(c.startswith(f"{node} group -g ") and c.endswith(" -a 0,1") for c in calls), calls
        assert not [c for c in calls if re.search(rf"(slurm-job-| -[sxjr] ){ids['cpu-only']}$", c)], calls
        assert sections["left"].split() == [f"{root}/run/dcgmi-standin/groups:", f"{root}/run/dcgmi-standin/jobs:"], context
        log = sections["log"]
        assert f"job {ids['two-nodes']}: 2 GPUs used {2 * JOULES_PER_GPU} J, stored in its AdminComment" in log, log
        assert (f'epilog of job {ids["refused"]} failed, GPU energy not recorded: dcgmi stats -v -j {ids["refused"]}: '
                'GPU 0: energy "Not Supported" is not a whole number of joules') in log, log

        # through the report: the two-node job's 4 GPUs × 30,000 J measured; the refused job estimated
        sacct_file = tmp_path / "sacct.txt"
        sacct_file.write_text(sections["sacct"])
        from datetime import datetime
        from zoneinfo import ZoneInfo
        start = int(records["two-nodes"][5])
        month = datetime.fromtimestamp(start, ZoneInfo(site.site.timezone)).strftime("%Y-%m")
        report = usage_report(site, parse_period(month, site.site.timezone), read_sacct(lines, site.site.timezone))
        rows = {r.name: r for r in report.tenants}
        acme, univ = rows["acme-ai"], rows["univ-latvia"]
        assert acme.gpu_dcgm_kwh == pytest.approx(4 * JOULES_PER_GPU / 3.6e6)
        assert acme.energy_kwh["measured"] == pytest.approx(4 * JOULES_PER_GPU / 3.6e6)
        assert univ.gpu_dcgm_kwh == 0 and univ.energy_kwh["measured"] == 0 and univ.energy_kwh["estimated"] > 0
        (tmp_path / "site.yml").write_text(yaml.safe_dump(data))
        cli = subprocess.run([bin_path("gigafactory"), "usage", str(tmp_path / "site.yml"), "--period", month,
                              "--format", "json", "--sacct", str(sacct_file)], capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert cli.returncode == 0, cli.stderr
        shown = {t["tenant"]: t for t in json.loads(cli.stdout)["tenants"]}
        assert shown["acme-ai"]["it_energy_gpu_dcgm_kwh"] == round(4 * JOULES_PER_GPU / 3.6e6, 6)
    finally:
        for path in placed:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
