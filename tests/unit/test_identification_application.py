"""Identification's application on a real SQLite file: pupils, signs, tenancy data, erasure."""

from __future__ import annotations

import sqlite3
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from marshmallow import ValidationError

from services.identification import domain
from services.identification.application import (
    IdentificationApplication,
    PersonalCodeTakenError,
    SchoolAlreadyRegisteredError,
    UnknownSchoolError,
)
from services.identification.domain import GradeOutOfRangeError, PupilErasedError
from services.identification.personal_code import InvalidPersonalCodeError
from services.identification.schemas import AgeEnquiriesSchema
from shared.errors import InvalidInputError, http_status
from shared.outbox import read_envelopes
from tests.pupils import BORN, CODE, FAMILY, GIVEN, SCHOOL, register


@pytest.fixture
def app(identification_app: IdentificationApplication) -> IdentificationApplication:
    return identification_app


@pytest.fixture
def today(monkeypatch: pytest.MonkeyPatch) -> date:
    """Identification's today, fixed in the demo's school year."""
    fixed = date(2020, 3, 2)
    monkeypatch.setattr(domain, "today", lambda: fixed)
    return fixed


def database_bytes(tmp_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in tmp_path.glob("identification.sqlite*"))


def test_a_registered_pupil_reads_back_in_full(app: IdentificationApplication) -> None:
    pupil = register(app)
    view = app.read_pupil(app.get_pupil(pupil.id), reader="teacher-1", role="teacher")
    assert (view["given_name"], view["family_name"], view["personal_code"]) == (GIVEN, FAMILY, CODE)
    assert view["birth_date"] == BORN
    assert (view["status"], view["erased"], view["at_risk"], view["version"]) == (
        "enrolled",
        False,
        False,
        1,
    )


def test_personal_data_is_nowhere_in_the_database_in_the_clear(
    app: IdentificationApplication, tmp_path: Path
) -> None:
    pupil = register(app)
    app.record_risk_sign(
        pupil.id,
        code="family.crisis",
        observed_on=date(2019, 10, 1),
        evidence=f"{GIVEN}'s parents are divorcing",
        expected_version=1,
        by="teacher-1",
    )
    raw = database_bytes(tmp_path)
    for secret in (GIVEN, FAMILY, CODE, CODE.replace("-", ""), "divorcing"):
        assert secret.encode() not in raw
        assert secret.encode("utf-16-le") not in raw


def test_a_known_personal_code_is_refused_naming_the_pupil(app: IdentificationApplication) -> None:
    first = register(app)
    head = app.head()
    with pytest.raises(PersonalCodeTakenError) as raised:
        register(
            app,
            personal_code=CODE.replace("-", ""),
            given_name="Other",
            school_id="daugavpils-12-vsk",
        )
    assert raised.value.details == {"pupil_id": str(first.id)}
    assert CODE not in raised.value.message
    assert app.head() == head
    assert len(app.list_pupils(None, {}, 100, None)) == 1


def transferred(app: IdentificationApplication, **overrides: Any) -> Any:
    """A pupil at risk at SCHOOL who left for daugavpils-12-vsk."""
    pupil = register(app, **overrides)
    app.record_risk_sign(
        pupil.id,
        code="family.crisis",
        observed_on=date(2019, 10, 1),
        evidence="parents divorcing",
        expected_version=1,
        by="teacher-1",
    )
    app.record_departure(
        pupil.id,
        reason="transferred",
        on=date(2019, 11, 4),
        to_school_id="daugavpils-12-vsk",
        expected_version=3,
        by="director-1",
    )
    return pupil


