"""Benchmark: validate + plan + render a 100,000-GPU site, and the inventory plugin against static YAML.

    .venv/bin/python benchmarks/site_scale.py [--nodes 12500] [--repeat 3]
    .venv/bin/python benchmarks/site_scale.py --site nvl72 --skip-inventory     # the reference GB300 NVL72 site

``--site`` takes a site file, or a name of ``sites.SITES`` (``nvl72``: inventories/nvl72-gigafactory, 100,800 GPUs in
1,400 NVL72 racks), instead of riga-1 grown to ``--nodes``.

Targets (issue 2): validate + plan + render <= 2 s wall and <= 500 MB peak memory
on a 2-core machine; slurm.conf with at most 50 NodeName lines; ansible-inventory
through the plugin at most 1.5x the time of the same inventory as static YAML.
Prints a table; asserts nothing about time (these machines are noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sites import ROOT, SITES, large_site  # noqa: E402  (benchmarks are scripts, not a package)

PIPELINE = """
import resource, sys, time
t0 = time.perf_counter()
from infra.site import load_site
from infra.plan import build_plan
from infra.render.files import render_all
t1 = time.perf_counter()
site = load_site(sys.argv[1]); t2 = time.perf_counter()
plan = build_plan(site); t3 = time.perf_counter()
files = render_all(site, plan); t4 = time.perf_counter()
lines = sum(1 for l in files["slurm/slurm.conf"].splitlines() if l.startswith("NodeName="))
print(t1 - t0, t2 - t1, t3 - t2, t4 - t3, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, lines, len(plan.hosts),
      plan.capacity.gpus)
"""


def timed(argv: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=12_500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--site", help="a site file, or one of: " + ", ".join(SITES))
    parser.add_argument("--skip-inventory", action="store_true", help="leave out ansible-inventory (plugin against static)")
    args = parser.parse_args()
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    with tempfile.TemporaryDirectory() as tmp:
        site_dir = Path(tmp) / "scale"
        site_dir.mkdir()
        site_file = site_dir / "site.yml"
        if args.site:
            site_file = Path(SITES.get(args.site, args.site)).resolve()
        else:
            site_file.write_text(yaml.safe_dump(large_site(args.nodes), sort_keys=False))
        runs = []
        for _ in range(args.repeat):
            out = subprocess.run([sys.executable, "-c", PIPELINE, str(site_file)], check=True, capture_output=True,
                                 text=True, env=env, cwd=ROOT).stdout.split()
            runs.append([float(x) for x in out])
        imports, load, plan, render, rss, lines, hosts, gpus = (statistics.median(col) for col in zip(*runs, strict=True))
        if args.skip_inventory:
            return _report(args, imports, load, plan, render, rss, lines, hosts, gpus, {})

        # The same hosts and variables as a static YAML inventory, for ansible-inventory side by side.
        static = Path(tmp) / "static.yml"
        subprocess.run([sys.executable, "-c", (
            "import sys, yaml; from infra.site import load_site; from infra.plan import build_plan;"
            "from infra.runner.execution import controller_inventory; s = load_site(sys.argv[1]);"
            "open(sys.argv[2], 'w').write(yaml.safe_dump(controller_inventory(s, build_plan(s)), sort_keys=False))"),
            str(site_file), str(static)], check=True, env=env, cwd=ROOT)
        inventory = str(Path(sys.executable).parent / "ansible-inventory")
        plugin_t, static_t = [], []
        # --export: each group's variables once, as they are stored. Plain --list merges every group's
        # variables into each host's entry, and the site-wide /etc/hosts list (gf_etc_hosts, 12,500 entries
        # on group all) then repeats 12,500 times: the plugin's run was killed at 18 GB doing that (the static
        # inventory carries the same variables).
        for _ in range(args.repeat):
            plugin_t.append(timed([inventory, "-i", str(site_file), "--list", "--export"], env))
            static_t.append(timed([inventory, "-i", str(static), "--list", "--export"], env))
        p, s = statistics.median(plugin_t), statistics.median(static_t)
    return _report(args, imports, load, plan, render, rss, lines, hosts, gpus, {
        "ansible_inventory_plugin_s": round(p, 2), "ansible_inventory_static_s": round(s, 2), "plugin_over_static": round(p / s, 2)})


def _report(args, imports, load, plan, render, rss, lines, hosts, gpus, inventory: dict) -> int:
    result = {
        "site": args.site or f"riga-1 grown to {args.nodes:,} nodes", "nodes": int(hosts), "gpus": int(gpus),
        "validate_s": round(load, 3), "plan_s": round(plan, 3), "render_s": round(render, 3),
        "validate_plan_render_s": round(load + plan + render, 3), "imports_s": round(imports, 3),
        "peak_rss_mb": round(rss, 1), "slurm_nodename_lines": int(lines), **inventory,
    }
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(result), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
