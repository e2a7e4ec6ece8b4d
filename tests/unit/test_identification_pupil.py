"""The pupil aggregate: registration, risk signs and the at-risk flag, departure, erasure.

The aggregate sees personal data only sealed; here any string stands for a sealed value.
"""

from __future__ import annotations

from datetime import date
from uuid import uuid4

import pytest

from services.identification.domain import (
    InvalidDepartureError,
    Pupil,
    PupilDepartedError,
    PupilErasedError,
    RiskSignAlreadyActiveError,
    RiskSignNotActiveError,
    UnknownRiskCodeError,
)
from shared.errors import StaleVersionError

SCHOOL = "daugavpils-10-vsk"


def new_pupil() -> Pupil:
    return Pupil(uuid4(), SCHOOL, 7, "F", "sealed-personal-data", "t")


def event_names(pupil: Pupil) -> list[str]:
    return [type(e).__qualname__ for e in pupil.collect_events()]


def test_a_new_pupil_is_enrolled_and_not_at_risk() -> None:
    pupil = new_pupil()
    assert not pupil.at_risk
    assert pupil.status == "enrolled"
    assert event_names(pupil) == ["Pupil.Registered"]


def test_the_pupil_id_is_the_one_chosen_before() -> None:
    chosen = uuid4()
    assert Pupil(chosen, SCHOOL, 7, "M", "sealed", "t").id == chosen


def test_the_first_sign_flags_the_pupil_at_risk() -> None:
    pupil = new_pupil()
    pupil.record_risk_sign("learning.absences", date(2019, 10, 1), "e", "journal", "t")
    assert pupil.at_risk
    assert event_names(pupil)[1:] == ["Pupil.RiskSignRecorded", "Pupil.FlaggedAtRisk"]


def test_a_second_sign_does_not_flag_again() -> None:
    pupil = new_pupil()
    pupil.record_risk_sign("learning.absences", date(2019, 10, 1), "e", "journal", "t")
    pupil.collect_events()
    pupil.record_risk_sign("economic.low_income", date(2019, 10, 2), "e", "assessment", "t")
    assert event_names(pupil) == ["Pupil.RiskSignRecorded"]


def test_resolving_the_last_active_sign_clears_the_flag() -> None:
    pupil = new_pupil()
    pupil.record_risk_sign("learning.absences", date(2019, 10, 1), "e", "journal", "t")
    pupil.record_risk_sign("family.crisis", date(2019, 10, 2), "e", "assessment", "t")
    pupil.collect_events()
    pupil.resolve_risk_sign("learning.absences", "sealed-reason", "d")
    assert pupil.at_risk
    assert event_names(pupil) == ["Pupil.RiskSignResolved"]
    pupil.resolve_risk_sign("family.crisis", "sealed-reason", "d")
    assert not pupil.at_risk
    assert event_names(pupil) == ["Pupil.RiskSignResolved", "Pupil.RiskCleared"]


def test_a_resolved_sign_can_be_recorded_again_and_flags_again() -> None:
    pupil = new_pupil()
    pupil.record_risk_sign("learning.gaps", date(2019, 10, 1), "e", "assessment", "t")
    pupil.resolve_risk_sign("learning.gaps", "r", "t")
    pupil.collect_events()
    pupil.record_risk_sign("learning.gaps", date(2020, 2, 1), "e2", "assessment", "t")
    assert event_names(pupil) == ["Pupil.RiskSignRecorded", "Pupil.FlaggedAtRisk"]
    assert [s["active"] for s in pupil.risk_signs] == [False, True]


def test_an_unknown_code_changes_nothing() -> None:
    pupil = new_pupil()
    with pytest.raises(UnknownRiskCodeError):
        pupil.record_risk_sign("learning.boredom", date(2019, 10, 1), "x", "assessment", "t")
    with pytest.raises(UnknownRiskCodeError):
        pupil.resolve_risk_sign("learning.boredom", "x", "t")
    assert pupil.version == 1
    assert not pupil.at_risk


