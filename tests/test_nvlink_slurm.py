"""Slurm on NVLink trays, from the site file: the IMEX switch plugin, exclusive partitions, the imex job script and
its map of domains (the real daemons: tests/test_nvlink_slurm_real.py); the host IMEX service each tray gets."""

from __future__ import annotations

import nvlink_data
from conftest import RIGA, site_data

from infra.plan import build_plan
from infra.render.files import slurm_files
from infra.render.inventory import host_vars, slurm_vars
from infra.site.hostlists import expand
from infra.site.load import validate_data


def riga_of_trays() -> dict:
    """riga-1 whose H200 servers are trays of NVLink domains of 2: train (Slurm) and infer (Kubernetes)."""
    return nvlink_data.riga_of_trays(site_data(RIGA))


def test_nvlink_trays_in_slurm_get_the_imex_switch_exclusive_partitions_and_the_map():
    site = validate_data(riga_of_trays())
    plan = build_plan(site)
    files = slurm_files(plan)
    conf = files["slurm/slurm.conf"]
    assert "\nSwitchType=switch/nvidia_imex\n" in conf and "\nPrologFlags=Alloc\n" in conf
    partitions = [line for line in conf.splitlines() if line.startswith("PartitionName=")]
    assert len(partitions) == 2 and all(" OverSubscribe=EXCLUSIVE " in p for p in partitions), partitions
    assert slurm_vars(site, plan)["gf_slurm"]["job_scripts"] == ["imex"]
    # the map: train's 96 hosts in domains of 2 by the pool's order, each with its management address; infer is
    # Kubernetes', not Slurm's
    rows = [line.split() for line in files["slurm/gigafactory-nvlink.conf"].splitlines() if not line.startswith("#")]
    train = expand("gpu[0001-0096]")
    assert [r[0] for r in rows] == train
    assert [r[1] for r in rows] == [f"a{i // 4 + 1:02d}-{i // 2 % 2 + 1}" for i in range(96)]   # two domains per rack
    assert [r[2] for r in rows] == [plan.hosts[h].address() for h in train]
    assert "gigafactory-nvlink.conf" in slurm_vars(site, plan)["gf_slurm_files"]


def test_a_site_without_nvlink_trays_has_none_of_it():
    site = validate_data(site_data(RIGA))
    plan = build_plan(site)
    files = slurm_files(plan)
    assert "SwitchType" not in files["slurm/slurm.conf"] and "OverSubscribe" not in files["slurm/slurm.conf"]
    assert "slurm/gigafactory-nvlink.conf" not in files and plan.slurm.job_scripts == ()
    assert "gf_imex_service" not in host_vars(site, plan, "gpu0001")


def test_the_host_imex_service_is_disabled_for_slurm_and_masked_for_kubernetes():
    site = validate_data(riga_of_trays())
    plan = build_plan(site)
    assert host_vars(site, plan, "gpu0001")["gf_imex_service"] == "disabled"      # train: Slurm's prolog starts it
    assert host_vars(site, plan, "gpu0097")["gf_imex_service"] == "masked"        # infer: the DRA driver's own
    assert "gf_imex_service" not in host_vars(site, plan, "ctl01")
