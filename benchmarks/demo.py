"""Benchmark: the demo end to end (needs root, qemu, vde2, debootstrap, squashfs-tools).

    python benchmarks/demo.py [--cold] [--from-scratch]

Runs ``gigafactory demo`` three times on inventories/demo/site.yml: the first run (``--cold``: VMs down and
every image cache emptied first: the test bed image, the node images and their debootstrapped bases, so the image
builds are included; the package cache of the test bed's mirror is kept), the second on the running VMs, which
must change nothing, the third after ``demo --down`` with the images cached. ``--from-scratch`` passes the flag
on: the bare test bed image and the full install over SSH instead of node images. Reports each run's wall time
and, from the runs' summary.json files, Ansible task time and changed counts per phase, and the share of the run
spent outside Ansible tasks (the tool's own overhead). Asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SITE = "inventories/demo/site.yml"

sys.path.insert(0, str(ROOT))
from infra.image.build import BASE_PREFIX  # noqa: E402  (benchmarks are scripts)
from infra.image.cache import IMAGES_DIR  # noqa: E402
from infra.image.base import CHROOTS_DIR, cache_root  # noqa: E402
from infra.vm.image import TESTBED_BASE_PREFIX  # noqa: E402


def run_demo(env: dict[str, str], *extra: str) -> tuple[int, float]:
    start = time.monotonic()
    rc = subprocess.call([sys.executable, "-m", "infra.cli", "demo", SITE, *extra], cwd=ROOT, env=env)
    return rc, time.monotonic() - start


def latest_summaries(since: float) -> list[dict]:
    runs = ROOT / "runs" / "demo"
    found = []
    for path in sorted(runs.glob("*/summary.json")) + sorted(runs.glob("*/acceptance/summary.json")):
        if path.stat().st_mtime >= since:
            found.append(json.loads(path.read_text()))
    return found


def describe(label: str, rc: int, wall: float, summaries: list[dict]) -> None:
    tasks = sum(p.get("task_seconds", 0.0) for s in summaries for p in s["phases"])
    changed = {p["name"]: p["changed"] for s in summaries for p in s["phases"]}
    print(f"{label}: exit {rc}, wall {wall:.0f} s, Ansible task time {tasks:.0f} s, "
          f"outside tasks {100 * (1 - tasks / wall):.0f}% (VM boot and image build included)")
    print(f"  changed per phase: {changed}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="VMs down and every image cache emptied first")
    parser.add_argument("--from-scratch", action="store_true", help="the bare image and the full install")
    args = parser.parse_args()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    extra = ["--from-scratch"] if args.from_scratch else []
    down = [sys.executable, "-m", "infra.cli", "demo", SITE, "--down"]
    if args.cold:
        subprocess.call(down, cwd=ROOT, env=env)
        cache = cache_root()
        for path in [cache / "images", cache / IMAGES_DIR, *(cache / CHROOTS_DIR).glob(f"{BASE_PREFIX}-*"),
                     *(cache / CHROOTS_DIR).glob(f"{TESTBED_BASE_PREFIX}-*")]:
            shutil.rmtree(path, ignore_errors=True)
    runs = [("first run" + (" (cold)" if args.cold else ""), None), ("second run (nothing to change)", None),
            ("third run (VMs down, images cached)", down)]
    for label, before in runs:
        if before:
            subprocess.call(before, cwd=ROOT, env=env)
        since = time.time()
        rc, wall = run_demo(env, *extra)
        describe(label, rc, wall, latest_summaries(since))
        if rc != 0:
            return rc
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
