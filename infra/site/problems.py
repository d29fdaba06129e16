"""Problems found in a site file, reported together with the field they concern."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

# A key that reads as itself in a field path; any other is quoted (a '.' would read as a level, a line break as a
# new problem, a right-to-left override would reorder the line on the terminal).
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_:+-]*")


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = self.path or "(top level)"
        return printable(f"{where}: {self.message}")


class SiteInvalid(Exception):
    """The site file cannot be used; ``problems`` lists every reason at once."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(f"  {p}" for p in problems))


def field_path(*parts: str | int) -> str:
    """``("pools", 1, "racks")`` -> ``pools[1].racks``; a key that is not plain is quoted: ``macs['a.b\\n']``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _PLAIN_KEY.fullmatch(part := str(part)):
            out += f"[{part!r}]"
        else:
            out += f".{part}" if out else part
    return out


def printable(text: str) -> str:
    """``text`` with every character a terminal would act on or hide (line breaks, controls, bidirectional
    overrides, invisible formatting) written as its Python escape: one problem, one line, in reading order."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
