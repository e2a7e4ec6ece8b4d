"""Importing a journal through the application: registration, signs, idempotency, batches."""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID

import pytest

from services.identification import importer
from services.identification.application import IdentificationApplication
from services.identification.journal import JournalFormatError

SCHOOL = "daugavpils-10-vsk"
HEADER = "personal_code,given_name,family_name,grade,birth_date,gender,unexcused_lessons,Fizika"
ROWS = [
    "150607-20416,Ģirts,Žūriņš,7,2007-06-15,M,25,5",  # absences
    "010308-20005,Anna,Ķēniņa,7,2008-03-01,F,0,nv",  # low achievement
    "320000-00001,Līga,Čakste,8,2007-01-01,F,30,2",  # both
    "320000-00002,Ēvalds,Ļaviņš,9,2006-01-01,M,2,9",  # none
    "320000-00003,Ūna,Ņikitina,14,2006-01-01,F,2,9",  # bad grade
]
LEFT_SCHOOL = (
    "the pupil has left school; no signs were recorded "
    "(register the pupil to enrol them here again)"
)


def csv(*rows: str) -> bytes:
    return "\n".join([HEADER, *rows]).encode("utf-8")


@pytest.fixture
def app(identification_app: IdentificationApplication) -> IdentificationApplication:
    return identification_app


def run(app: IdentificationApplication, raw: bytes, semester: str = "2019-2020-1") -> Any:
    return app.import_journal(school_id=SCHOOL, semester=semester, raw=raw, by="teacher-1")


def names(app: IdentificationApplication) -> dict[str, tuple[str, str]]:
    views = [
        app.read_pupil(app.get_pupil(UUID(row["pupil_id"])), reader="t", role="teacher")
        for row in app.list_pupils(None, {}, 100, None)
    ]
    return {v["personal_code"]: (v["given_name"], v["family_name"]) for v in views}


def test_a_journal_registers_pupils_and_records_their_signs(app: IdentificationApplication) -> None:
    report = run(app, csv(*ROWS))
    assert (report.rows, report.imported, report.registered, report.signs_recorded) == (5, 4, 4, 4)
    assert report.errors == [{"line": 6, "reason": "grade 14 is outside this school's grades 1-12"}]
    assert names(app)["010308-20005"] == ("Anna", "Ķēniņa")
    assert names(app)["320000-00002"] == ("Ēvalds", "Ļaviņš")
    at_risk = app.list_pupils([SCHOOL], {"at_risk": True}, 100, None)
    assert len(at_risk) == 3
    view = app.read_pupil(app.get_pupil(UUID(at_risk[0]["pupil_id"])), reader="t", role="teacher")
    assert {s["source"] for s in view["risk_signs"]} == {"journal"}
    assert {s["observed_on"] for s in view["risk_signs"]} == {date(2019, 12, 31)}


def test_a_row_with_an_impossible_birth_date_is_reported_and_the_others_imported(
    app: IdentificationApplication,
) -> None:
    future = "320000-00005,Jānis,Bērziņš,8,2099-01-01,M,25,2"
    ancient = "320000-00006,Inese,Kalniņa,8,01.01.0001,F,25,2"
    report = run(app, csv(*ROWS[:2], future, *ROWS[2:4], ancient))
    assert (report.rows, report.imported, report.registered, report.signs_recorded) == (6, 4, 4, 4)
    assert [error["line"] for error in report.errors] == [4, 7]
    for error in report.errors:
        assert error["reason"].startswith("the birth date must be between 1900-01-01 and today")
        assert "2099" not in error["reason"] and "0001" not in error["reason"]
    assert set(names(app)) == {"150607-20416", "010308-20005", "320000-00001", "320000-00002"}


def test_importing_the_same_file_again_changes_nothing(app: IdentificationApplication) -> None:
    first = run(app, csv(*ROWS))
    head = app.head()
    again = run(app, csv(*ROWS))
    assert app.head() == head
    assert (again.imported, again.registered, again.signs_recorded) == (4, 0, 0)
    assert again.errors == first.errors


def test_a_resolved_journal_sign_is_not_brought_back_by_a_re_import(
    app: IdentificationApplication,
) -> None:
    run(app, csv(ROWS[0]))
    pupil_id = UUID(app.list_pupils(None, {}, 1, None)[0]["pupil_id"])
    app.resolve_risk_sign(
        pupil_id, "learning.absences", reason="excused after all", expected_version=3, by="t"
    )
    head = app.head()
    assert run(app, csv(ROWS[0])).signs_recorded == 0
    assert app.head() == head
    # The next semester's journal is new evidence.
    assert run(app, csv(ROWS[0]), semester="2019-2020-2").signs_recorded == 1


def test_a_known_pupil_gets_only_the_signs_it_lacks(app: IdentificationApplication) -> None:
    run(app, csv("150607-20416,Ģirts,Žūriņš,7,2007-06-15,M,25,5"))
    report = run(app, csv("150607-20416,Ģirts,Žūriņš,7,2007-06-15,M,25,1"))
    assert (report.registered, report.signs_recorded) == (0, 1)
    pupil = app.get_pupil(UUID(app.list_pupils(None, {}, 1, None)[0]["pupil_id"]))
    assert [s["code"] for s in pupil.risk_signs] == [
        "learning.absences",
        "learning.low_achievement",
    ]


