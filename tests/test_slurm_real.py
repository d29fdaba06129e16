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
