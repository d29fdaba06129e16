"""Problems found in a site file, reported together with the field they concern."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = self.path or "(top level)"
        return f"{where}: {self.message}"


class SiteInvalid(Exception):
    """The site file cannot be used; ``problems`` lists every reason at once."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(f"  {p}" for p in problems))


def field_path(*parts: str | int) -> str:
    """``("pools", 1, "racks")`` -> ``pools[1].racks``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
