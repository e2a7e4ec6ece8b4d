"""Schools, pupils and their risk signs, departures and erasure.

The aggregates hold no personal data in the clear: a pupil's names, personal code
and birth date, and the free text of evidence and reasons, arrive sealed (encrypted
with the pupil's own key by the application) and are kept as the sealed strings.
Erasure destroys that key elsewhere; here it marks the pupil erased and forgets the
sealed values, so nothing reads them again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from services.identification.catalogue import RISK_CODES
from services.identification.personal_code import check_personal_code
from shared import days
from shared.errors import (
    ConflictError,
    InvalidInputError,
    StaleVersionError,
    TransitionNotAllowedError,
)
from shared.schools import School as SchoolInfo
from shared.vocabulary import AGED_25_OR_OVER, BELOW_25

GENERAL, VOCATIONAL = "general", "vocational"
ENROLLED, DEPARTED = "enrolled", "departed"
ADULT_AGE = 18
ASSESSMENT, JOURNAL = "assessment", "journal"
TRANSFERRED = "transferred"
DEPARTURE_REASONS = ("dropped_out", "moved_abroad", TRANSFERRED, "graduated")
VOCATIONAL_COURSES = (1, 4)
GENERAL_GRADES = (1, 12)
NAME_MAX = 100
EARLIEST_BIRTH_DATE = date(1900, 1, 1)  # adult learners (25 or over) take part too

_SCHOOL_NAMESPACE = uuid5(NAMESPACE_URL, "urn:pumpurs:identification:school")


def today() -> date:
    """The day no recorded date may come after, in Riga; tests replace it."""
    return days.today()


# -- errors ---------------------------------------------------------------------------


def _field(name: str, message: str) -> dict[str, Any]:
    return {"fields": {name: [message]}}


class UnknownRiskCodeError(InvalidInputError):
    code = "unknown_risk_code"


class RiskSignAlreadyActiveError(ConflictError):
    code = "risk_sign_already_active"


class RiskSignNotActiveError(TransitionNotAllowedError):
    code = "risk_sign_not_active"


class PupilErasedError(TransitionNotAllowedError):
    code = "pupil_erased"


class PupilDepartedError(TransitionNotAllowedError):
    code = "pupil_departed"


class PupilEnrolledError(TransitionNotAllowedError):
    code = "pupil_enrolled"


class PersonalCodeTakenError(ConflictError):
    """The personal code is registered already: names the pupil, never the code."""

    code = "personal_code_registered"

    def __init__(self, pupil_id: UUID) -> None:
        super().__init__(
            f"this personal code is registered already, as pupil {pupil_id}",
            {"pupil_id": str(pupil_id)},
        )


class InvalidNameError(InvalidInputError):
    code = "invalid_name"


class GradeOutOfRangeError(InvalidInputError):
    code = "grade_out_of_range"


class InvalidDepartureError(InvalidInputError):
    code = "invalid_departure"


class InvalidSchoolError(InvalidInputError):
    code = "invalid_school"


class InvalidDateError(InvalidInputError):
    code = "invalid_date"


# -- dates ----------------------------------------------------------------------------------
# Messages name the bounds, never the date given: a birth date is personal data.


def check_birth_date(birth_date: date) -> None:
    """From 1900-01-01 to today."""
    latest = today()
    if not EARLIEST_BIRTH_DATE <= birth_date <= latest:
        message = f"the birth date must be between {EARLIEST_BIRTH_DATE} and today ({latest})"
        raise InvalidDateError(message, _field("birth_date", message))


def check_not_after_today(field: str, day: date, what: str) -> None:
    """``what`` (a risk sign's observation, a departure) cannot be dated in the future."""
    latest = today()
    if day > latest:
        message = f"{what} cannot be dated after today ({latest})"
        raise InvalidDateError(message, _field(field, message))


# -- personal data and grades ------------------------------------------------------------


@dataclass(frozen=True)
class PersonalData:
    """What identifies a pupil; only ever stored sealed."""

    given_name: str
    family_name: str
    personal_code: str
    birth_date: date

    @classmethod
    def checked(
        cls, given_name: str, family_name: str, personal_code: str, birth_date: date
    ) -> PersonalData:
        """Names present and not too long, the birth date from 1900 to today, the code valid
        and agreeing with the birth date."""
        names = {"given_name": given_name.strip(), "family_name": family_name.strip()}
        for field, value in names.items():
            if not value or len(value) > NAME_MAX:
                message = f"a name of 1 to {NAME_MAX} characters is required"
                raise InvalidNameError(message, _field(field, message))
        check_birth_date(birth_date)
        code = check_personal_code(personal_code, birth_date)
        return cls(names["given_name"], names["family_name"], code, birth_date)


def age_on(birth_date: date, day: date) -> int:
    """Whole years of age on ``day`` (a birthday on 29 February counts from 1 March)."""
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))


