"""Benchmark: ``gigafactory usage`` over a month of synthetic Slurm accounting (sacct --parsable2 lines).

    python benchmarks/usage.py [--jobs 1000000] [--keep FILE]

Writes riga-1 with the metering tests' billing section and a month (November 2026, Europe/Riga) of N job
allocations on its 96 H200 nodes: one to eight GPUs or whole nodes, lengths from half a minute to two days
(eight minutes on average, filling about four fifths of the GPU-hours), some straddling the month's start and
end, some with node meter readings, job steps beside a fifth of them (as ``sacct`` without ``--allocations``
prints them). Generation is not timed. Then runs ``gigafactory usage --format json`` in a child process and
prints its wall time and peak resident memory (ru_maxrss of the child).
Issue target: <= 10 s and <= 500 MB for 1,000,000 jobs. Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from metering_data import with_billing  # noqa: E402  (tests/ is put on the path just above: benchmarks are scripts, not a package)

HEADER = "JobIDRaw|Account|Partition|Start|End|AllocTRES|ConsumedEnergyRaw"
ACCOUNTS = ("acme-ai", "univ-latvia", "acme-ai", "univ-latvia", "lab-x")


def write_jobs(path: Path, jobs: int, seed: int = 1) -> int:
    """N job allocations (and steps) of November 2026 in sacct's parsable format; returns lines written."""
    rng = random.Random(seed)
    start_of_month = 1793484000          # 2026-11-01T00:00:00+02:00 (Europe/Riga)
    month = 30 * 86400
    lines = 1
    with path.open("w") as out:
        out.write(HEADER + "\n")
        for job in range(1, jobs + 1):
            length = int(rng.expovariate(1 / 450)) + 30
            length = min(length, 2 * 86400)
            start = start_of_month - 86400 + int(rng.random() * (month + 2 * 86400))
            end = start + length
            gpus = rng.choice((1, 1, 1, 1, 2, 2, 4, 8, 16))
            nodes = max(1, gpus // 8)
            cpus = 28 * gpus
            tres = f"billing={int(gpus * 3)},cpu={cpus},gres/gpu:h200={gpus},gres/gpu={gpus},mem={240 * gpus}G,node={nodes}"
            energy = int(length * 10200 * nodes) if rng.random() < 0.5 else 0
            account = ACCOUNTS[job % len(ACCOUNTS)]
            out.write(f"{job}|{account}|{'batch' if job % 7 else 'interactive'}|{start}|{end}|{tres}|{energy}\n")
            lines += 1
            if job % 5 == 0:
                out.write(f"{job}.batch|{account}||{start}|{end}|cpu={cpus},mem={240 * gpus}G,node={nodes}|{energy}\n")
                lines += 1
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=1_000_000)
    ap.add_argument("--keep", help="also write the synthetic sacct file here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        site = with_billing(yaml.safe_load((ROOT / "inventories/riga-1/site.yml").read_text()))
        (tmp / "site.yml").write_text(yaml.safe_dump(site))
        sacct = Path(args.keep) if args.keep else tmp / "sacct.txt"
        lines = write_jobs(sacct, args.jobs)
        size = sacct.stat().st_size
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        before = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "infra.cli", "usage", str(tmp / "site.yml"), "--period", "2026-11",
                               "--sacct", str(sacct), "--format", "json"], capture_output=True, text=True, env=env, cwd=ROOT, check=False)
        wall = time.perf_counter() - before
        child = resource.getrusage(resource.RUSAGE_CHILDREN)
        peak_mb = child.ru_maxrss / 1024
        if proc.returncode != 0:
            sys.exit(f"usage failed ({proc.returncode}): {proc.stderr}")
        report = json.loads(proc.stdout)
        jobs_counted = sum(t["jobs"] for t in report["tenants"])
        print(f"{args.jobs:,} jobs ({lines:,} lines, {size / 1e6:.0f} MB); {jobs_counted:,} with time in 2026-11")
        print(f"gigafactory usage --format json: {wall:.2f} s wall ({child.ru_utime + child.ru_stime:.2f} s CPU), "
              f"peak RSS {peak_mb:.0f} MB (targets: 10 s, 500 MB); CPUs: {os.cpu_count()}, load {os.getloadavg()[0]:.1f}")
        print(f"total GPU-hours {report['total']['gpu_hours']}, idle {report['idle']['gpu_hours']}")


if __name__ == "__main__":
    main()