def test_the_school_a_pupil_moved_to_registers_the_same_pupil_again(
    app: IdentificationApplication,
) -> None:
    pupil = transferred(app)
    head = app.head()
    again = register(app, school_id="daugavpils-12-vsk", grade=8, given_name="Kārlis")
    assert again.id == pupil.id
    view = app.read_pupil(app.get_pupil(pupil.id), reader="teacher-2", role="teacher")
    assert (view["school_id"], view["grade"], view["given_name"]) == (
        "daugavpils-12-vsk",
        8,
        "Kārlis",
    )
    # The new school starts afresh: the old school's signs and their evidence are not its.
    assert (view["status"], view["at_risk"], view["risk_signs"]) == ("enrolled", False, [])
    assert [(e.event_type, e.payload) for e in read_envelopes(app, head, 10)] == [
        ("pupil_re_enrolled", {"school_id": "daugavpils-12-vsk", "grade": 8, "gender": "M"})
    ]
    assert app.list_pupils([SCHOOL], {}, 10, None) == []
    listed = app.list_pupils(["daugavpils-12-vsk"], {}, 10, None)
    assert [(p["pupil_id"], p["status"], p["grade"]) for p in listed] == [
        (str(pupil.id), "enrolled", 8)
    ]


def test_a_departed_pupils_code_with_another_birth_date_is_refused(
    app: IdentificationApplication,
) -> None:
    """A mistyped personal code that happens to be a departed pupil's takes nobody over
    (a code of the new form tells no birth date)."""
    code = "320000-00011"
    pupil = transferred(app, personal_code=code)
    head = app.head()
    with pytest.raises(PersonalCodeTakenError) as raised:
        register(
            app, personal_code=code, school_id="daugavpils-12-vsk", birth_date=date(2008, 1, 2)
        )
    assert raised.value.details == {"pupil_id": str(pupil.id)}
    assert app.head() == head
    assert app.get_pupil(pupil.id).status == "departed"


