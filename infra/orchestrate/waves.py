"""Rolling waves: the hosts others depend on, a canary, then larger waves (Ansible's ``serial`` list semantics).

A small phase runs as one wave: when the batch's first wave (the canary) would be more than ``CANARY_SHARE_MAX``
percent of the phase's hosts (with the default canary of 1 host: a phase of fewer than 10 hosts). A canary pays
off by sparing the rest of the phase when it fails; each wave is a whole ``ansible-playbook`` run whose fixed
cost (start, inventory, facts, every task's round trip) does not shrink with its host count, so a canary that is
a large share of the phase doubles the phase's time to spare few hosts, which max-fail (default 10%) stops after
one wave all the same. The demo's phases (3 hosts) each run once instead of twice or three times.
"""

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


CANARY_SHARE_MAX = 10   # percent of a phase's hosts; see the module's docstring


def is_small(total: int, sizes: list[str]) -> bool:
    """A phase of ``total`` hosts whose canary (first wave of ``sizes``) would be more than CANARY_SHARE_MAX%."""
    return total > 0 and 100 * wave_size(sizes[0] if sizes else "100%", total) > CANARY_SHARE_MAX * total


def phase_waves(hosts: list[str], sizes: list[str], first: list[str] = (), *,
                one_wave_when_small: bool = True) -> list[list[str]]:
    """The waves of a phase: ``first`` (the hosts others depend on) alone, then ``waves`` of the rest;
    one wave, ``first`` leading, when the phase is small (``is_small``) and ``one_wave_when_small``."""
    lead = [h for h in hosts if h in set(first)]
    rest = [h for h in hosts if h not in set(lead)]
    if one_wave_when_small and is_small(len(hosts), sizes):
        return [lead + rest] if hosts else []
    return ([lead] if lead else []) + waves(rest, sizes)
