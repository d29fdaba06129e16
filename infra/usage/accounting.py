"""Slurm's accounting read from the cluster: ``sacct`` on the site's accounting host, through a ``NodeControl``
(production: ``AnsibleCommand``, ansible-runner's ad-hoc ``command`` module with ``up``'s inventories; an argument
vector, no shell)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import chain
from typing import Any, Protocol

from .periods import Period
from .sacct import SACCT_HEADER, sacct_argv

REASON_MAX = 300


class AccountingUnavailable(Exception):
    """The accounting host could not be reached or its ``sacct`` failed: ``host`` and a one-line reason."""

    def __init__(self, host: str, reason: str):
        self.host = host
        super().__init__(f"{host}: {reason}")


class Control(Protocol):
    """What ``infra.orchestrate.rollout.NodeControl`` offers: run an argument vector on one host."""
    def run(self, argv: Sequence[str]) -> Any: ...


def _one_line(text: str) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= REASON_MAX else line[:REASON_MAX - 3] + "..."


def cluster_sacct(control: Control, host: str, period: Period) -> Iterator[str]:
    """sacct's records of ``period`` on ``host``, header first, as lines for ``read_sacct``; raises
    AccountingUnavailable when the host is unreachable or sacct fails."""
    try:
        result = control.run(sacct_argv(period.start, period.end))
    except Exception as err:            # noqa: BLE001 -- ansible-runner's own failures: a reason, never a traceback
        raise AccountingUnavailable(host, f"ansible-runner failed: {_one_line(str(err)) or type(err).__name__}") from None
    if result.rc != 0:
        reason = _one_line(result.stderr) or _one_line(result.stdout) or "no message"
        raise AccountingUnavailable(host, f"sacct failed (rc {result.rc}): {reason}")
    return chain((SACCT_HEADER,), result.stdout.splitlines())
