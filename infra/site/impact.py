"""What a change to each field of the site file costs and where it lands: its impact class and the provisioning
phases that read it, declared together where the model declares the field.

A field carries its class as a marker in its annotation, ``memory_gb: Annotated[int, DRAIN.on("slurm")]``, the way
string types carry ``Constrained``; a model may instead declare ``IMPACT`` for every field of its own that declares
none. ``on`` names the phases whose digest the field feeds (the Pulumi program re-runs exactly those,
infra/stack/node_configuration.py); a bare ``NONE`` lands nowhere; a bare class of another kind has not said where
it lands, and ``on_holder()`` lands where the field holding the model does (a repository: where that mirror is used).
Nothing is inherited from the enclosing field, so a new field without a class is found (``tests/test_impact.py``
walks the whole model). For a field holding sub-models (a pool, a node type's GPU), its class is the cost of adding
or removing one; the sub-model's own fields say what changing them costs. docs/day-two.md explains the choices.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
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

    def on(self, *phases: str) -> Cost:
        """This class, landing on ``phases`` (none: on no provisioning phase, e.g. an object the Pulumi program owns)."""
        if self is Impact.NONE and phases:
            raise ValueError(f"a change of class none lands on no phase, not on {', '.join(phases)}")
        return Cost(self, tuple(phases))

    def on_every(self) -> Cost:
        """This class, landing on every phase (a host's name or address, the site's name)."""
        return Cost(self, (EVERY_PHASE,))

    def on_holder(self) -> Cost:
        """This class, landing where the field holding the model lands (a model several fields hold)."""
        return Cost(self, None)


@dataclass(frozen=True)
class Cost:
    """What a change to a field costs (``impact``) and the phases it lands on (None: those of the field holding it)."""
    impact: Impact
    phases: tuple[str, ...] | None


EVERY_PHASE = "*"                       # in Cost.phases: every phase of the registry (infra/plan/phases.py)
NONE, LIVE, RESTART, DRAIN, REBOOT, REPLACE = Impact.NONE, Impact.LIVE, Impact.RESTART, Impact.DRAIN, Impact.REBOOT, Impact.REPLACE


def _marker(model: type[BaseModel], name: str) -> Impact | Cost | None:
    """``model``'s field ``name``'s own marker, else the model's ``IMPACT``, else None.

    pydantic lifts the outermost ``Annotated`` metadata of a field into ``FieldInfo.metadata``; a marker inside a
    union or a list is not the field's and is not looked at.
    """
    declared = [m for m in model.model_fields[name].metadata if isinstance(m, (Impact, Cost))]
    if len(declared) > 1:
        raise TypeError(f"{model.__name__}.{name}: more than one impact class ({', '.join(map(str, declared))})")
    own = declared[0] if declared else vars(model).get("IMPACT")
    return own if isinstance(own, (Impact, Cost)) else None


def field_impact(model: type[BaseModel], name: str) -> Impact | None:
    """The class of ``model``'s field ``name``: its own marker, else the model's ``IMPACT``, else None (undeclared)."""
    marker = _marker(model, name)
    return marker.impact if isinstance(marker, Cost) else marker


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


UNDECLARED = "undeclared"


def field_phases(model: type[BaseModel], path: str = "", seen: set | None = None,
                 holder: tuple[str, ...] | str = UNDECLARED) -> dict[str, tuple[str, ...] | str]:
    """Every field reachable from ``model`` (paths as field_impacts) with the phases a change to it lands on, as
    declared; UNDECLARED where the field does not say (no class, or a bare class other than NONE)."""
    seen = set() if seen is None else seen
    if model in seen:
        return {}
    seen.add(model)
    out: dict[str, tuple[str, ...] | str] = {}
    for name, info in model.model_fields.items():
        here = f"{path}.{name}" if path else name
        marker = _marker(model, name)
        if isinstance(marker, Cost):
            out[here] = holder if marker.phases is None else marker.phases
        else:
            out[here] = () if marker is NONE else UNDECLARED
        below = "<key>" if get_origin(_bare(info.annotation)) is dict else "[]" if _is_sequence(info.annotation) else ""
        for sub in submodels(info.annotation):
            out.update(field_phases(sub, f"{here}.{below}" if below == "<key>" else here + below, seen, out[here]))
    return out
