"""Phase power's role gpu_power for riga-1 with its a-racks in a 1,000 kW hall (the plan lowers the H200s to 401 W):
applied by Ansible into a scratch directory on this machine (no GPU, no systemd: stand-ins for nvidia-smi and
systemctl on the play's PATH), then the installed unit's own ExecStart run against the nvidia-smi stand-in, and
node_health's gate check of the same planned watts."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import RIGA, ROOT, playbook, site_data
from test_power_tree import with_halls
from infra.image.cache import type_images
from infra.plan import build_plan
from infra.render.inventory import site_inventory
from infra.site.load import validate_data

PLANNED_W = 401                 # riga-1's H200s (200..700 W) with a-racks a01..a32 in hall-a of 1,000 kW
UNIT = "gigafactory-gpu-power.service"

PLAY = """
- name: The gpu_power role as phase power applies it
  hosts: gpu0001
  connection: local
  gather_facts: false
  environment:
    PATH: "{path}"
    SYSTEMCTL_STANDIN: "{state}"
  roles:
    - role: gpu_power
      vars:
        gigafactory_part: {part}
        gpu_power_program: {out}/sbin/gigafactory-gpu-power
        gpu_power_file: {out}/etc/gpu-power.json
        gpu_power_caps_dir: {out}/etc/gpu-power-cap.d
        gpu_power_systemd_dir: {out}/systemd
        gpu_power_nvidia_smi: {smi}
"""


def hall_site() -> dict:
    return with_halls(site_data(RIGA), 1000)


def apply(tmp_path: Path, site: dict, part: str = "all") -> tuple[Path, Path]:
    """The role applied for gpu0001 (``part``: gigafactory_part); (its scratch directory, the systemctl stand-in's
    state). The unit starts disabled, so that enabling it is the role's doing."""
    out, state, bin_ = tmp_path / "out", tmp_path / "systemctl", tmp_path / "bin"
    for path in (out, state, bin_):
        path.mkdir(exist_ok=True)
    shutil.copy(ROOT / "tests" / "systemctl_standin.sh", bin_ / "systemctl")
    (bin_ / "systemctl").chmod(0o755)
    if not (state / UNIT).exists():
        (state / UNIT).write_text("disabled\n")
    play = PLAY.format(path=f"{bin_}:{os.environ['PATH']}", state=state, part=part, out=out,
                       smi=ROOT / "tests" / "nvidia_smi_power_standin.py")
    result = playbook(tmp_path, site, play)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return out, state


def standin_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    smi = tmp_path / "smi"
    smi.mkdir(exist_ok=True)
    return dict(os.environ, NVIDIA_SMI_STANDIN=str(smi), NVIDIA_SMI_STANDIN_GPUS="4",
                **{f"NVIDIA_SMI_STANDIN_{k.upper()}": v for k, v in settings.items()})


def exec_start(out: Path) -> list[str]:
    """The installed unit's ExecStart, as systemd would run it."""
    unit = (out / "systemd" / UNIT).read_text()
    line = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart="))


def gate(tmp_path: Path, env: dict[str, str], caps: Path | None = None) -> tuple[int, dict]:
    """node_health's gate (no Slurm) on a node of 4 GPUs planned at PLANNED_W, against the nvidia-smi stand-in and
    the power caps directory ``caps`` (default: none in ``tmp_path``), read by role gpu_power's program: (its exit
    status, its gpu_power_limit check)."""
    expect = tmp_path / "health-expect.json"
    expect.write_text(json.dumps({"node": "gpu0001", "gpus": 4, "gpu_power_limit_w": PLANNED_W, "hcas": 0}))
    result = subprocess.run([sys.executable, str(ROOT / "playbooks/roles/node_health/files/gigafactory-node-health"), "--no-slurm",
                             "--expect", str(expect), "--output", str(tmp_path / "health.json"),
                             "--power-caps", str(caps or tmp_path / "no-power-cap.d"),
                             "--gpu-power", str(ROOT / "playbooks/roles/gpu_power/files/gigafactory-gpu-power"),
                             "--nvidia-smi", str(ROOT / "tests" / "nvidia_smi_power_standin.py")], env=env, capture_output=True)
    report = json.loads((tmp_path / "health.json").read_text())
    return result.returncode, next(c for c in report["checks"] if c["name"] == "gpu_power_limit")


@pytest.fixture(scope="module")
def applied(tmp_path_factory) -> tuple[Path, Path]:
    return apply(tmp_path_factory.mktemp("power"), hall_site())


