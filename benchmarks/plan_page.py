"""Benchmark: writing the plan's page of a site (``gigafactory plan SITE --html FILE``): the plan, the page, its size.

    .venv/bin/python benchmarks/plan_page.py [inventories/nvl72-gigafactory/site.yml]

Times the plan (site_and_plan) and the page (plan_page) separately, best of three, and prints what the page weighs
and how many drawings it holds. Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import sys
import time

from infra.plan import site_and_plan
from infra.render.page_plan import plan_page, rack_drawings


def best_of(n: int, fn):
    best, value = float("inf"), None
    for _ in range(n):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def main(path: str) -> None:
    plan_s, (site, plan) = best_of(3, lambda: site_and_plan(path))
    page_s, page = best_of(3, lambda: plan_page(site, plan))
    size = len(page.encode())
    print(f"{path}: {len(plan.hosts):,} hosts, {len(plan.racks):,} racks in {len(rack_drawings(site, plan))} drawings")
    print(f"plan {plan_s:.2f} s, page {page_s:.3f} s, page {size / 1024:,.1f} KiB ({size:,} bytes)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "inventories/nvl72-gigafactory/site.yml")
