"""Slurm hostlist notation (``gpu[0001-0096]``), through the python-hostlist library."""

from __future__ import annotations

import re
from typing import Annotated, Iterable

import hostlist
from pydantic import BeforeValidator

_HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


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
        if not _HOSTNAME.match(name):
            raise HostlistError(f"{name!r} is not a valid host name: lower-case letters, digits "
                                "and '-', at most 63 characters, not starting or ending with '-'")
    return names


def compress(names: Iterable[str]) -> str:
    """The shortest hostlist expression for ``names``, as Slurm writes it."""
    return hostlist.collect_hostlist(list(names))


def _as_hostlist(value: object) -> tuple[str, ...]:
    if isinstance(value, (str, list, tuple)):
        return tuple(expand(value))
    raise HostlistError(f"expected a hostlist expression or a list of names, got {type(value).__name__}")


Hostlist = Annotated[
    tuple[str, ...],
    BeforeValidator(_as_hostlist, json_schema_input_type=str | list[str]),
]
"""A field written as a hostlist expression or a list of them, held expanded."""

_NAME_NUMBER = re.compile(r"^(.*?)(\d*)$")


def split_name(name: str) -> tuple[str, int]:
    """A host name's prefix and trailing number: ``gpu0042`` -> ``("gpu", 42)``."""
    match = _NAME_NUMBER.match(name)
    assert match is not None
    prefix, digits = match.groups()
    return prefix, int(digits) if digits else 0
