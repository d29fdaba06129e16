"""Filters of the acceptance's RDMA check (playbooks/acceptance.yml): ib_write_bw's figure, and the verdict on it.

On emulated HCAs (Soft-RoCE) the inter-node figure is judged against the same two nodes' loopback figures measured
just before, as a ratio: a fixed floor would measure the host's load, not the fabric. On real HCAs the floor is a
fraction of the fabric's link rate per rail. docs/testbed.md says why.
"""

from __future__ import annotations

import math


def ib_write_bw_gbits(stdout: str) -> float:
    """The BW average column (Gb/s with --report_gbits) of ib_write_bw's result row; 0.0 without one (no connection,
    an error, anything but a finite non-negative figure).

    Below 1 Gb/s (emulated HCAs) the figure comes from the MsgRate column, 6 decimals of Mpps times the message size,
    where BW average's 2 decimals would round a loaded node's 0.004 Gb/s to nothing."""
    header = False
    for line in str(stdout or "").splitlines():
        cols = line.split()
        if cols[:2] == ["#bytes", "#iterations"]:
            header = True
        elif header and len(cols) >= 4 and cols[0].isdigit():
            try:
                gbits = float(cols[3])
                if gbits < 1 and len(cols) >= 5:
                    gbits = float(cols[4]) * int(cols[0]) * 8 / 1000
            except ValueError:
                return 0.0
            return gbits if math.isfinite(gbits) and gbits >= 0 else 0.0
    return 0.0


def _gbits(value: float) -> str:
    """A figure as people read it: 4 significant digits from 1 Gb/s up, 2 below (0.023, 391.9)."""
    return f"{value:.4g}" if value >= 1 else f"{value:.2g}"


def rdma_verdict(gbits: float, loopback: dict, emulated: bool, ratio: float, link_gbits: float, link_fraction: float,
                 min_gbits: float | None = None) -> dict:
    """Whether the inter-node figure passes, with the floor it was held to and the rule that gave the floor.

    ``min_gbits`` (acceptance_min_gbits), when given, is a fixed floor and wins. Otherwise on emulated HCAs the floor
    is ``ratio`` times the smaller of the nodes' ``loopback`` figures, and every node's loopback must measure
    something; on real HCAs it is ``link_fraction`` of ``link_gbits``. A figure of 0 (no connection) never passes."""
    gbits = float(gbits)
    loopback = {host: float(value) for host, value in (loopback or {}).items()}
    silent = sorted(host for host, value in loopback.items() if value <= 0)
    if min_gbits not in (None, ""):
        floor, rule = float(min_gbits), "acceptance_min_gbits"
    elif emulated:
        slower = min(loopback, key=loopback.get) if loopback else None
        floor = float(ratio) * loopback[slower] if slower else 0.0
        rule = (f"{float(ratio):g} x the slower loopback ({slower} {_gbits(loopback[slower])} Gb/s)" if slower
                else "no loopback figure")
    else:
        floor, rule = float(link_fraction) * float(link_gbits), f"{float(link_fraction):g} x the {_gbits(float(link_gbits))} Gb/s link"
    passed = gbits > 0 and gbits >= floor and not (emulated and (silent or not loopback))
    if gbits <= 0:
        why = "no figure (no connection, or ib_write_bw failed)"
    elif emulated and not loopback:
        why = "no loopback figure to compare with"
    elif emulated and silent:
        why = f"loopback measured nothing on {', '.join(silent)}"
    else:
        why = f"{'at least' if passed else 'below'} {_gbits(floor)} Gb/s: {rule}"
    return {"passed": passed, "gbits": gbits, "floor": floor, "rule": rule, "loopback": loopback,
            "detail": f"ib_write_bw {_gbits(gbits)} Gb/s, {why}"}


class FilterModule:
    def filters(self):
        return {"ib_write_bw_gbits": ib_write_bw_gbits, "rdma_verdict": rdma_verdict}