def is_adult(birth_date: date, day: date) -> bool:
    """Of age on ``day`` (18 in Latvia): only then may a pupil sign the plan's consent."""
    return age_on(birth_date, day) >= ADULT_AGE


def age_band(birth_date: date, day: date) -> str:
    """ESF's split: below 25 years of age on ``day``, or 25 or over."""
    return BELOW_25 if age_on(birth_date, day) < 25 else AGED_25_OR_OVER


def grade_range(school: SchoolInfo) -> tuple[int, int]:
    """Grades a general school teaches, or the courses (1-4) of a vocational one."""
    low, high = VOCATIONAL_COURSES if school.kind == VOCATIONAL else GENERAL_GRADES
    return max(low, school.grades[0]), min(high, school.grades[1])


def check_grade(school: SchoolInfo, grade: int) -> None:
    low, high = grade_range(school)
    if not low <= grade <= high:
        what = "course" if school.kind == VOCATIONAL else "grade"
        message = f"{what} {grade} is outside this school's {what}s {low}-{high}"
        raise GradeOutOfRangeError(message, _field("grade", message))


# -- schools --------------------------------------------------------------------------------


class School(Aggregate):
    """A school added by a national coordinator (the shipped ones are reference data)."""

    @staticmethod
    def create_id(school_id: str) -> UUID:
        return school_aggregate_id(school_id)

    @staticmethod
    def check_new(kind: str, grade_from: int, grade_to: int) -> None:
        low, high = VOCATIONAL_COURSES if kind == VOCATIONAL else GENERAL_GRADES
        if not low <= grade_from <= grade_to <= high:
            message = f"a {kind} school teaches a range within {low}-{high}, from <= to"
            raise InvalidSchoolError(message, _field("grade_to", message))

    @event("Registered")
    def __init__(
        self,
        school_id: str,
        name: str,
        municipality: str,
        kind: str,
        owner: str,
        grade_from: int,
        grade_to: int,
        by: str,
    ) -> None:
        self.school_id = school_id
        self.name = name
        self.municipality = municipality
        self.kind = kind
        self.owner = owner
        self.grades = (grade_from, grade_to)

    def info(self) -> SchoolInfo:
        return SchoolInfo(
            self.school_id, self.name, self.municipality, self.kind, self.owner, self.grades
        )


def school_aggregate_id(school_id: str) -> UUID:
    return uuid5(_SCHOOL_NAMESPACE, school_id)


# -- pupils ---------------------------------------------------------------------------------


