"""riga-1's rendered Slurm configuration, loaded by a real slurmctld 24.11 (Debian 13)."""

from __future__ import annotations

import os
import re
import shutil

import pytest

from infra.plan import build_plan
from infra.render.files import render_file, slurm_files
from infra.site import load_site
from conftest import RIGA

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("debootstrap") or not shutil.which("unshare"),
                       reason="needs root, debootstrap and unshare"),
]


def test_slurmctld_starts_on_riga1_and_lists_the_training_nodes():
    from realslurm import daemon_logs, run_in_slurm, slurm_chroot

    root = slurm_chroot()
    plan = build_plan(load_site(RIGA))
    files = {f"/etc/{rel}": content for rel, content in slurm_files(plan).items()}
    files["/etc/hosts"] = render_file(plan, "hosts")
    result = run_in_slurm(
        root, files, controller=plan.slurm.controllers[0], dbd=plan.slurm.accounting, cluster=plan.slurm.cluster,
        commands=["sinfo --noheader -N -o '%N|%P|%G'", "scontrol show nodes gpu0042", "scontrol show topology",
                  "scontrol show config"])
    out = result.stdout
    assert "READY" in out, result.stderr + daemon_logs(root)
    rows = [line.split("|") for line in out.splitlines() if re.match(r"^gpu\d{4}\|", line)]
    batch = sorted({node for node, part, gres in rows if part.rstrip("*") == "batch" and gres == "gpu:h200:8"})
    assert batch == [f"gpu{n:04d}" for n in range(1, 97)], out + daemon_logs(root)
    assert "Gres=gpu:h200:8" in out and "RealMemory=1992294" in out
    assert "SwitchName=compute-su2" in out
    assert re.search(r"SlurmctldHost\[1\]\s*=\s*ctl02", out)
    assert re.search(r"AccountingStorageEnforce\s*=\s*associations,limits,qos", out)


TENANTS_PLAY = """
- name: The slurm_tenants role against the real accounting database
  hosts: ctl01
  connection: local
  gather_facts: false
  roles:
    - slurm_tenants
"""


def test_tenants_become_accounts_and_qos_and_a_changed_quota_updates_in_place(tmp_path):
    """The slurm_tenants role run three times against slurmdbd 24.11 and MariaDB: create, rerun, changed quota.

    Ansible runs on this machine (connection local) inside the daemons' namespaces; its ``sacctmgr`` is the chroot's
    own binary, reached through a two-line exec wrapper on PATH, so every query and change is real.
    """
    import json
    import sys

    from realslurm import daemon_logs, run_in_slurm, slurm_chroot
    from conftest import DEMO, ROOT, bin_path

    root = slurm_chroot()
    site = load_site(DEMO)
    plan = build_plan(site, DEMO)
    files = {f"/etc/{rel}": content for rel, content in slurm_files(plan).items()}
    files["/etc/hosts"] = render_file(plan, "hosts")
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    (wrappers / "sacctmgr").write_text(f'#!/bin/sh\nexec chroot {root} sacctmgr "$@"\n')
    (wrappers / "sacctmgr").chmod(0o755)
    play = tmp_path / "tenants.yml"
    play.write_text(TENANTS_PLAY)
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps({"slurm_tenants": [
        {"tenant": "acme-ai", "account": "acme-ai", "fairshare": 60, "gpus": None, "cpus": None, "nodes": 3},
        {"tenant": "univ-latvia", "account": "univ-latvia", "fairshare": 25, "gpus": None, "cpus": None, "nodes": 1}]}))
    ansible = (f"env PATH={wrappers}:{os.path.dirname(sys.executable)}:/usr/sbin:/usr/bin:/sbin:/bin HOME={tmp_path} "
               f"ANSIBLE_CONFIG={ROOT / 'ansible.cfg'} ANSIBLE_ROLES_PATH={ROOT / 'playbooks' / 'roles'} "
               f"ANSIBLE_LOCAL_TEMP={tmp_path / 'tmp'} {bin_path('ansible-playbook')} -i {DEMO} "
               f"-e ansible_python_interpreter={sys.executable} {play}")
    result = run_in_slurm(
        root, files, controller=plan.slurm.controllers[0], dbd=plan.slurm.accounting, cluster=plan.slurm.cluster,
        commands=[], host_commands=[
            "echo '=== first'", ansible,
            "echo '=== again'", ansible,
            "echo '=== changed quota'", f"{ansible} -e @{changed}",
            "echo '=== database'",
            f"chroot {root} sacctmgr --noheader --parsable2 show qos format=name,grptres",
            f"chroot {root} sacctmgr --noheader --parsable2 show association where cluster=demo format=account,user,fairshare,qos,defaultqos",
        ], timeout=900)
    out = result.stdout
    assert "=== database" in out, out[-4000:] + result.stderr[-3000:] + daemon_logs(root)
    first, again, changed_run, database = (part for part in out.split("=== ")[1:])

    def recap(text: str) -> dict[str, int]:
        line = next(line for line in text.splitlines() if line.startswith("ctl01") and "ok=" in line)
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}

    assert recap(first)["changed"] >= 4 and recap(first)["failed"] == 0, first[-3000:]
    assert recap(again)["changed"] == 0, again[-3000:]
    assert recap(changed_run)["changed"] == 2 and recap(changed_run)["failed"] == 0, changed_run[-3000:]   # one QOS, one account
    rows = database.splitlines()
    assert "acme-ai|node=3" in rows and "univ-latvia|node=1" in rows, database
    assert "acme-ai||60|acme-ai|acme-ai" in rows and "univ-latvia||25|univ-latvia|univ-latvia" in rows, database
