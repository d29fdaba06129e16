"""Reading a site file: YAML, then the typed model, then the semantic checks."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from .checks import run_checks
from .model import Site
from .problems import Problem, SiteInvalid, field_path
from .types import shown
from .yamldata import MAX_SITE_CHARACTERS, load_yaml


def load_site(path: str | Path) -> Site:
    """The validated site at ``path``; raises SiteInvalid listing every problem."""
    path = Path(path)
    return parse_site(read_site_text(path), str(path), path.parent)


def read_site_text(path: Path) -> str:
    """The text of the site file at ``path``; raises SiteInvalid if it cannot be read."""
    try:
        with path.open(encoding="utf-8") as handle:
            return handle.read(MAX_SITE_CHARACTERS + 1)   # load_yaml refuses a longer one: never read a whole /dev/zero
    except (OSError, UnicodeDecodeError) as err:
        raise SiteInvalid(str(path), [Problem("", f"cannot read the site file: {err}")]) from None


def parse_site(text: str, source: str = "<site>", directory: str | Path | None = None) -> Site:
    """The validated site in ``text``; files it names (repository keys) are relative to ``directory``, else the current one."""
    data = load_yaml(text, source)
    return validate_data(data, source, directory)


def validate_data(data: Any, source: str = "<site>", directory: str | Path | None = None) -> Site:
    if data is None:
        raise SiteInvalid(source, [Problem("", "the site file is empty; it needs at least: site, networks, node_types, racks, pools")])
    if not isinstance(data, dict):
        raise SiteInvalid(source, [Problem("", f"the site file must be a mapping of sections (site, networks, ...), got a {_kind(data)}")])
    try:
        site = Site.model_validate(data, context={"directory": Path(directory or ".")})
    except ValidationError as err:
        raise SiteInvalid(source, [_problem(e) for e in err.errors(include_url=False)]) from None
    problems = [p for p in run_checks(site) if p.severity == "error"]
    if problems:
        raise SiteInvalid(source, problems)
    return site


def site_warnings(site: Site) -> list[Problem]:
    """What a valid site should still fix (e.g. a mirror it lacks): said by ``validate``, never fatal."""
    return [p for p in run_checks(site) if p.severity == "warning"]


def _kind(value: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(value), type(value).__name__)


def _problem(error: dict) -> Problem:
    loc = _clean_loc(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        valid = _valid_keys(loc[:-1])
        hint = f"; valid keys here: {', '.join(valid)}" if valid else ""
        return Problem(field_path(*loc), f"unknown key {loc[-1]!r}{hint}")
    if kind == "missing":
        return Problem(field_path(*loc), "required, but missing")
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    value = error.get("input")
    got = "" if isinstance(value, (dict, list)) or kind.startswith("value_error") else f" (got {shown(value)})"
    return Problem(field_path(*loc), f"{message}{got}")



def _clean_loc(loc: tuple) -> tuple:
    """Drop pydantic's internal steps (validator names, union tags) from an error location."""
    out: list = []
    for part in loc:
        if isinstance(part, str) and ("[" in part or "(" in part):
            continue
        if isinstance(part, str) and out and isinstance(out[-1], int) and len(out) >= 2 and out[-2] == "storage" and part in ("nfs", "lustre"):
            continue
        out.append(part)
    return tuple(out)


def _valid_keys(loc: tuple) -> list[str]:
    """Field names of the model found at ``loc`` (best effort, for error hints)."""
    node: Any = Site
    for part in loc:
        node = _unwrap(node, part)
        if node is None:
            return []
    model = _unwrap(node, None)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [field.alias or name for name, field in model.model_fields.items()]
    return []


def _unwrap(tp: Any, step: Any) -> Any:
    """Follow one location step through Annotated, Optional, list, dict and model types."""
    while True:
        origin = get_origin(tp)
        if origin is typing.Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            models = [a for a in get_args(tp) if a is not type(None)]
            tp = models[0] if len(models) == 1 else _first_model(models)
        else:
            break
    if step is None:
        return tp
    if isinstance(step, int):
        return get_args(tp)[0] if get_origin(tp) in (list, tuple) else None
    if get_origin(tp) is dict:
        return get_args(tp)[1]
    if isinstance(tp, type) and issubclass(tp, BaseModel) and step in tp.model_fields:
        return tp.model_fields[step].annotation
    return None


def _first_model(candidates: list) -> Any:
    for c in candidates:
        if isinstance(c, type) and issubclass(c, BaseModel):
            return c
    return candidates[0] if candidates else None
