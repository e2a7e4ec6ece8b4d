"""Schools and grades: what a school teaches bounds the grade (or course) of its pupils."""

from __future__ import annotations

from datetime import date

import pytest

from services.identification.catalogue import RISK_CODES, RISK_FACTORS
from services.identification.domain import (
    GradeOutOfRangeError,
    InvalidNameError,
    InvalidSchoolError,
    PersonalData,
    School,
    check_grade,
    school_aggregate_id,
)
from shared.schools import School as SchoolInfo
from shared.schools import reference_schools

VOCATIONAL = SchoolInfo(
    "daugavpils-tehnikums", "Tehnikums", "daugavpils", "vocational", "state", (1, 4)
)


def test_the_eight_daugavpils_schools_ship_with_the_project() -> None:
    schools = reference_schools()
    assert len(schools) == 8
    assert {s.municipality for s in schools.values()} == {"daugavpils"}
    assert {(s.kind, s.owner) for s in schools.values()} == {("general", "municipal")}
    assert schools["daugavpils-vienibas-psk"].grades == (1, 9)
    assert schools["daugavpils-6-vsk"].name == "J. Raiņa Daugavpils 6. vidusskola"


def test_a_pamatskola_teaches_grades_1_to_9() -> None:
    pamatskola = reference_schools()["daugavpils-11-psk"]
    check_grade(pamatskola, 9)
    with pytest.raises(GradeOutOfRangeError) as raised:
        check_grade(pamatskola, 10)
    assert raised.value.details["fields"]["grade"] == [
        "grade 10 is outside this school's grades 1-9"
    ]


def test_a_vocational_school_has_courses_1_to_4() -> None:
    check_grade(VOCATIONAL, 4)
    with pytest.raises(GradeOutOfRangeError, match="course 5"):
        check_grade(VOCATIONAL, 5)


def test_a_new_school_teaches_a_sensible_range() -> None:
    School.check_new("general", 1, 12)
    School.check_new("vocational", 1, 4)
    for kind, low, high in [("vocational", 1, 5), ("general", 9, 5), ("general", 0, 9)]:
        with pytest.raises(InvalidSchoolError):
            School.check_new(kind, low, high)


def test_a_school_aggregate_id_follows_from_its_school_id() -> None:
    school = School("riga-1-vsk", "Rīgas 1. vidusskola", "riga", "general", "municipal", 1, 12, "n")
    assert school.id == school_aggregate_id("riga-1-vsk")
    assert school.info() == SchoolInfo(
        "riga-1-vsk", "Rīgas 1. vidusskola", "riga", "general", "municipal", (1, 12)
    )


def test_personal_data_needs_both_names() -> None:
    data = PersonalData.checked(" Līga ", "Šķēle", "32123456789", date(2008, 1, 1))
    assert (data.given_name, data.personal_code) == ("Līga", "321234-56789")
    with pytest.raises(InvalidNameError) as raised:
        PersonalData.checked("Līga", "  ", "32123456789", date(2008, 1, 1))
    assert set(raised.value.details["fields"]) == {"family_name"}
    with pytest.raises(InvalidNameError):
        PersonalData.checked("x" * 101, "Šķēle", "32123456789", date(2008, 1, 1))


def test_the_risk_catalogue_is_domain_md_s() -> None:
    by_group: dict[str, int] = {}
    for factor in RISK_FACTORS:
        by_group[factor.group.group] = by_group.get(factor.group.group, 0) + 1
        assert factor.code.startswith(factor.group.group + ".")
        assert factor.label_lv and factor.label_en
    assert by_group == {"learning": 9, "economic": 4, "family": 4, "social_health": 4}
    assert len(RISK_CODES) == 21
    groups = {f.group.group: f.group.label_lv for f in RISK_FACTORS}
    assert groups["family"] == "ar ģimeni saistītie riski"