def test_the_inventory_carries_the_planned_limit_of_the_node_type():
    site = validate_data(hall_site())
    plan = build_plan(site)
    assert plan.power.limits_w == {"hgx-h200": PLANNED_W}
    types = site_inventory(site, plan)["all"]["children"]
    assert (types["type_hgx_h200"]["vars"]["gf_gpu_power_limit_w"], types["type_hgx_h200"]["vars"]["gf_gpu_power"]) == (PLANNED_W, True)
    assert "gf_gpu_power_limit_w" not in types["type_cpu_1u"]["vars"]          # no GPUs, no range
    image = next(i for i in type_images(site, plan) if i.node_type == "hgx-h200")
    assert "power" in image.phases                                               # the image build runs its install part


def test_the_unit_runs_after_the_driver_before_slurmd_and_kubelet_once_per_boot(applied):
    out, state = applied
    unit = (out / "systemd" / UNIT).read_text().splitlines()
    for line in ("After=nvidia-persistenced.service", "Before=slurmd.service kubelet.service", "Type=oneshot",
                 "RemainAfterExit=yes", "WantedBy=multi-user.target"):
        assert line in unit, unit
    assert json.loads((out / "etc" / "gpu-power.json").read_text()) == {"limit_w": PLANNED_W}
    assert (state / UNIT).read_text().strip() == "enabled"
    assert f"start {UNIT}" in (state / "calls").read_text().splitlines()      # set now, not only at the next boot


def test_the_units_program_sets_every_gpu_to_the_planned_watts_and_reads_them_back(applied, tmp_path):
    out, _ = applied
    env = standin_env(tmp_path)
    result = subprocess.run(exec_start(out), env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"gigafactory-gpu-power: 4 GPUs at {PLANNED_W} W"
    calls = [json.loads(line) for line in (tmp_path / "smi" / "calls").read_text().splitlines()]
    query = ["--query-gpu=index,power.limit", "--format=csv,noheader,nounits"]
    assert calls == [query, *(["-i", str(i), "-pl", str(PLANNED_W)] for i in range(4)), query]


@pytest.mark.parametrize(("setting", "said"), [
    ({"refuse": "1"}, "GPU 0 refused 401 W (Changing power management limit is not supported"),
    ({"reads": "700"}, "GPU 3 at 700 W, planned 401 W"),
], ids=["refused", "reads-back-another"])
def test_a_limit_that_does_not_hold_fails_the_unit_and_the_gate(applied, tmp_path, setting, said):
    out, _ = applied
    env = standin_env(tmp_path, **setting)
    result = subprocess.run(exec_start(out), env=env, capture_output=True, text=True)
    assert result.returncode == 1, result.stdout + result.stderr
    assert said in result.stderr, result.stderr
    status, check = gate(tmp_path, env)
    assert status == 1 and not check["passed"], check
    assert check["detail"].startswith("planned 401 W, GPU 0 at 700") and check["detail"].endswith("GPU 3 at 700.00 W"), check


def test_the_gate_passes_once_the_unit_set_the_limit(applied, tmp_path):
    out, _ = applied
    env = standin_env(tmp_path)
    subprocess.run(exec_start(out), env=env, check=True, capture_output=True)
    _, check = gate(tmp_path, env)          # its other checks (GPU count, CUDA, HCAs) are this machine's
    assert check == {"name": "gpu_power_limit", "passed": True, "detail": "planned 401 W, 4 GPUs at it"}


def test_an_image_holds_the_enabled_unit_and_no_planned_watts(tmp_path):
    out, state = apply(tmp_path, hall_site(), part="install")
    assert (out / "systemd" / UNIT).is_file() and os.access(out / "sbin" / "gigafactory-gpu-power", os.X_OK)
    assert (state / UNIT).read_text().strip() == "enabled"
    assert not (out / "etc" / "gpu-power.json").exists()                       # the configure part's
    assert not any(line.startswith("start") for line in (state / "calls").read_text().splitlines())


def test_a_node_type_without_a_range_gets_nothing_and_loses_what_a_range_gave(tmp_path):
    out, state = apply(tmp_path, site_data(RIGA))
    assert [p for p in out.rglob("*") if p.is_file()] == []
    assert not (state / "calls").exists()
    apply(tmp_path, hall_site())
    assert (out / "systemd" / UNIT).is_file() and (state / UNIT).read_text().strip() == "enabled"
    apply(tmp_path, site_data(RIGA))                 # the range removed from the site file
    assert [p for p in out.rglob("*") if p.is_file()] == []
    assert (state / UNIT).read_text().strip() == "disabled"