class Pupil(Aggregate):
    """A pupil: its id is chosen before it exists, so its sealed data can be bound to it."""

    @event("Registered")
    def __init__(
        self, id: UUID, school_id: str, grade: int, gender: str, personal_data: str, by: str
    ) -> None:  # the id is the new pupil's (eventsourcing takes it as the originator id)
        self.school_id = school_id
        self.grade = grade
        self.gender = gender
        self.personal_data: str | None = personal_data
        self.risk_signs: list[dict[str, Any]] = []
        # Signs of earlier enrolments: kept for erasure and the history, shown to nobody.
        self.former_signs: list[dict[str, Any]] = []
        self.status = ENROLLED
        self.departure: dict[str, Any] | None = None
        self.erased = False

    # -- state --------------------------------------------------------------------------
    @property
    def at_risk(self) -> bool:
        return any(sign["active"] for sign in self.risk_signs)

    def active_sign(self, code: str) -> dict[str, Any] | None:
        return next((s for s in self.risk_signs if s["code"] == code and s["active"]), None)

    def has_journal_sign(self, code: str, start: date, end: date) -> bool:
        """A sign of this code from the journal, observed in the period (active or not)."""
        return any(
            s["code"] == code and s["source"] == JOURNAL and start <= s["observed_on"] <= end
            for s in self.risk_signs
        )

    # -- guards -------------------------------------------------------------------------
    def check_version(self, expected_version: int) -> None:
        if expected_version != self.version:
            raise StaleVersionError(expected_version, self.version)

    def check_not_erased(self) -> None:
        if self.erased:
            raise PupilErasedError(f"pupil {self.id} has been erased")

    def check_enrolled(self) -> None:
        self.check_not_erased()
        if self.status != ENROLLED:
            raise PupilDepartedError(f"pupil {self.id} has departed")

    def check_can_re_enrol(self) -> None:
        self.check_not_erased()
        if self.status != DEPARTED:
            raise PupilEnrolledError(f"pupil {self.id} is at school")

    def check_can_record(self, code: str, observed_on: date) -> None:
        if code not in RISK_CODES:
            raise UnknownRiskCodeError(f"unknown risk sign {code}", {"code": code})
        check_not_after_today("observed_on", observed_on, "a risk sign's observation")
        self.check_enrolled()
        if self.active_sign(code):
            raise RiskSignAlreadyActiveError(f"risk sign {code} is already active", {"code": code})

    def check_can_resolve(self, code: str) -> None:
        if code not in RISK_CODES:
            raise UnknownRiskCodeError(f"unknown risk sign {code}", {"code": code})
        self.check_not_erased()
        if not self.active_sign(code):
            raise RiskSignNotActiveError(f"risk sign {code} is not active", {"code": code})

    def check_can_depart(self, reason: str, on: date, to_school_id: str | None) -> None:
        # No personal data is involved: an erased pupil can still leave school.
        if self.status != ENROLLED:
            raise PupilDepartedError(f"pupil {self.id} has departed")
        if reason not in DEPARTURE_REASONS:
            message = f"the reason must be one of {', '.join(DEPARTURE_REASONS)}"
            raise InvalidDepartureError(message, _field("reason", message))
        # Planning closes the pupil's plans as soon as it hears: a mistyped year must not.
        check_not_after_today("on", on, "a departure")
        if (reason == TRANSFERRED) != (to_school_id is not None):
            message = "to_school_id is required for a transfer, and only for a transfer"
            raise InvalidDepartureError(message, _field("to_school_id", message))
        if to_school_id == self.school_id:
            message = "a pupil cannot transfer to the same school"
            raise InvalidDepartureError(message, _field("to_school_id", message))

    # -- commands -----------------------------------------------------------------------
    def record_risk_sign(
        self, code: str, observed_on: date, evidence: str, source: str, by: str
    ) -> None:
        """Record a sign (``evidence`` sealed); the first active sign flags the pupil."""
        self.check_can_record(code, observed_on)
        was_at_risk = self.at_risk
        self._record_risk_sign(code, observed_on, evidence, source, by)
        if not was_at_risk:
            self._flag_at_risk(self.school_id, by)

    def resolve_risk_sign(self, code: str, reason: str, by: str) -> None:
        """Resolve an active sign (``reason`` sealed); the last one clears the flag."""
        self.check_can_resolve(code)
        self._resolve_risk_sign(code, reason, by)
        if not self.at_risk:
            self._clear_risk(self.school_id, by)

    def depart(self, reason: str, on: date, to_school_id: str | None, by: str) -> None:
        self.check_can_depart(reason, on, to_school_id)
        self._depart(reason, on, to_school_id, by)

    def re_enrol(
        self, school_id: str, grade: int, gender: str, personal_data: str, by: str
    ) -> None:
        """A pupil who left comes back to school (here or elsewhere): the same pupil, with
        the details given there; the signs of the enrolment that ended stay behind."""
        self.check_can_re_enrol()
        self._re_enrol(school_id, grade, gender, personal_data, by)

    def erase(self, by: str) -> None:
        self.check_not_erased()
        self._erase(by)

    # -- events -------------------------------------------------------------------------
    @event("RiskSignRecorded")
    def _record_risk_sign(
        self, code: str, observed_on: date, evidence: str, source: str, by: str
    ) -> None:
        self.risk_signs.append(
            {
                "code": code,
                "observed_on": observed_on,
                "source": source,
                "evidence": evidence,
                "active": True,
                "reason": None,
            }
        )

    @event("RiskSignResolved")
    def _resolve_risk_sign(self, code: str, reason: str, by: str) -> None:
        sign = self.active_sign(code)
        assert sign is not None
        sign["active"] = False
        sign["reason"] = reason

    @event("FlaggedAtRisk")
    def _flag_at_risk(self, school_id: str, by: str) -> None:
        pass

    @event("RiskCleared")
    def _clear_risk(self, school_id: str, by: str) -> None:
        pass

    @event("Departed")
    def _depart(self, reason: str, on: date, to_school_id: str | None, by: str) -> None:
        self.status = DEPARTED
        self.departure = {"reason": reason, "on": on, "to_school_id": to_school_id}

    @event("ReEnrolled")
    def _re_enrol(
        self, school_id: str, grade: int, gender: str, personal_data: str, by: str
    ) -> None:
        self.school_id, self.grade, self.gender = school_id, grade, gender
        self.personal_data = personal_data
        self.former_signs = [*self.former_signs, *self.risk_signs]
        self.risk_signs = []
        self.status = ENROLLED
        self.departure = None

    @event("Erased")
    def _erase(self, by: str) -> None:
        self.erased = True
        self.personal_data = None
        for sign in [*self.former_signs, *self.risk_signs]:
            sign["evidence"] = None
            sign["reason"] = None
