"""Reading a school's e-journal export: the file as a whole, and each row."""

from __future__ import annotations

from datetime import date

import pytest

from services.identification.journal import (
    InvalidSemesterError,
    JournalEncodingError,
    JournalFormatError,
    Semester,
    parse_journal,
)
from shared.schools import reference_schools

SCHOOL = reference_schools()["daugavpils-10-vsk"]
HEADER = "personal_code,given_name,family_name,grade,birth_date,gender,unexcused_lessons"
GOOD = "150607-20416,Ģirts,Žūriņš,7,2007-06-15,M"


def journal(*rows: str, header: str = HEADER + ",Matemātika,Latviešu valoda") -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode("utf-8")


def test_a_good_row_reads_with_its_marks_and_latvian_letters() -> None:
    parsed = parse_journal(journal(f"{GOOD},3,9,nv"), SCHOOL)
    assert parsed.errors == []
    row = parsed.rows[0]
    assert (row.line, row.personal.given_name, row.personal.family_name) == (2, "Ģirts", "Žūriņš")
    assert (row.grade, row.gender, row.unexcused_lessons) == (7, "M", 3)
    assert row.marks == {"Matemātika": 9, "Latviešu valoda": None}
    assert parsed.subjects == ["Matemātika", "Latviešu valoda"]


def test_signs_follow_from_absences_over_20_and_marks_of_3_or_less_or_nv() -> None:
    semester = Semester.parse("2019-2020-1")
    rows = parse_journal(
        journal(
            f"{GOOD},20,4,4",
            "010308-20005,Anna,Liepa,7,2008-03-01,F,21,3,",
            "320000-00001,Ilze,Kalna,7,2008-03-01,F,0,10,nv",
        ),
        SCHOOL,
    ).rows
    assert rows[0].signs(semester) == []
    assert [code for code, _ in rows[1].signs(semester)] == [
        "learning.absences",
        "learning.low_achievement",
    ]
    assert rows[1].signs(semester)[0][1] == "21 unexcused lessons in semester 2019-2020-1"
    assert rows[2].signs(semester) == [
        (
            "learning.low_achievement",
            "marks of 3 or less or nv in semester 2019-2020-1: Latviešu valoda nv",
        )
    ]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (f"{GOOD},0,11,5", "mark 11 in Matemātika is not 1-10 or nv"),
        (f"{GOOD},0,0,5", "mark 0 in Matemātika is not 1-10 or nv"),
        (f"{GOOD},0,labi,5", "mark in Matemātika is not 1-10 or nv"),
        ("150607-20416,Ģirts,Žūriņš,13,2007-06-15,M,0,5,5", "grade 13 is outside"),
        ("150607-20416,Ģirts,Žūriņš,septītā,2007-06-15,M,0,5,5", "grade must be a whole number"),
        ("150607-2041,Ģirts,Žūriņš,7,2007-06-15,M,0,5,5", "personal code must be"),
        ("150607-20416,Ģirts,Žūriņš,7,2007-06-16,M,0,5,5", "does not agree with the birth date"),
        ("310207-20417,Ģirts,Žūriņš,7,2007-02-28,M,0,5,5", "not a real date"),
        ("150607-20416,Ģirts,Žūriņš,7,15/06/2007,M,0,5,5", "birth date must be a real date"),
        ("320000-00009,Ģirts,Žūriņš,7,2099-01-01,M,0,5,5", "birth date must be between 1900-01-01"),
        ("320000-00009,Ģirts,Žūriņš,7,31.12.1899,M,0,5,5", "birth date must be between 1900-01-01"),
        ("150607-20416,,Žūriņš,7,2007-06-15,M,0,5,5", "a name of 1 to 100 characters"),
        ("150607-20416,Ģirts,Žūriņš,7,2007-06-15,X,0,5,5", "gender must be F or M"),
        ("150607-20416,Ģirts,Žūriņš,7,2007-06-15,M,-1,5,5", "unexcused lessons must be"),
        ("150607-20416,Ģirts,Žūriņš,7,2007-06-15,M,0,5", "expected 9 fields, found 8"),
    ],
)
def test_a_bad_row_is_reported_with_its_line_and_reason(row: str, reason: str) -> None:
    parsed = parse_journal(journal("010308-20005,Anna,Liepa,7,2008-03-01,F,0,5,5", row), SCHOOL)
    assert [r.line for r in parsed.rows] == [2]
    assert len(parsed.errors) == 1
    line, message = parsed.errors[0]
    assert line == 3
    assert reason in message
    assert "150607" not in message and "Ģirts" not in message


