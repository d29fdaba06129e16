"""Benchmark: cold VM image build and VM boot-to-SSH through infra.vm (needs root, qemu, vde2).

    python benchmarks/vm_boot.py [--skip-build] [--repeat 2]

Builds the image into a fresh temporary cache (cold: debootstrap + mke2fs), then boots
one VM with 2 vCPUs and a pair with 1 vCPU each on one private segment, timing `up`
until every VM answers SSH with its checked host key. Prints a table and the KVM
verdict; asserts nothing about time (these machines are noisy).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from infra.vm.image import Recipe, build_image  # noqa: E402  (benchmarks are scripts)
from infra.vm.launcher import Launcher  # noqa: E402
from infra.vm.spec import parse_specs  # noqa: E402

SHAPES = {
    "1 VM, 2 vCPU": [{"name": "bench-a", "cpus": 2}],
    "2 VMs, 1 vCPU each": [
        {"name": f"bench-{x}", "cpus": 1,
         "nics": [{"segment": "fabric", "interface": "enp0s4", "address": f"10.77.8.{i}/24"}]}
        for i, x in enumerate("ab", start=1)
    ],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-build", action="store_true", help="use the cached image")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="gf-bench-") as tmp:
        if args.skip_build:
            image = build_image()
        else:
            start = time.perf_counter()
            image = build_image(Recipe(), cache=Path(tmp) / "cache")
            rows.append(("image build, cold", f"{time.perf_counter() - start:.1f} s"))
        accel = "?"
        for label, data in SHAPES.items():
            times = []
            for run in range(args.repeat):
                launcher = Launcher(Path(tmp) / f"state-{len(rows)}-{run}", image=image)
                start = time.perf_counter()
                try:
                    launcher.up(parse_specs(data))
                    times.append(time.perf_counter() - start)
                    accel = (launcher.state_dir / "accel").read_text().strip()
                finally:
                    launcher.down()
            rows.append((f"boot to SSH, {label}",
                         f"median {statistics.median(times):.1f} s of {[round(t, 1) for t in times]}"))
        rows.append(("accelerator verdict", accel))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