def test_an_active_sign_cannot_be_recorded_twice() -> None:
    pupil = new_pupil()
    pupil.record_risk_sign("family.crisis", date(2019, 10, 1), "x", "assessment", "t")
    with pytest.raises(RiskSignAlreadyActiveError):
        pupil.record_risk_sign("family.crisis", date(2019, 11, 1), "y", "assessment", "t")
    assert pupil.version == 3


def test_a_sign_that_is_not_active_cannot_be_resolved() -> None:
    pupil = new_pupil()
    with pytest.raises(RiskSignNotActiveError):
        pupil.resolve_risk_sign("family.crisis", "r", "t")
    assert pupil.version == 1


def test_a_stale_version_is_refused() -> None:
    pupil = new_pupil()
    with pytest.raises(StaleVersionError) as raised:
        pupil.check_version(2)
    assert raised.value.details == {"expected_version": 2, "current_version": 1}


@pytest.mark.parametrize("reason", ["dropped_out", "moved_abroad", "graduated"])
def test_a_departure_without_a_transfer_names_no_school(reason: str) -> None:
    pupil = new_pupil()
    pupil.depart(reason, date(2020, 1, 31), None, "d")
    assert pupil.status == "departed"
    assert pupil.departure == {"reason": reason, "on": date(2020, 1, 31), "to_school_id": None}
    with pytest.raises(InvalidDepartureError):
        new_pupil().depart(reason, date(2020, 1, 31), "daugavpils-12-vsk", "d")


def test_a_transfer_names_another_school() -> None:
    pupil = new_pupil()
    with pytest.raises(InvalidDepartureError):
        pupil.depart("transferred", date(2020, 1, 31), None, "d")
    with pytest.raises(InvalidDepartureError):
        pupil.depart("transferred", date(2020, 1, 31), SCHOOL, "d")
    pupil.depart("transferred", date(2020, 1, 31), "daugavpils-12-vsk", "d")
    assert pupil.departure is not None
    assert pupil.departure["to_school_id"] == "daugavpils-12-vsk"


def test_a_departed_pupil_takes_no_new_signs_and_cannot_depart_again() -> None:
    pupil = new_pupil()
    pupil.depart("moved_abroad", date(2020, 1, 31), None, "d")
    with pytest.raises(PupilDepartedError):
        pupil.record_risk_sign("learning.gaps", date(2020, 2, 1), "e", "assessment", "t")
    with pytest.raises(PupilDepartedError):
        pupil.depart("graduated", date(2020, 6, 1), None, "d")


def test_erasure_forgets_every_sealed_value_but_keeps_the_facts() -> None:
    pupil = new_pupil()
    pupil.record_risk_sign("learning.gaps", date(2019, 10, 1), "evidence", "assessment", "t")
    pupil.resolve_risk_sign("learning.gaps", "reason", "t")
    pupil.collect_events()
    pupil.erase("dpo")
    assert event_names(pupil) == ["Pupil.Erased"]
    assert pupil.erased
    assert pupil.personal_data is None
    assert pupil.risk_signs == [
        {
            "code": "learning.gaps",
            "observed_on": date(2019, 10, 1),
            "source": "assessment",
            "evidence": None,
            "active": False,
            "reason": None,
        }
    ]
    with pytest.raises(PupilErasedError):
        pupil.erase("dpo")
    with pytest.raises(PupilErasedError):
        pupil.record_risk_sign("learning.gaps", date(2020, 2, 1), "e", "assessment", "t")
    with pytest.raises(PupilErasedError):
        pupil.resolve_risk_sign("learning.gaps", "r", "t")
    # Leaving school needs no personal data: it is still recorded.
    pupil.depart("graduated", date(2020, 6, 1), None, "d")
    assert pupil.status == "departed"