def test_erasure_after_a_return_leaves_no_evidence_of_either_enrolment(
    app: IdentificationApplication,
) -> None:
    pupil = transferred(app)
    register(app, school_id="daugavpils-12-vsk")
    app.record_risk_sign(
        pupil.id,
        code="learning.absences",
        observed_on=date(2019, 12, 2),
        evidence="absent for weeks",
        expected_version=5,
        by="teacher-2",
    )
    erased = app.erase_pupil(pupil.id, by="dpo")
    assert [s["evidence"] for s in [*erased.former_signs, *erased.risk_signs]] == [None, None]
    # Its code is free again: registering it makes a new pupil.
    assert register(app, school_id="daugavpils-12-vsk").id != pupil.id


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"school_id": "nowhere-psk"}, UnknownSchoolError),
        ({"school_id": "daugavpils-11-psk", "grade": 10}, GradeOutOfRangeError),
        ({"birth_date": date(2007, 6, 16)}, InvalidPersonalCodeError),
        (
            {"personal_code": "310607-20417", "birth_date": date(2007, 6, 30)},
            InvalidPersonalCodeError,
        ),
    ],
)
def test_invalid_registrations_store_nothing(
    app: IdentificationApplication, overrides: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        register(app, **overrides)
    assert app.head() == 0


def refused(raised: pytest.ExceptionInfo[InvalidInputError], field: str) -> str:
    """The message of a refusal as the API answers it: 400, naming only ``field``."""
    assert http_status(raised.value) == 400
    assert list(raised.value.details["fields"]) == [field]
    return raised.value.message


@pytest.mark.parametrize("born", [date(2099, 1, 1), date(1, 1, 1), date(1899, 12, 31)])
def test_an_impossible_birth_date_is_refused_and_nothing_stored(
    app: IdentificationApplication, born: date
) -> None:
    with pytest.raises(InvalidInputError) as raised:
        register(app, personal_code="320000-00009", birth_date=born)
    message = refused(raised, "birth_date")
    assert "birth date" in message
    for personal in (born.isoformat(), GIVEN, FAMILY, "320000-00009"):
        assert personal not in message
    assert app.head() == 0


def test_a_risk_sign_observed_after_today_is_refused_and_nothing_stored(
    app: IdentificationApplication,
) -> None:
    pupil = register(app)
    with pytest.raises(InvalidInputError) as raised:
        app.record_risk_sign(
            pupil.id,
            code="learning.absences",
            observed_on=date(2099, 10, 1),
            evidence="25 lessons",
            expected_version=1,
            by="t",
        )
    assert "after today" in refused(raised, "observed_on")
    assert app.head() == 1
    assert app.list_pupils(None, {"at_risk": True}, 10, None) == []


def test_a_departure_after_today_is_refused_and_the_pupil_stays_enrolled(
    app: IdentificationApplication,
) -> None:
    pupil = register(app)
    with pytest.raises(InvalidInputError) as raised:
        app.record_departure(
            pupil.id, reason="dropped_out", on=date(2099, 1, 31), expected_version=1, by="d"
        )
    assert "after today" in refused(raised, "on")
    assert app.head() == 1
    assert app.list_pupils(None, {"status": "enrolled"}, 10, None)[0]["pupil_id"] == str(pupil.id)


def test_the_day_after_today_or_a_mistyped_year_is_refused(
    app: IdentificationApplication, today: date
) -> None:
    tomorrow = today + timedelta(days=1)
    with pytest.raises(InvalidInputError) as raised:
        register(app, personal_code="320000-00009", birth_date=tomorrow)
    assert refused(raised, "birth_date") == (
        "the birth date must be between 1900-01-01 and today (2020-03-02)"
    )
    pupil = register(app)
    with pytest.raises(InvalidInputError) as raised:
        app.record_risk_sign(
            pupil.id,
            code="learning.gaps",
            observed_on=tomorrow,
            evidence="missed grade 6",
            expected_version=1,
            by="t",
        )
    assert refused(raised, "observed_on") == (
        "a risk sign's observation cannot be dated after today (2020-03-02)"
    )
    for typo in (tomorrow, date(2029, 1, 31)):  # 2029 for 2019
        with pytest.raises(InvalidInputError) as raised:
            app.record_departure(
                pupil.id, reason="dropped_out", on=typo, expected_version=1, by="d"
            )
        assert refused(raised, "on") == "a departure cannot be dated after today (2020-03-02)"
    assert app.head() == 1
    assert app.get_pupil(pupil.id).status == "enrolled"


def test_today_and_a_birth_date_of_1900_are_accepted(
    app: IdentificationApplication, today: date
) -> None:
    register(app, personal_code="320000-00008", birth_date=date(1900, 1, 1), grade=12)
    register(app, personal_code="320000-00009", birth_date=today, grade=1)
    pupil = register(app)
    app.record_risk_sign(
        pupil.id,
        code="learning.gaps",
        observed_on=today,
        evidence="missed grade 6",
        expected_version=1,
        by="t",
    )
    app.record_departure(pupil.id, reason="dropped_out", on=today, expected_version=3, by="d")
    view = app.read_pupil(app.get_pupil(pupil.id), reader="d", role="director")
    assert view["risk_signs"][0]["observed_on"] == today
    assert view["departure"]["on"] == today
    assert len(app.list_pupils(None, {}, 10, None)) == 3


def test_signs_flag_and_clear_the_pupil_in_the_list(app: IdentificationApplication) -> None:
    pupil = register(app)
    other = register(app, personal_code="321111-11111", school_id="daugavpils-12-vsk")
    app.record_risk_sign(
        pupil.id,
        code="learning.absences",
        observed_on=date(2019, 10, 1),
        evidence="25 lessons",
        expected_version=1,
        by="t",
    )
    at_risk = app.list_pupils([SCHOOL], {"at_risk": True}, 100, None)
    assert [(p["pupil_id"], p["version"]) for p in at_risk] == [(str(pupil.id), 3)]
    assert app.list_pupils(None, {"at_risk": False}, 100, None)[0]["pupil_id"] == str(other.id)
    app.resolve_risk_sign(
        pupil.id, "learning.absences", reason="attends again", expected_version=3, by="d"
    )
    assert app.list_pupils([SCHOOL], {"at_risk": True}, 100, None) == []
    view = app.read_pupil(app.get_pupil(pupil.id), reader="d", role="director")
    assert view["risk_signs"][0]["reason"] == "attends again"
    assert view["risk_signs"][0]["active"] is False


def test_lists_page_by_pupil_id(app: IdentificationApplication) -> None:
    ids = sorted(str(register(app, personal_code=f"32000{i}-00000").id) for i in range(5))
    first = app.list_pupils(None, {}, 2, None)
    second = app.list_pupils(None, {}, 2, first[-1]["pupil_id"])
    rest = app.list_pupils(None, {}, 2, second[-1]["pupil_id"])
    assert [p["pupil_id"] for p in first + second + rest] == ids


def test_a_transfer_names_a_known_school(app: IdentificationApplication) -> None:
    pupil = register(app)
    with pytest.raises(UnknownSchoolError):
        app.record_departure(
            pupil.id,
            reason="transferred",
            on=date(2020, 1, 6),
            to_school_id="x",
            expected_version=1,
            by="d",
        )
    app.record_departure(
        pupil.id,
        reason="transferred",
        on=date(2020, 1, 6),
        to_school_id="daugavpils-12-vsk",
        expected_version=1,
        by="d",
    )
    assert app.list_pupils(None, {"status": "departed"}, 10, None)[0]["pupil_id"] == str(pupil.id)


def test_erasure_destroys_the_key_and_the_code_index(
    app: IdentificationApplication, tmp_path: Path
) -> None:
    pupil = register(app)
    app.record_risk_sign(
        pupil.id,
        code="learning.gaps",
        observed_on=date(2019, 10, 1),
        evidence="missed grade 6",
        expected_version=1,
        by="t",
    )
    wrapped = app.vault.wrapped_key(app.query, pupil.id)
    digest = app.keyring.code_digest(CODE)
    assert wrapped is not None
    assert wrapped.encode() in database_bytes(tmp_path)  # what the scan below must not find
    assert digest.encode() in database_bytes(tmp_path)
    app.erase_pupil(pupil.id, by="dpo-1")

    view = app.read_pupil(app.get_pupil(pupil.id), reader="t", role="teacher")
    assert (view["given_name"], view["family_name"], view["personal_code"], view["birth_date"]) == (
        None,
        None,
        None,
        None,
    )
    assert view["erased"] is True
    assert view["risk_signs"][0]["code"] == "learning.gaps"
    assert view["risk_signs"][0]["evidence"] is None
    assert app.vault.wrapped_key(app.query, pupil.id) is None
    assert app.vault.pupils_by_digest(app.query, [digest]) == {}
    raw = database_bytes(tmp_path)
    assert wrapped.encode() not in raw
    assert digest.encode() not in raw
    assert app.list_pupils(None, {}, 10, None)[0]["erased"] is True
    with pytest.raises(PupilErasedError):
        app.record_risk_sign(
            pupil.id,
            code="learning.behaviour",
            observed_on=date(2019, 11, 1),
            evidence="x",
            expected_version=4,
            by="t",
        )
    with pytest.raises(PupilErasedError):
        app.erase_pupil(pupil.id, by="dpo-1")
    # The code is free again: whoever registers it now is a new, unlinked pupil.
    assert register(app).id != pupil.id


def test_erasure_forgets_kept_answers_naming_the_pupil(app: IdentificationApplication) -> None:
    pupil = register(app)
    store = app.idempotency
    key_hash = store.key_hash("teacher-1", "POST /pupils", "k1")
    request_hash = store.request_hash(f'{{"personal_code": "{CODE}"}}'.encode())
    store.keep(key_hash, request_hash, 201, f'{{"pupil_id":"{pupil.id}","version":1}}'.encode())
    assert store.find(key_hash, request_hash) is not None
    app.erase_pupil(pupil.id, by="dpo-1")
    assert store.find(key_hash, request_hash) is None


def test_every_read_of_personal_data_is_recorded(app: IdentificationApplication) -> None:
    pupil = register(app)
    app.read_pupil(app.get_pupil(pupil.id), reader="teacher-1", role="teacher")
    app.read_pupil(app.get_pupil(pupil.id), reader="coordinator-9", role="municipal_coordinator")
    reads = app.reads_of(pupil.id)
    assert [(r["by"], r["role"]) for r in reads] == [
        ("teacher-1", "teacher"),
        ("coordinator-9", "municipal_coordinator"),
    ]
    assert all(r["at"].endswith("+00:00") for r in reads)
    assert app.get_pupil(pupil.id).version == 1  # reading changes no version


def test_the_record_of_reads_cannot_be_rewritten(
    app: IdentificationApplication, tmp_path: Path
) -> None:
    pupil = register(app)
    app.read_pupil(app.get_pupil(pupil.id), reader="teacher-1", role="teacher")
    with sqlite3.connect(tmp_path / "identification.sqlite") as connection:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            connection.execute("DELETE FROM identification_personal_data_reads")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            connection.execute("UPDATE identification_personal_data_reads SET reader = 'x'")
    assert len(app.reads_of(pupil.id)) == 1


def test_a_registered_school_joins_the_directory_once(app: IdentificationApplication) -> None:
    fields = {
        "school_id": "daugavpils-tehnikums",
        "name": "Daugavpils Būvniecības tehnikums",
        "municipality": "daugavpils",
        "kind": "vocational",
        "owner": "state",
        "grade_from": 1,
        "grade_to": 4,
    }
    app.register_school(**fields, by="national-1")
    assert [s.school_id for s in app.all_schools()][-1] == "daugavpils-tehnikums"
    assert len(app.all_schools()) == 9
    with pytest.raises(SchoolAlreadyRegisteredError):
        app.register_school(**fields, by="national-1")
    with pytest.raises(SchoolAlreadyRegisteredError):
        app.register_school(**{**fields, "school_id": SCHOOL}, by="national-1")
    with pytest.raises(GradeOutOfRangeError, match="course 5"):
        register(app, school_id="daugavpils-tehnikums", grade=5)
    register(app, school_id="daugavpils-tehnikums", grade=4)
    envelope = read_envelopes(app, 0, 1)[0]
    assert (envelope.event_type, envelope.payload) == (
        "school_registered",
        {**fields, "grade_from": 1, "grade_to": 4},
    )


def test_every_stored_event_maps_to_a_contract_without_personal_data(
    app: IdentificationApplication,
) -> None:
    pupil = register(app)
    app.record_risk_sign(
        pupil.id,
        code="learning.absences",
        observed_on=date(2019, 10, 1),
        evidence=f"{GIVEN} skipped 25 lessons",
        expected_version=1,
        by="t",
    )
    app.resolve_risk_sign(
        pupil.id, "learning.absences", reason=f"{GIVEN} is back", expected_version=3, by="t"
    )
    app.record_departure(
        pupil.id, reason="graduated", on=date(2020, 6, 1), expected_version=5, by="d"
    )
    app.erase_pupil(pupil.id, by="dpo")
    envelopes = read_envelopes(app, 0, 100)
    assert [(e.event_type, e.payload) for e in envelopes] == [
        ("pupil_registered", {"school_id": SCHOOL, "grade": 7, "gender": "M"}),
        (
            "risk_sign_recorded",
            {"code": "learning.absences", "observed_on": "2019-10-01", "source": "assessment"},
        ),
        ("pupil_flagged_at_risk", {"school_id": SCHOOL}),
        ("risk_sign_resolved", {"code": "learning.absences"}),
        ("pupil_risk_cleared", {"school_id": SCHOOL}),
        ("pupil_departed", {"reason": "graduated", "on": "2020-06-01", "to_school_id": None}),
        ("pupil_erased", {}),
    ]
    assert [e.actor for e in envelopes][-1] == "dpo"
    assert {e.aggregate_id for e in envelopes} == {str(pupil.id)}


# -- reporting's age enquiry --------------------------------------------------------------


def ask(app: IdentificationApplication, *enquiries: tuple[Any, date]) -> list[str]:
    asked = [{"pupil_id": pupil_id, "on": on} for pupil_id, on in enquiries]
    answers = app.age_bands(asked, reader="reporting", purpose="esf_age_band")
    assert [(a["pupil_id"], a["on"]) for a in answers] == [(str(p), on) for p, on in enquiries]
    assert all(set(a) == {"pupil_id", "on", "band"} for a in answers)  # never the birth date
    return [a["band"] for a in answers]


def test_the_age_band_is_the_pupils_age_on_the_day_asked(app: IdentificationApplication) -> None:
    adult = register(app, personal_code="140300-20000", birth_date=date(2000, 3, 14), grade=12)
    assert ask(
        app,
        (adult.id, date(2025, 3, 13)),  # the day before the 25th birthday
        (adult.id, date(2025, 3, 14)),  # the birthday
        (adult.id, date(2019, 10, 1)),
    ) == ["below_25", "25_or_over", "below_25"]
    reads = app.reads_of(adult.id)
    assert [(r["by"], r["role"], r["purpose"]) for r in reads] == [
        ("reporting", "service", "esf_age_band")
    ] * 3  # one record per pupil asked, naming who asked and why
    assert app.get_pupil(adult.id).version == 1


def test_an_erased_or_unknown_pupil_has_no_age_band(app: IdentificationApplication) -> None:
    pupil = register(app)
    erased = register(app, personal_code="321234-56789")
    app.erase_pupil(erased.id, by="dpo")
    nobody = uuid4()
    assert ask(
        app,
        (pupil.id, date(2019, 10, 1)),
        (erased.id, date(2019, 10, 1)),
        (nobody, date(2019, 10, 1)),
    ) == [
        "below_25",
        "unknown",
        "unknown",
    ]
    assert app.reads_of(erased.id) == [] and app.reads_of(nobody) == []  # nothing was read
    assert len(app.reads_of(pupil.id)) == 1


def test_a_pupil_is_of_age_from_the_18th_birthday_and_the_read_is_recorded(
    app: IdentificationApplication,
) -> None:
    pupil = register(app, personal_code="320000-00021", birth_date=date(2001, 3, 14), grade=12)
    erased = register(app, personal_code="321234-56789")
    app.erase_pupil(erased.id, by="dpo")

    def adult(pupil_id: Any, day: date) -> bool | None:
        return app.adult_on(pupil_id, day, reader="planning", purpose="consent_signer_age")

    assert [adult(pupil.id, date(2019, 3, d)) for d in (13, 14)] == [False, True]
    assert (adult(erased.id, date(2019, 3, 14)), adult(uuid4(), date(2019, 3, 14))) == (None, None)
    reads = app.reads_of(pupil.id)
    assert [(r["by"], r["role"], r["purpose"]) for r in reads] == [
        ("planning", "service", "consent_signer_age")
    ] * 2
    assert app.reads_of(erased.id) == []


@pytest.mark.parametrize(
    ("enquiries", "field"),
    [
        ([], "enquiries"),
        ([{"pupil_id": "p001", "on": "2019-10-01"}], "pupil_id"),
        ([{"pupil_id": str(uuid4()), "on": "01.10.2019"}], "on"),
        ([{"pupil_id": str(uuid4()), "on": "2019-10-01"}] * 201, "enquiries"),
    ],
)
def test_an_age_enquiry_out_of_shape_or_too_large_is_refused(
    enquiries: list[dict[str, str]], field: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        AgeEnquiriesSchema().load({"enquiries": enquiries})
    errors = refused.value.messages["enquiries"]  # type: ignore[call-overload]
    # the list itself (empty, too long), or the field of the first enquiry
    assert isinstance(errors, list) if field == "enquiries" else field in errors[0]
