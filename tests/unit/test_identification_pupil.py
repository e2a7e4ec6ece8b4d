"""The pupil aggregate: registration, risk signs and the at-risk flag."""

from __future__ import annotations

from datetime import date

import pytest

from services.identification.domain import (
    Pupil,
    RiskSignAlreadyActiveError,
    UnknownRiskCodeError,
)
from shared.errors import StaleVersionError


def new_pupil() -> Pupil:
    return Pupil(
        school_id="daugavpils-10-vsk", grade=7, gender="F", birth_date=date(2008, 3, 1), by="t"
    )


def event_names(pupil: Pupil) -> list[str]:
    return [type(e).__qualname__ for e in pupil.collect_events()]


def test_a_new_pupil_is_not_at_risk() -> None:
    pupil = new_pupil()
    assert not pupil.at_risk
    assert event_names(pupil) == ["Pupil.Registered"]


def test_the_first_sign_flags_the_pupil_at_risk() -> None:
    pupil = new_pupil()
    pupil.record_risk_sign("learning.absences", date(2019, 10, 1), "25 lessons", "journal", "t")
    assert pupil.at_risk
    assert event_names(pupil)[1:] == ["Pupil.RiskSignRecorded", "Pupil.FlaggedAtRisk"]


def test_a_second_sign_does_not_flag_again() -> None:
    pupil = new_pupil()
    pupil.record_risk_sign("learning.absences", date(2019, 10, 1), "25 lessons", "journal", "t")
    pupil.collect_events()
    pupil.record_risk_sign("economic.low_income", date(2019, 10, 2), "benefit", "assessment", "t")
    assert event_names(pupil) == ["Pupil.RiskSignRecorded"]


def test_an_unknown_code_changes_nothing() -> None:
    pupil = new_pupil()
    with pytest.raises(UnknownRiskCodeError):
        pupil.record_risk_sign("learning.boredom", date(2019, 10, 1), "x", "assessment", "t")
    assert pupil.version == 1
    assert not pupil.at_risk


def test_an_active_sign_cannot_be_recorded_twice() -> None:
    pupil = new_pupil()
    pupil.record_risk_sign("family.crisis", date(2019, 10, 1), "x", "assessment", "t")
    with pytest.raises(RiskSignAlreadyActiveError):
        pupil.record_risk_sign("family.crisis", date(2019, 11, 1), "y", "assessment", "t")
    assert pupil.version == 3


def test_a_stale_version_is_refused() -> None:
    pupil = new_pupil()
    with pytest.raises(StaleVersionError) as raised:
        pupil.check_version(2)
    assert raised.value.details == {"expected_version": 2, "current_version": 1}
