"""Semesters, as every service names them: ``2019-2020-1`` (I) and ``2019-2020-2`` (II)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from shared.errors import InvalidInputError

_SEMESTER = re.compile(r"^(\d{4})-(\d{4})-([12])$")
# The programme's first school year, and a last one far enough ahead: a year outside them is
# a typo (0000-0001-1 got as far as a stored plan, then broke its date arithmetic).
FIRST_YEAR, LAST_YEAR = 2017, 2099


class InvalidSemesterError(InvalidInputError):
    code = "invalid_semester"


class SemesterOutOfRangeError(InvalidSemesterError):
    """Well formed, but a school year the programme cannot have had."""


@dataclass(frozen=True, order=True)
class Semester:
    """I runs September-December, II January-June, of one school year."""

    year: int
    term: int

    @classmethod
    def parse(cls, text: str) -> Semester:
        match = _SEMESTER.match(text or "")
        if not match or int(match.group(2)) != int(match.group(1)) + 1:
            raise InvalidSemesterError(
                "a semester looks like 2019-2020-1 (school year, then 1 or 2)",
                {"fields": {"semester": ["not a semester"]}},
            )
        year = int(match.group(1))
        if not FIRST_YEAR <= year <= LAST_YEAR:
            raise SemesterOutOfRangeError(
                f"a school year from {FIRST_YEAR}-{FIRST_YEAR + 1} to {LAST_YEAR}-{LAST_YEAR + 1}",
                {"fields": {"semester": ["outside the programme's years"]}},
            )
        return cls(year, int(match.group(3)))

    def __str__(self) -> str:
        return f"{self.year}-{self.year + 1}-{self.term}"

    @property
    def starts_on(self) -> date:
        return date(self.year, 9, 1) if self.term == 1 else date(self.year + 1, 1, 1)

    @property
    def ends_on(self) -> date:
        return date(self.year, 12, 31) if self.term == 1 else date(self.year + 1, 6, 30)

    def next(self) -> Semester:
        return Semester(self.year, 2) if self.term == 1 else Semester(self.year + 1, 1)
