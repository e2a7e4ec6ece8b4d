"""The schools every service must know to apply the tenant policy (school -> municipality).

Identification owns schools; this is the reference data the project ships with.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any


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


class RegisteredSchools:
    """A service's read model of the schools identification registered (its ``table`` has
    ``school_id`` and ``municipality`` columns), as the tenant policy asks it: the shipped
    schools are known without a row, and a registered school's row wins."""

    table: str

    def municipality(self, query: Callable[..., list[Any]], school_id: str) -> str | None:
        rows = query(f"SELECT municipality FROM {self.table} WHERE school_id = ?", (school_id,))
        return str(rows[0]["municipality"]) if rows else municipality_of(school_id)

    def directory(self, query: Callable[..., list[Any]]) -> dict[str, str]:
        """Every school known here and its municipality."""
        rows = query(f"SELECT school_id, municipality FROM {self.table}")
        return {**reference_municipalities(), **{r["school_id"]: r["municipality"] for r in rows}}


def municipality_of(school_id: str) -> str | None:
    school = reference_schools().get(school_id)
    return school.municipality if school else None
