"""What a change to each field of the site file costs: its impact class, declared where the model declares the field.

A field carries its class as a marker in its annotation, ``memory_gb: Annotated[int, DRAIN]``, the way string
types carry ``Constrained``; a model may instead declare ``IMPACT`` for every field of its own that declares none.
Nothing is inherited from the enclosing field, so a new field without a class is found (``tests/test_impact.py``
walks the whole model). For a field holding sub-models (a pool, a node type's GPU), its class is the cost of adding
or removing one; the sub-model's own fields say what changing them costs. docs/day-two.md explains the choices.
"""

from __future__ import annotations

import types
import typing
from enum import IntEnum
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel


class Impact(IntEnum):
    """Ordered by cost: a change needing several classes needs the highest."""
    NONE = 0        # documentation or planning only: nothing on a host changes
    LIVE = 1        # configuration reload (scontrol reconfigure, sacctmgr, a Kubernetes object): no daemon restarts
    RESTART = 2     # a daemon restarts; running jobs carry on (slurmd, slurmctld, chrony, containerd)
    DRAIN = 3       # the node must be idle: its Slurm node definition, GRES or mounts change
    REBOOT = 4      # the node must be idle and rebooted: kernel, kernel modules, boot-time reservations
    REPLACE = 5     # a host's identity (address, name) changes: refused by ``up`` unless forced

    def __str__(self) -> str:
        return self.name.lower()


NONE, LIVE, RESTART, DRAIN, REBOOT, REPLACE = Impact.NONE, Impact.LIVE, Impact.RESTART, Impact.DRAIN, Impact.REBOOT, Impact.REPLACE


def field_impact(model: type[BaseModel], name: str) -> Impact | None:
    """The class of ``model``'s field ``name``: its own marker, else the model's ``IMPACT``, else None (undeclared).

    pydantic lifts the outermost ``Annotated`` metadata of a field into ``FieldInfo.metadata``; a marker inside a
    union or a list is not the field's and is not looked at.
    """
    declared = [m for m in model.model_fields[name].metadata if isinstance(m, Impact)]
    if len(declared) > 1:
        raise TypeError(f"{model.__name__}.{name}: more than one impact class ({', '.join(map(str, declared))})")
    if declared:
        return declared[0]
    own = vars(model).get("IMPACT")
    return own if isinstance(own, Impact) else None


def submodels(tp: Any) -> list[type[BaseModel]]:
    """The models a field's annotation holds, through Annotated, Optional, unions, lists, tuples and dict values."""
    origin = get_origin(tp)
    if origin is typing.Annotated:
        return submodels(get_args(tp)[0])
    if origin in (Union, types.UnionType, list, tuple, set, frozenset):
        return [m for arg in get_args(tp) if arg is not Ellipsis for m in submodels(arg)]
    if origin is dict:
        return submodels(get_args(tp)[1])
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return []


def field_impacts(model: type[BaseModel], path: str = "", seen: set | None = None) -> dict[str, Impact | None]:
    """Every field reachable from ``model`` (``node_types.<key>.gpu.count``) with its class, None where undeclared.

    Each model's fields are listed once, under the first path that reaches the model.
    """
    seen = set() if seen is None else seen
    if model in seen:
        return {}
    seen.add(model)
    out: dict[str, Impact | None] = {}
    for name, info in model.model_fields.items():
        here = f"{path}.{name}" if path else name
        out[here] = field_impact(model, name)
        below = "<key>" if get_origin(_bare(info.annotation)) is dict else "[]" if _is_sequence(info.annotation) else ""
        for sub in submodels(info.annotation):
            out.update(field_impacts(sub, f"{here}.{below}" if below == "<key>" else here + below, seen))
    return out


def _bare(tp: Any) -> Any:
    while True:
        origin = get_origin(tp)
        if origin is typing.Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _is_sequence(tp: Any) -> bool:
    return get_origin(_bare(tp)) in (list, tuple, set, frozenset)
