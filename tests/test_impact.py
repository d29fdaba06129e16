"""Every field of the site model declares its impact class where the model declares the field (docs/day-two.md)."""

from __future__ import annotations

from typing import Annotated, ClassVar

import pytest
from pydantic import BaseModel

from infra.site.impact import DRAIN, LIVE, NONE, REBOOT, REPLACE, Impact, field_impact, field_impacts
from infra.site.model import Site


def undeclared(model: type[BaseModel]) -> list[str]:
    return [path for path, impact in field_impacts(model).items() if impact is None]


def test_every_field_of_the_site_model_has_an_impact_class():
    assert undeclared(Site) == []


def test_a_new_field_without_a_class_is_found_at_any_depth():
    class Gadget(BaseModel):
        size: Annotated[int, DRAIN] = 1
        colour: str = "red"                             # no class

    class Classed(BaseModel):
        IMPACT: ClassVar[Impact] = LIVE                 # every field of its own
        a: int = 0
        b: Annotated[int, REBOOT] = 0

    class Unclassed(BaseModel):                         # its fields would inherit nothing from the field holding it
        c: int = 0

    class Sneaky(BaseModel):
        known: Annotated[int, NONE] = 0
        gadgets: Annotated[dict[str, Gadget], LIVE] = {}
        classed: Annotated[list[Classed], LIVE] = []
        unclassed: Annotated[Unclassed | None, LIVE] = None
        bare: int | None = None
        misplaced: Annotated[int, LIVE] | None = None  # the marker must be outermost to be the field's

    assert undeclared(Sneaky) == ["gadgets.<key>.colour", "unclassed.c", "bare", "misplaced"]
    assert field_impact(Classed, "a") is LIVE and field_impact(Classed, "b") is REBOOT


def test_a_field_added_to_the_site_without_a_class_fails():
    class Grown(Site):
        colour: str = "red"
    assert undeclared(Grown) == ["colour"]


def test_two_classes_on_one_field_are_refused():
    class Twice(BaseModel):
        x: Annotated[int, LIVE, DRAIN] = 0
    with pytest.raises(TypeError, match="more than one impact class"):
        field_impact(Twice, "x")


# The classes an operator relies on most (docs/day-two.md): a change here must be a deliberate one.
@pytest.mark.parametrize("path, impact", [
    ("software.nvidia_driver.branch", REBOOT), ("software.nvidia_driver.flavor", REBOOT),
    ("node_types.<key>.hugepages_2m", REBOOT), ("os.release", REBOOT),
    ("node_types.<key>.memory_gb", DRAIN), ("node_types.<key>.gpu.count", DRAIN), ("node_types.<key>.cpu.sockets", DRAIN),
    ("slurm.partitions[].max_time", LIVE), ("tenants[].slurm.gpus", LIVE), ("tenants[].slurm.fairshare", LIVE),
    ("networks.management.cidr", REPLACE), ("site.name", REPLACE), ("slurm.cluster", REPLACE),
    ("site.operator", NONE),
])
def test_the_classes_that_matter_most(path, impact):
    assert field_impacts(Site)[path] is impact
