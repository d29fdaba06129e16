"""Benchmark: the demo end to end (needs root, qemu, vde2, debootstrap).

    python benchmarks/demo.py [--cold]

Runs ``gigafactory demo`` twice on inventories/demo/site.yml: the first run from nothing
(``--cold``: VMs down and the VM image cache emptied first, so the image build is included;
the package cache of the test bed's mirror is kept), the second
on the running VMs, which must change nothing. Reports each run's wall time and, from the
runs' summary.json files, Ansible task time and changed counts per phase, and the share of the
run spent outside Ansible tasks (the tool's own overhead). Asserts nothing about time.
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
from infra.vm.image import cache_root  # noqa: E402  (benchmarks are scripts)


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
    parser.add_argument("--cold", action="store_true", help="VMs down and the image cache emptied first")
    args = parser.parse_args()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    if args.cold:
        subprocess.call([sys.executable, "-m", "infra.cli", "demo", SITE, "--down"], cwd=ROOT, env=env)
        shutil.rmtree(cache_root() / "images", ignore_errors=True)
    for label in ("first run" + (" (cold)" if args.cold else ""), "second run (nothing to change)"):
        since = time.time()
        rc, wall = run_demo(env)
        describe(label, rc, wall, latest_summaries(since))
        if rc != 0:
            return rc
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