def test_pupils_of_another_school_or_departed_are_reported_not_changed(
    app: IdentificationApplication,
) -> None:
    other = app.register_pupil(
        school_id="daugavpils-12-vsk",
        grade=7,
        gender="M",
        given_name="Ģirts",
        family_name="Žūriņš",
        personal_code="150607-20416",
        birth_date=date(2007, 6, 15),
        by="t",
    )
    run(app, csv(ROWS[1]))
    departed = UUID(app.list_pupils([SCHOOL], {}, 1, None)[0]["pupil_id"])
    app.record_departure(
        departed, reason="moved_abroad", on=date(2019, 11, 1), expected_version=3, by="t"
    )
    head = app.head()
    report = run(app, csv(ROWS[0], ROWS[1]))
    assert report.errors == [
        {"line": 2, "reason": "this personal code is registered at another school"},
        {"line": 3, "reason": LEFT_SCHOOL},
    ]
    assert (report.imported, app.head(), app.get_pupil(other.id).version) == (0, head, 1)


def transferred_here(app: IdentificationApplication, code: str) -> Any:
    """A pupil of daugavpils-12-vsk, born 2007-01-01, who left for SCHOOL."""
    moving = app.register_pupil(
        school_id="daugavpils-12-vsk",
        grade=6,
        gender="F",
        given_name="Līga",
        family_name="Čakste",
        personal_code=code,
        birth_date=date(2007, 1, 1),
        by="t",
    )
    app.record_departure(
        moving.id,
        reason="transferred",
        on=date(2019, 11, 1),
        to_school_id=SCHOOL,
        expected_version=1,
        by="d",
    )
    return moving


def test_a_pupil_transferred_here_is_enrolled_by_the_journal_row(
    app: IdentificationApplication,
) -> None:
    """The departure named this school: its journal takes the pupil in (same pupil, the
    row's grade), and the row's signs are recorded here."""
    code = "320000-00031"
    moving = transferred_here(app, code)
    report = run(app, csv(f"{code},Līga,Čakste,7,2007-01-01,F,30,5"))
    assert (report.registered, report.signs_recorded, report.errors) == (1, 1, [])
    pupil = app.get_pupil(moving.id)
    assert (pupil.school_id, pupil.grade, pupil.status, pupil.at_risk) == (
        SCHOOL,
        7,
        "enrolled",
        True,
    )
    assert [p["pupil_id"] for p in app.list_pupils([SCHOOL], {}, 10, None)] == [str(moving.id)]
    # Imported again: nothing more.
    head = app.head()
    assert run(app, csv(f"{code},Līga,Čakste,7,2007-01-01,F,30,5")).registered == 0
    assert app.head() == head


def test_a_transferred_pupils_row_with_another_birth_date_is_reported(
    app: IdentificationApplication,
) -> None:
    code = "320000-00032"
    moving = transferred_here(app, code)
    head = app.head()
    report = run(app, csv(f"{code},Līga,Čakste,7,2007-02-01,F,30,5"))
    assert report.errors == [
        {"line": 2, "reason": "the birth date differs from the registered pupil's"}
    ]
    assert (report.registered, app.head(), app.get_pupil(moving.id).status) == (
        0,
        head,
        "departed",
    )


def test_an_erased_pupils_code_registers_a_new_pupil(app: IdentificationApplication) -> None:
    run(app, csv(ROWS[3]))
    erased = UUID(app.list_pupils(None, {}, 1, None)[0]["pupil_id"])
    app.erase_pupil(erased, by="dpo")
    assert run(app, csv(ROWS[3])).registered == 1
    assert len(app.list_pupils(None, {}, 10, None)) == 2


def test_rows_are_saved_in_batches(app: IdentificationApplication, monkeypatch: Any) -> None:
    monkeypatch.setattr(importer, "BATCH_ROWS", 3)
    rows = [f"3200{i:02d}-00000,Vārds,Uzvārds,5,2010-01-01,F,{i},7" for i in range(10, 40)]
    saves: list[int] = []
    save = app.save_pupils

    def counted(pupils: Any, notes: Any = ()) -> Any:
        saves.append(len(pupils))
        return save(pupils, notes)

    monkeypatch.setattr(app, "save_pupils", counted)
    report = run(app, csv(*rows))
    assert (report.registered, report.signs_recorded) == (30, 19)  # 21..39 unexcused
    assert saves == [3] * 10


def test_a_batch_that_meets_a_concurrent_registration_is_redone(
    app: IdentificationApplication, monkeypatch: Any
) -> None:
    save = app.save_pupils
    calls = []

    def teacher_registers_first(pupils: Any, new: Any = ()) -> None:
        calls.append(len(pupils))
        if len(calls) == 1:  # meanwhile a teacher registers one of the file's pupils by hand
            app.register_pupil(
                school_id=SCHOOL,
                grade=7,
                gender="F",
                given_name="Anna",
                family_name="Ķēniņa",
                personal_code="010308-20005",
                birth_date=date(2008, 3, 1),
                by="teacher-2",
            )
        save(pupils, new)

    monkeypatch.setattr(app, "save_pupils", teacher_registers_first)
    report = run(app, csv(*ROWS[:4]))
    # The first attempt collided (the hand registration came between); the second found her.
    assert calls == [4, 1, 4]
    assert (report.imported, report.registered, report.signs_recorded) == (4, 3, 4)
    assert len(app.list_pupils(None, {}, 100, None)) == 4


def test_a_file_with_wrong_columns_imports_nothing(app: IdentificationApplication) -> None:
    with pytest.raises(JournalFormatError):
        run(app, b"personal_code;vards\n150607-20416;x\n")
    assert app.head() == 0