def test_the_same_personal_code_twice_keeps_the_first() -> None:
    parsed = parse_journal(journal(f"{GOOD},0,5,5", "", f"{GOOD},30,5,5"), SCHOOL)
    assert [r.unexcused_lessons for r in parsed.rows] == [0]
    assert parsed.errors == [(4, "the same personal code is already on line 2")]
    assert parsed.row_count == 2  # the blank line is no row


def test_semicolons_a_bom_latvian_dates_and_any_column_order_are_read() -> None:
    header = (
        "Matemātika;GENDER;personal_code;given_name;family_name;grade;birth_date;unexcused_lessons"
    )
    raw = "\ufeff" + header + "\r\n" + "2;f;15060720416;Līga;Ūdre;7;15.06.2007;22\r\n"
    row = parse_journal(raw.encode(), SCHOOL).rows[0]
    assert (row.personal.personal_code, row.gender, row.personal.birth_date) == (
        "150607-20416",
        "F",
        date(2007, 6, 15),
    )
    assert (row.marks, row.unexcused_lessons) == ({"Matemātika": 2}, 22)


@pytest.mark.parametrize(
    "raw",
    [
        (HEADER + "\n150607-20416,Ģirts,Žūriņš,7,2007-06-15,M,0\n").encode("cp1257"),
        (HEADER + "\n150607-20416,Ģirts,Žūriņš,7,2007-06-15,M,0\n").encode("utf-16"),
        (HEADER + "\n150607-20416,Girts,Zurins,7,2007-06-15,M,0\n").encode("utf-16-le"),
    ],
)
def test_a_file_that_is_not_utf_8_is_refused_whole(raw: bytes) -> None:
    with pytest.raises(JournalEncodingError):
        parse_journal(raw, SCHOOL)


@pytest.mark.parametrize(
    "header",
    [
        "personal_code,given_name,family_name,grade,birth_date,gender",
        "personas_kods,vards,uzvards,klase,dzimsanas_datums,dzimums,kavejumi",
        HEADER + ",Matemātika,matemātika",
        HEADER + ",,Fizika",
    ],
)
def test_wrong_columns_are_refused_whole(header: str) -> None:
    with pytest.raises(JournalFormatError) as raised:
        parse_journal(journal(f"{GOOD},0", header=header), SCHOOL)
    assert raised.value.details["expected"][0] == "personal_code"


@pytest.mark.parametrize("raw", [b"", b"\n\n", "\ufeff".encode()])
def test_an_empty_file_is_refused(raw: bytes) -> None:
    with pytest.raises(JournalFormatError, match="empty"):
        parse_journal(raw, SCHOOL)


def test_semesters() -> None:
    first = Semester.parse("2019-2020-1")
    assert (first.start, first.end) == (date(2019, 9, 1), date(2019, 12, 31))
    second = Semester.parse("2019-2020-2")
    assert (second.start, second.end) == (date(2020, 1, 1), date(2020, 6, 30))
    assert second.observed_on(date(2024, 1, 1)) == date(2020, 6, 30)
    assert second.observed_on(date(2020, 3, 3)) == date(2020, 3, 3)
    with pytest.raises(InvalidSemesterError, match="not begun"):
        second.observed_on(date(2019, 12, 31))
    for bad in ("2019-2021-1", "2019-2020-3", "2019/2020/1", "1"):
        with pytest.raises(InvalidSemesterError):
            Semester.parse(bad)
