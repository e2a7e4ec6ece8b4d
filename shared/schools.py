"""The schools every service must know to apply the tenant policy (school -> municipality).

Identification owns schools; this is the reference data the project ships with.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class School:
    school_id: str
    name: str
    municipality: str
    kind: str  # general | vocational
    owner: str  # municipal | state
    grades: tuple[int, int]


@cache
def reference_schools() -> dict[str, School]:
    text = resources.files("shared.reference").joinpath("schools.json").read_text("utf-8")
    return {
        row["school_id"]: School(**{**row, "grades": tuple(row["grades"])})
        for row in json.loads(text)
    }


def reference_municipalities() -> dict[str, str]:
    """Each shipped school's municipality."""
    return {school_id: s.municipality for school_id, s in reference_schools().items()}


def with_registered(registered: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The shipped schools' municipalities, and those of the schools identification has
    registered since (school id, municipality), which win."""
    return {**reference_municipalities(), **dict(registered)}


def municipality_of(school_id: str) -> str | None:
    school = reference_schools().get(school_id)
    return school.municipality if school else None
