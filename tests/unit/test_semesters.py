"""Semesters as every service reads them from a request or a path."""

from __future__ import annotations

import pytest
from marshmallow import Schema, ValidationError

from shared.semesters import InvalidSemesterError, Semester
from shared.validators import semester_field


class _Body(Schema):
    semester = semester_field(required=True)


@pytest.mark.parametrize("text", ["2017-2018-1", "2019-2020-2", "2099-2100-2"])
def test_the_programmes_years_are_semesters(text: str) -> None:
    assert str(Semester.parse(text)) == text
    assert _Body().load({"semester": text}) == {"semester": text}


@pytest.mark.parametrize("text", ["0000-0001-1", "1850-1851-1", "2016-2017-2", "2100-2101-1"])
def test_a_year_outside_the_programme_is_refused_as_bad_input(text: str) -> None:
    with pytest.raises(InvalidSemesterError) as refused:
        Semester.parse(text)
    assert refused.value.details == {"fields": {"semester": ["outside the programme's years"]}}
    with pytest.raises(ValidationError) as invalid:
        _Body().load({"semester": text})
    assert invalid.value.messages == {"semester": ["a school year from 2017-2018 to 2099-2100"]}


def test_a_malformed_semester_is_named_as_such() -> None:
    with pytest.raises(ValidationError) as invalid:
        _Body().load({"semester": "2019-2021-1"})
    assert invalid.value.messages == {"semester": ["not a semester like 2019-2020-1"]}
