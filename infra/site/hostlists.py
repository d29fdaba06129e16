"""Slurm hostlist notation (``gpu[0001-0096]``), through the python-hostlist library."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated
from collections.abc import Iterable

import hostlist
from pydantic import BeforeValidator

from .types import HostName

_HOSTNAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


class HostlistError(ValueError):
    """A hostlist expression that does not parse or names an invalid host."""


def expand(expression: str | Iterable[str]) -> list[str]:
    """Every name an expression (or a list of expressions) stands for, in order."""
    parts = [expression] if isinstance(expression, str) else list(expression)
    names: list[str] = []
    for part in parts:
        if not isinstance(part, str) or not part.strip():
            raise HostlistError(f"expected a hostlist expression such as 'gpu[0001-0096]', got {part!r}")
        try:
            names.extend(hostlist.expand_hostlist(part.strip(), allow_duplicates=True))
        except hostlist.BadHostlist as err:
            raise HostlistError(f"{part!r} is not a valid hostlist expression ({err}); "
                                "write e.g. 'gpu[0001-0096]' or 'a[01-32]'") from None
    for name in names:
        if not _HOSTNAME.fullmatch(name):
            raise HostlistError(f"{name!r} is not a valid host name: lower-case letters, digits "
                                "and '-', at most 63 characters, not starting or ending with '-'")
    return names


_SIMPLE = re.compile(r"^([a-z0-9-]*[a-z-])(\d+)$")


def compress(names: Iterable[str]) -> str:
    """The shortest hostlist expression for ``names``, as Slurm writes it.

    Names of the form prefix + zero-padded number (``gpu0042``) take a linear fast
    path; anything else goes to python-hostlist, which handles every form.
    """
    names = list(names)
    runs: dict[tuple[str, int], list[int]] = {}
    simple: dict[str, bool] = {}                 # prefix -> it is one of _SIMPLE's (a few prefixes, many names)
    for name in names:
        prefix = name.rstrip("0123456789")
        if prefix not in simple:
            simple[prefix] = _SIMPLE.match(prefix + "0") is not None
        if not simple[prefix] or len(prefix) == len(name):
            return hostlist.collect_hostlist(names)
        runs.setdefault((prefix, len(name) - len(prefix)), []).append(int(name[len(prefix):]))
    if len(runs) != len({prefix for prefix, _ in runs}):
        return hostlist.collect_hostlist(names)     # one prefix in several widths: let the library decide
    parts = []
    for (prefix, width), numbers in sorted(runs.items()):
        numbers = sorted(set(numbers))
        if len(numbers) == 1:
            parts.append(f"{prefix}{numbers[0]:0{width}d}")
            continue
        ranges, start, prev = [], numbers[0], numbers[0]
        for n in numbers[1:] + [None]:
            if n is not None and n == prev + 1:
                prev = n
                continue
            ranges.append(f"{start:0{width}d}" if start == prev else f"{start:0{width}d}-{prev:0{width}d}")
            if n is not None:
                start = prev = n
        parts.append(f"{prefix}[{','.join(ranges)}]")
    return ",".join(parts)


def compress_in_order(names: Iterable[str]) -> str:
    """A hostlist expression that expands to ``names`` in exactly their order (``compress`` sorts them).

    For lists paired with another hostlist element by element, as Slurm pairs ``NodeAddr=`` with ``NodeName=``:
    runs of consecutive numbers under one prefix (``10.1.0.[1-18]``); a name whose number is zero-padded only joins a
    run of its own width.
    """
    runs: list[list] = []                       # [prefix, width, first, last]; width 0: unpadded
    for name in names:
        digits = len(name) - len(name.rstrip("0123456789"))
        prefix, number = name[:len(name) - digits], name[len(name) - digits:]
        if not number:
            runs.append([name, 0, None, None])
            continue
        width = len(number) if number.startswith("0") and len(number) > 1 else 0
        value = int(number)
        last = runs[-1] if runs else None
        if last and last[2] is not None and last[0] == prefix and last[3] + 1 == value \
                and (last[1] == width or (last[1] and len(number) == last[1])):
            last[3] = value
        else:
            runs.append([prefix, width, value, value])
    parts: list[tuple[str, list[str]]] = []
    for prefix, width, first, last in runs:
        if first is None:
            parts.append((prefix, []))
            continue
        span = f"{first:0{width}d}" if first == last else f"{first:0{width}d}-{last:0{width}d}"
        if parts and parts[-1][1] and parts[-1][0] == prefix:
            parts[-1][1].append(span)
        else:
            parts.append((prefix, [span]))
    return ",".join(prefix if not spans else f"{prefix}{spans[0]}" if "-" not in spans[0] and len(spans) == 1
                    else f"{prefix}[{','.join(spans)}]" for prefix, spans in parts)


def _as_hostlist(value: object) -> tuple[str, ...]:
    if isinstance(value, (str, list, tuple)):
        return tuple(expand(value))
    raise HostlistError(f"expected a hostlist expression or a list of names, got {type(value).__name__}")


Hostlist = Annotated[
    tuple[HostName, ...],
    BeforeValidator(_as_hostlist, json_schema_input_type=str | list[str]),
]
"""A field written as a hostlist expression or a list of them, held expanded."""

_NAME_NUMBER = re.compile(r"^(.*?)(\d*)$")


@lru_cache(maxsize=1 << 17)
def split_name(name: str) -> tuple[str, int]:
    """A host name's prefix and trailing number: ``gpu0042`` -> ``("gpu", 42)``."""
    match = _NAME_NUMBER.match(name)
    assert match is not None
    prefix, digits = match.groups()
    return prefix, int(digits) if digits else 0
