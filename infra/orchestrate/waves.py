"""Rolling waves: a canary first, then larger waves (Ansible's ``serial`` list semantics)."""

from __future__ import annotations

import math
import re

_SIZE = re.compile(r"^(\d+)(%?)$")


class BatchInvalid(ValueError):
    pass


def parse_batch(text: str) -> list[str]:
    """``"1,25%,100%"`` -> ``["1", "25%", "100%"]``; raises BatchInvalid."""
    sizes = [s.strip() for s in text.split(",") if s.strip()]
    if not sizes:
        raise BatchInvalid("--batch: give wave sizes such as 1,25%,100%")
    for s in sizes:
        m = _SIZE.match(s)
        if not m or int(m.group(1)) == 0 or (m.group(2) and int(m.group(1)) > 100):
            raise BatchInvalid(f"--batch: {s!r} is not a host count (>0) or a percentage (1-100%)")
    return sizes


def wave_size(size: str, total: int) -> int:
    m = _SIZE.match(size)
    if not m:
        raise BatchInvalid(f"wave size {size!r} is not N or N%")
    n = int(m.group(1))
    if m.group(2):
        n = math.floor(total * n / 100)
    return max(1, n)


def waves(hosts: list[str], sizes: list[str]) -> list[list[str]]:
    """Split ``hosts`` into waves; the last size repeats until every host has a wave (as Ansible's ``serial``)."""
    out: list[list[str]] = []
    i, k = 0, 0
    while i < len(hosts):
        n = wave_size(sizes[min(k, len(sizes) - 1)] if sizes else "100%", len(hosts))
        out.append(hosts[i:i + n])
        i += n
        k += 1
    return out
