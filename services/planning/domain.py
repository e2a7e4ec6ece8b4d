"""Individual support plans: measures, the approval chain, consultations, evaluation.

Every change is an immutable event named in the past tense; public methods are the
commands, each checks (``check_*``) before it changes anything, so a refused command
leaves the plan as it was. The plan's events are its audit trail.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

from eventsourcing.domain import Aggregate, event
from eventsourcing.domain import Snapshot as AggregateSnapshot

from shared import days
from shared.errors import (
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    StaleVersionError,
    TransitionNotAllowedError,
    UnprocessableError,
)
from shared.semesters import InvalidSemesterError, Semester
from shared.vocabulary import (
    APPROVED,
    CLOSED,
    CONSULTATION_KINDS,
    CONTINUES_LEARNING,
    DRAFT,
    EVALUATED,
    IN_APPROVAL,
    IN_PROGRESS,
    INACTIVE,
    LEFT_EDUCATION,
    MATERIAL_KINDS,
    MEASURE_KINDS,
    MUNICIPALITY,
    NATIONAL,
    OUTCOMES,
    PLAN_STATUSES,
    RISK_OUTCOMES,
    SCHOOL,
    SUSPENDED,
    UNDER_REVISION,
)

# -- vocabulary (../shared/api.md; the words shared with other services: shared.vocabulary) --

STATUSES = PLAN_STATUSES
# A plan that is still alive: it counts as the pupil's plan and a departure closes it.
ACTIVE = (DRAFT, IN_APPROVAL, APPROVED, IN_PROGRESS, UNDER_REVISION, SUSPENDED)
EDITABLE = (DRAFT, UNDER_REVISION)
IN_FORCE = (APPROVED, IN_PROGRESS)

LEVEL_OF_ROLE = {
    "director": SCHOOL,
    "municipal_coordinator": MUNICIPALITY,
    "national_coordinator": NATIONAL,
}

OUTCOME_OF_DEPARTURE = {
    "dropped_out": LEFT_EDUCATION,
    "moved_abroad": LEFT_EDUCATION,
    "transferred": "transferred",
    "graduated": "graduated",
}

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
REMOTE_CONFIRMATION_DAYS = 1


def today() -> date:
    """The day no recorded date may come after, in Riga; tests replace it."""
    return days.today()


# -- errors ----------------------------------------------------------------------------


class PlanAlreadyExistsError(ConflictError):
    code = "plan_already_exists"


class PupilNotFoundError(NotFoundError):
    code = "pupil_not_found"


class PupilNotAtRiskError(ConflictError):
    code = "pupil_not_at_risk"


class PupilDepartedError(ConflictError):
    code = "pupil_departed"


class PupilNotEligibleError(UnprocessableError):
    code = "pupil_not_eligible"


class InvalidMeasureError(InvalidInputError):
    code = "invalid_measure"


class RiskSignNotActiveError(UnprocessableError):
    code = "risk_sign_not_active"


class MeasureNotFoundError(NotFoundError):
    code = "measure_not_found"


class MeasureInUseError(ConflictError):
    code = "measure_in_use"


class PlanHasNoMeasuresError(UnprocessableError):
    code = "plan_has_no_measures"


class NotPlanAuthorError(ForbiddenError):
    code = "not_plan_author"


class ApprovalLevelError(ConflictError):
    code = "approval_level_not_pending"


class MoneySpentError(ConflictError):
    code = "money_spent"


class NotAConsultationMeasureError(UnprocessableError):
    code = "not_a_consultation_measure"


class NotAMaterialMeasureError(UnprocessableError):
    code = "not_a_material_measure"


class PlannedHoursExceededError(UnprocessableError):
    code = "planned_hours_exceeded"


class PlannedAmountBelowDeliveredError(UnprocessableError):
    code = "planned_amount_below_delivered"


class InvalidDateError(UnprocessableError):
    code = "invalid_date"


class MinorCannotConsentError(UnprocessableError):
    code = "consent_needs_a_parent"


class ConsultationNotFoundError(NotFoundError):
    code = "consultation_not_found"


class ConsultationAlreadyConfirmedError(ConflictError):
    code = "consultation_already_confirmed"


class IncompleteEvaluationError(UnprocessableError):
    code = "evaluation_incomplete"


class CannotContinueError(ConflictError):
    code = "cannot_continue"


# -- semesters ---------------------------------------------------------------------------

# Grades 1-4 of general education take part from the school year 2021/2022.
YOUNGEST_FROM = Semester(2021, 1)


# -- what planning knows about pupils and schools (its read model) -------------------------


@dataclass(frozen=True)
class PupilView:
    pupil_id: str
    school_id: str
    grade: int
    at_risk: bool
    departed: bool
    active_risk_codes: tuple[str, ...]


@dataclass(frozen=True)
class SchoolView:
    school_id: str
    kind: str  # general | vocational
    owner: str  # municipal | state

    @property
    def levels(self) -> list[str]:
        """The approval chain after the author: director, (municipal coordinator,) IKVD."""
        if self.owner == "municipal":
            return [SCHOOL, MUNICIPALITY, NATIONAL]
        return [SCHOOL, NATIONAL]


def check_may_have_plan(pupil: PupilView, school: SchoolView, semester: Semester) -> None:
    """A plan is only for a pupil at risk, still at school, eligible that semester."""
    if pupil.departed:
        raise PupilDepartedError(f"pupil {pupil.pupil_id} has left the school")
    if not pupil.at_risk or not pupil.active_risk_codes:
        raise PupilNotAtRiskError(f"pupil {pupil.pupil_id} is not at risk")
    if school.kind == "vocational":
        eligible = 1 <= pupil.grade <= 4
    else:
        eligible = 5 <= pupil.grade <= 12 or (1 <= pupil.grade <= 4 and semester >= YOUNGEST_FROM)
    if not eligible:
        raise PupilNotEligibleError(
            f"grade {pupil.grade} of a {school.kind} school takes no part in {semester}",
            {"grade": pupil.grade, "school_kind": school.kind, "semester": str(semester)},
        )


PUPIL_SIGNS = "pupil"


def check_consent_signed(signed_on: date) -> None:
    """A plan rests on a consent already signed: one dated after today is a typo."""
    latest = today()
    if signed_on > latest:
        raise InvalidDateError(
            f"the consent cannot be signed after today ({latest})",
            {"fields": {"consent": {"signed_on": [f"not after {latest}"]}}},
        )


def check_consent_signer(given_by: str, adult: bool | None) -> None:
    """A pupil signs the consent only as an adult on the signing day (``adult``: what
    identification answered; None when it does not know); otherwise a parent signs."""
    if given_by == PUPIL_SIGNS and adult is not True:
        message = "the pupil was not of age on the signing day: a parent signs the consent"
        raise MinorCannotConsentError(
            message, {"fields": {"consent": {"given_by": ["a parent, for a minor"]}}}
        )


# -- measures ----------------------------------------------------------------------------


def _invalid(field: str, message: str) -> InvalidMeasureError:
    return InvalidMeasureError(
        f"the measure is not valid: {message}", {"fields": {field: [message]}}
    )


def check_measure(
    kind: str,
    risk_code: str,
    justification: str,
    hours: Decimal | None,
    amount_eur: Decimal | None,
    subject: str | None,
    active_risk_codes: Iterable[str],
) -> dict[str, Any]:
    """The measure's fields, normalised; or the reason it cannot be part of a plan."""
    if kind not in MEASURE_KINDS:
        raise _invalid("kind", f"unknown measure kind {kind}")
    if not justification or not justification.strip():
        raise _invalid("justification", "a justification is required")
    if kind in CONSULTATION_KINDS:
        if hours is None or hours <= 0:
            raise _invalid("hours", "a consultation measure plans a positive number of hours")
        if amount_eur is not None:
            raise _invalid("amount_eur", "a consultation measure is counted in hours")
        if (kind == "subject_teacher") != bool(subject and subject.strip()):
            raise _invalid("subject", "a subject is given for a subject teacher, and only then")
    else:
        if amount_eur is None or amount_eur <= 0:
            raise _invalid("amount_eur", "a material measure plans a positive amount in euros")
        if hours is not None or subject:
            raise _invalid("hours", "a material measure is counted in euros")
    if risk_code not in set(active_risk_codes):
        raise RiskSignNotActiveError(
            f"risk sign {risk_code} is not active for this pupil", {"risk_code": risk_code}
        )
    return {
        "kind": kind,
        "risk_code": risk_code,
        "justification": justification.strip(),
        "hours": None if hours is None else Decimal(hours).quantize(CENT),
        "amount_eur": None if amount_eur is None else Decimal(amount_eur).quantize(CENT),
        "subject": subject.strip() if subject else None,
    }


# -- the plan ------------------------------------------------------------------------------


_CONSULTATION_ROW = (
    "consultation_id",
    "measure_id",
    "date",
    "hours",
    "provider",
    "topic",
    "remote",
    "cost_eur",
    "confirmed_on",
)


def _pack(consultation: Mapping[str, Any]) -> list[Any]:
    row = [consultation[key] for key in _CONSULTATION_ROW]
    for i in (2, 8):
        row[i] = row[i] and row[i].isoformat()
    row[3], row[7] = str(row[3]), str(row[7])
    return row


@functools.lru_cache(maxsize=4096)
def _decimal(text: str) -> Decimal:
    return Decimal(text)


@functools.lru_cache(maxsize=4096)
def _day(text: str) -> date:
    return date.fromisoformat(text)


def _unpack(row: list[Any]) -> dict[str, Any]:
    # Hours, amounts and dates repeat across consultations: each distinct text is parsed
    # once (Decimal and date are immutable, so sharing them is safe).
    consultation_id, measure_id, day, hours, provider, topic, remote, cost, confirmed_on = row
    return {
        "consultation_id": consultation_id,
        "measure_id": measure_id,
        "date": _day(day),
        "hours": _decimal(hours),
        "provider": provider,
        "topic": topic,
        "remote": remote,
        "cost_eur": _decimal(cost),
        "confirmed_on": _day(confirmed_on) if confirmed_on else None,
    }


_ROWS = frozenset({"measures", "consultations", "deliveries"})


def _copy(value: Any) -> Any:
    """A deep copy of the plan's state: dicts and lists of immutable values."""
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


class Plan(Aggregate):
    """One pupil's individual support plan (IAP) for one semester."""

    # Version 2 keeps whether a departure closed the plan (closed_on_departure).
    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """A snapshot taken before version 2. Events after it replay a later closing; a plan
        it shows closed already cannot say why: False here, and the plans read model keeps
        the mark its stored Closed event gave the plan's row."""
        state["closed_on_departure"] = False

    def __deepcopy__(self, memo: dict[int, Any]) -> Plan:
        # The application's cache hands out copies; the generic deepcopy spent more time
        # on the Decimals and dates than the database spends finding the plan. Rows (a
        # measure, a consultation...) hold immutable values only: a shallow copy each.
        clone = object.__new__(type(self))
        state = {}
        for name, value in self.__dict__.items():
            if name in _ROWS:
                state[name] = {key: dict(row) for key, row in value.items()}
            else:
                state[name] = _copy(value)
        clone.__dict__.update(state)
        return clone

    class Snapshot(AggregateSnapshot):
        """The plan's state with its consultations packed as rows of plain JSON values:
        a plan with thousands of events decodes from its snapshot in a few milliseconds."""

        @classmethod
        def take(cls, aggregate: Any) -> Any:
            snapshot = super().take(aggregate)
            state = dict(snapshot.state)
            state["consultations"] = [_pack(c) for c in state["consultations"].values()]
            return dataclasses.replace(snapshot, state=state)

        def mutate(self, _: None) -> Any:
            plan: Any = super().mutate(None)
            rows = [_unpack(row) for row in plan.consultations]
            plan.consultations = {c["consultation_id"]: c for c in rows}
            return plan

    @event("Drafted")
    def __init__(
        self,
        pupil_id: str,
        school_id: str,
        semester: str,
        levels: list[str],
        risk_codes: list[str],
        consent_given_by: str,
        consent_signed_on: date,
        previous_plan_id: str | None,
        by: str,
    ) -> None:
        self.pupil_id = pupil_id
        self.school_id = school_id
        self.semester = semester
        self.levels = list(levels)
        self.risk_codes = list(risk_codes)
        self.consent_given_by = consent_given_by
        self.consent_signed_on = consent_signed_on
        self.previous_plan_id = previous_plan_id
        self.author = by
        self.status = DRAFT
        self.pending_level: str | None = None
        self.approvals: list[dict[str, Any]] = []
        self.in_revision = False
        self.started = False
        self.resume_status: str | None = None
        self.status_reason: str | None = None
        self.measures: dict[str, dict[str, Any]] = {}
        self.consultations: dict[str, dict[str, Any]] = {}
        self.deliveries: dict[str, dict[str, Any]] = {}
        self.spent_eur = ZERO
        self.risk_outcomes: dict[str, str] = {}
        self.outcome: str | None = None
        self.next_plan_id: str | None = None
        self.closed_on_departure = False

    # -- checks ---------------------------------------------------------------------
    def check_version(self, expected_version: int) -> None:
        if expected_version != self.version:
            raise StaleVersionError(expected_version, self.version)

    def check_status(self, action: str, *allowed: str) -> None:
        if self.status not in allowed:
            raise TransitionNotAllowedError(
                f"cannot {action} a plan that is {self.status}",
                {"status": self.status, "action": action, "allowed_from": list(allowed)},
            )

    def check_measure_exists(self, measure_id: str) -> dict[str, Any]:
        measure = self.measures.get(measure_id)
        if measure is None:
            raise MeasureNotFoundError(f"measure {measure_id} not found in this plan")
        return measure

    def check_measure_unused(self, measure_id: str, action: str) -> None:
        if self.used_by(measure_id):
            raise MeasureInUseError(
                f"cannot {action} measure {measure_id}: support was already delivered on it",
                {"measure_id": measure_id},
            )

    def check_within_semester(
        self, field: str, day: date, *, not_before: date | None = None
    ) -> None:
        semester = Semester.parse(self.semester)
        earliest = not_before or semester.starts_on
        latest = today() if not_before else min(semester.ends_on, today())
        if not earliest <= day <= latest:
            raise InvalidDateError(
                f"{field} must be between {earliest} and {latest}",
                {"fields": {field: [f"between {earliest} and {latest}"]}},
            )

    def check_semester_started(self, action: str) -> None:
        # An evaluation judges a semester's support: none can have been given before it.
        starts_on = Semester.parse(self.semester).starts_on
        if today() < starts_on:
            raise InvalidDateError(
                f"cannot {action} a plan of {self.semester} before the semester starts on "
                f"{starts_on}",
                {"semester": self.semester, "starts_on": starts_on.isoformat()},
            )

    # -- views --------------------------------------------------------------------
    def used_by(self, measure_id: str) -> bool:
        return any(c["measure_id"] == measure_id for c in self.consultations.values()) or any(
            d["measure_id"] == measure_id for d in self.deliveries.values()
        )

    def logged_hours(self, measure_id: str) -> Decimal:
        return sum(
            (c["hours"] for c in self.consultations.values() if c["measure_id"] == measure_id),
            ZERO,
        )

    def delivered_eur(self, measure_id: str) -> Decimal:
        return sum(
            (d["amount_eur"] for d in self.deliveries.values() if d["measure_id"] == measure_id),
            ZERO,
        )

    def is_flagged(self, consultation: Mapping[str, Any], on: date | None = None) -> bool:
        """A remote consultation not confirmed within a day of it is flagged (for ever)."""
        if not consultation["remote"]:
            return False
        confirmed_on = consultation.get("confirmed_on") or on or today()
        return bool(confirmed_on > consultation["date"] + timedelta(REMOTE_CONFIRMATION_DAYS))

    def evaluated_codes(self) -> set[str]:
        """The risk signs an evaluation rates: those the measures address, at least."""
        return {m["risk_code"] for m in self.measures.values()}

    # -- measures ---------------------------------------------------------------------
    def add_measure(
        self,
        *,
        kind: str,
        risk_code: str,
        justification: str,
        hours: Decimal | None = None,
        amount_eur: Decimal | None = None,
        subject: str | None = None,
        active_risk_codes: Iterable[str],
        by: str,
    ) -> str:
        self.check_status("add a measure to", *EDITABLE)
        fields = check_measure(
            kind, risk_code, justification, hours, amount_eur, subject, active_risk_codes
        )
        measure_id = str(uuid4())
        self._add_measure(measure_id=measure_id, **fields, by=by)
        return measure_id

    @event("MeasureAdded")
    def _add_measure(
        self,
        measure_id: str,
        kind: str,
        risk_code: str,
        justification: str,
        hours: Decimal | None,
        amount_eur: Decimal | None,
        subject: str | None,
        by: str,
    ) -> None:
        self.measures[measure_id] = {
            "measure_id": measure_id,
            "kind": kind,
            "risk_code": risk_code,
            "justification": justification,
            "hours": hours,
            "amount_eur": amount_eur,
            "subject": subject,
        }
        if risk_code not in self.risk_codes:
            self.risk_codes.append(risk_code)

    def change_measure(
        self,
        measure_id: str,
        *,
        kind: str,
        risk_code: str,
        justification: str,
        hours: Decimal | None = None,
        amount_eur: Decimal | None = None,
        subject: str | None = None,
        active_risk_codes: Iterable[str],
        by: str,
    ) -> None:
        self.check_status("change a measure of", *EDITABLE)
        current = self.check_measure_exists(measure_id)
        still_allowed = {*active_risk_codes, current["risk_code"]}
        fields = check_measure(
            kind, risk_code, justification, hours, amount_eur, subject, still_allowed
        )
        if self.used_by(measure_id):
            self.check_used_measure_change(current, fields)
        self._change_measure(measure_id=measure_id, **fields, by=by)

    def check_used_measure_change(self, current: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        measure_id = current["measure_id"]
        if new["kind"] != current["kind"]:
            self.check_measure_unused(measure_id, "change the kind of")
        if new["hours"] is not None and new["hours"] < self.logged_hours(measure_id):
            raise PlannedHoursExceededError(
                f"{self.logged_hours(measure_id)} hours were already delivered on this measure",
                {"logged_hours": str(self.logged_hours(measure_id))},
            )
        # Money delivered was spent: a plan that promised less would not account for it.
        delivered = self.delivered_eur(measure_id)
        if new["amount_eur"] is not None and new["amount_eur"] < delivered:
            raise PlannedAmountBelowDeliveredError(
                f"{delivered:.2f} EUR were already delivered on this measure",
                {"delivered_eur": f"{delivered:.2f}"},
            )

    @event("MeasureChanged")
    def _change_measure(
        self,
        measure_id: str,
        kind: str,
        risk_code: str,
        justification: str,
        hours: Decimal | None,
        amount_eur: Decimal | None,
        subject: str | None,
        by: str,
    ) -> None:
        self.measures[measure_id].update(
            kind=kind,
            risk_code=risk_code,
            justification=justification,
            hours=hours,
            amount_eur=amount_eur,
            subject=subject,
        )
        if risk_code not in self.risk_codes:
            self.risk_codes.append(risk_code)

    def remove_measure(self, measure_id: str, *, by: str) -> None:
        self.check_status("remove a measure from", *EDITABLE)
        self.check_measure_exists(measure_id)
        self.check_measure_unused(measure_id, "remove")
        self._remove_measure(measure_id=measure_id, by=by)

    @event("MeasureRemoved")
    def _remove_measure(self, measure_id: str, by: str) -> None:
        del self.measures[measure_id]

    # -- the approval chain -------------------------------------------------------------
    def submit(self, *, by: str) -> None:
        self.check_status("submit", *EDITABLE)
        if by != self.author:
            raise NotPlanAuthorError("only the plan's author submits it", {"author": self.author})
        if not self.measures:
            raise PlanHasNoMeasuresError("a plan needs at least one measure to be submitted")
        self._submit(pending_level=self.levels[0], by=by)

    @event("Submitted")
    def _submit(self, pending_level: str, by: str) -> None:
        self.status = IN_APPROVAL
        self.pending_level = pending_level
        self.approvals = []
        self.status_reason = None

    def check_pending_level(self, level: str, action: str) -> None:
        self.check_status(action, IN_APPROVAL)
        if level != self.pending_level:
            raise ApprovalLevelError(
                f"cannot {action} at {level} level: the plan is {self.status}, "
                f"awaiting {self.pending_level} level",
                {"status": self.status, "pending_level": self.pending_level, "level": level},
            )

    def approve(self, *, level: str, by: str) -> None:
        self.check_pending_level(level, "approve")
        self._approve(level=level, at=datetime.now(UTC), by=by)
        if self.pending_level is None:
            self._fully_approve(
                plan_id=str(self.id),
                pupil_id=self.pupil_id,
                school_id=self.school_id,
                semester=self.semester,
                status=IN_PROGRESS if self.started else APPROVED,
                material_measures=[
                    {
                        "measure_id": m["measure_id"],
                        "kind": m["kind"],
                        "amount_eur": m["amount_eur"],
                    }
                    for m in self.measures.values()
                    if m["kind"] in MATERIAL_KINDS
                ],
                by=by,
            )

    @event("Approved")
    def _approve(self, level: str, at: datetime, by: str) -> None:
        self.approvals.append({"level": level, "by": by, "at": at})
        position = self.levels.index(level) + 1
        self.pending_level = self.levels[position] if position < len(self.levels) else None

    @event("FullyApproved")
    def _fully_approve(
        self,
        plan_id: str,
        pupil_id: str,
        school_id: str,
        semester: str,
        status: str,
        material_measures: list[dict[str, Any]],
        by: str,
    ) -> None:
        self.status = status
        self.in_revision = False

    def return_to_author(self, *, level: str, reason: str, by: str) -> None:
        self.check_pending_level(level, "return")
        status = UNDER_REVISION if self.in_revision else DRAFT
        self._return_to_author(level=level, reason=reason, status=status, by=by)

    @event("Returned")
    def _return_to_author(self, level: str, reason: str, status: str, by: str) -> None:
        self.status = status
        self.pending_level = None
        self.approvals = []
        self.status_reason = reason

    def revise(self, *, reason: str, by: str) -> None:
        self.check_status("revise", *IN_FORCE)
        self._revise(reason=reason, by=by)

    @event("RevisionStarted")
    def _revise(self, reason: str, by: str) -> None:
        self.status = UNDER_REVISION
        self.in_revision = True
        self.approvals = []
        self.status_reason = reason

    # -- suspension and deactivation ---------------------------------------------------
    def suspend(self, *, reason: str, by: str) -> None:
        self.check_status("suspend", *IN_FORCE)
        self._suspend(reason=reason, by=by)

    @event("Suspended")
    def _suspend(self, reason: str, by: str) -> None:
        self.resume_status = self.status
        self.status = SUSPENDED
        self.status_reason = reason

    def resume(self, *, by: str) -> None:
        self.check_status("resume", SUSPENDED)
        self._resume(status=self.resume_status or APPROVED, by=by)

    @event("Resumed")
    def _resume(self, status: str, by: str) -> None:
        self.status = status
        self.resume_status = None
        self.status_reason = None

    def deactivate(self, *, reason: str, by: str) -> None:
        self.check_status("deactivate", *ACTIVE)
        if self.spent_eur > 0:
            raise MoneySpentError(
                f"cannot deactivate a plan on which {self.spent_eur:.2f} EUR were spent",
                {"status": self.status, "spent_eur": f"{self.spent_eur:.2f}"},
            )
        self._deactivate(reason=reason, by=by)

    @event("Deactivated")
    def _deactivate(self, reason: str, by: str) -> None:
        self.status = INACTIVE
        self.pending_level = None
        self.status_reason = reason

    # -- delivered support ---------------------------------------------------------------
    def log_consultation(
        self,
        *,
        measure_id: str,
        date: date,
        hours: Decimal,
        provider: str,
        topic: str,
        remote: bool,
        rates: Mapping[str, Decimal],
        by: str,
    ) -> str:
        self.check_status("log a consultation on", *IN_FORCE)
        measure = self.check_measure_exists(measure_id)
        if measure["kind"] not in CONSULTATION_KINDS:
            raise NotAConsultationMeasureError(f"measure {measure_id} is not a consultation")
        self.check_within_semester("date", date)
        hours = Decimal(hours).quantize(CENT)
        logged = self.logged_hours(measure_id)
        if hours <= 0 or logged + hours > measure["hours"]:
            raise PlannedHoursExceededError(
                f"{hours} hours would exceed the {measure['hours']} hours planned "
                f"({logged} already delivered)",
                {"planned_hours": str(measure["hours"]), "logged_hours": str(logged)},
            )
        consultation_id = str(uuid4())
        rate = Decimal(rates[measure["kind"]]).quantize(CENT)
        self._log_consultation(
            consultation_id=consultation_id,
            measure_id=measure_id,
            kind=measure["kind"],
            date=date,
            hours=hours,
            provider=provider,
            topic=topic,
            remote=remote,
            rate_eur=rate,
            cost_eur=(rate * hours).quantize(CENT),
            by=by,
        )
        self.start(by=by)
        return consultation_id

    @event("ConsultationLogged")
    def _log_consultation(
        self,
        consultation_id: str,
        measure_id: str,
        kind: str,
        date: date,
        hours: Decimal,
        provider: str,
        topic: str,
        remote: bool,
        rate_eur: Decimal,
        cost_eur: Decimal,
        by: str,
    ) -> None:
        self.consultations[consultation_id] = {
            "consultation_id": consultation_id,
            "measure_id": measure_id,
            "date": date,
            "hours": hours,
            "provider": provider,
            "topic": topic,
            "remote": remote,
            "cost_eur": cost_eur,
            "confirmed_on": None,
        }
        self.spent_eur += cost_eur

    def start(self, *, by: str) -> None:
        """An approved plan is in progress from its first consultation or delivery."""
        if not self.started and self.status in (APPROVED, SUSPENDED, UNDER_REVISION, IN_APPROVAL):
            self._start(by=by)

    @event("Started")
    def _start(self, by: str) -> None:
        self.started = True
        if self.status == APPROVED:
            self.status = IN_PROGRESS
        elif self.status == SUSPENDED and self.resume_status == APPROVED:
            self.resume_status = IN_PROGRESS

    def confirm_consultation(self, consultation_id: str, *, confirmed_on: date, by: str) -> None:
        self.check_status(
            "confirm a consultation of", IN_PROGRESS, UNDER_REVISION, IN_APPROVAL, SUSPENDED
        )
        consultation = self.consultations.get(consultation_id)
        if consultation is None:
            raise ConsultationNotFoundError(f"consultation {consultation_id} not found")
        if consultation["confirmed_on"] is not None:
            raise ConsultationAlreadyConfirmedError(
                f"consultation {consultation_id} was confirmed on {consultation['confirmed_on']}"
            )
        self.check_within_semester("confirmed_on", confirmed_on, not_before=consultation["date"])
        self._confirm_consultation(
            consultation_id=consultation_id, confirmed_on=confirmed_on, by=by
        )

    @event("ConsultationConfirmed")
    def _confirm_consultation(self, consultation_id: str, confirmed_on: date, by: str) -> None:
        self.consultations[consultation_id]["confirmed_on"] = confirmed_on

    def record_material_delivery(
        self, *, delivery_id: str, measure_id: str, amount_eur: Decimal, delivered_on: date, by: str
    ) -> None:
        """A delivery provisioning reports: a fact, recorded whatever the plan's status (the
        money was spent); a repeat is ignored."""
        if delivery_id in self.deliveries:
            return
        measure = self.measures.get(measure_id)
        if measure is not None and measure["kind"] not in MATERIAL_KINDS:
            raise NotAMaterialMeasureError(f"measure {measure_id} is not material support")
        self._record_material_delivery(
            delivery_id=delivery_id,
            measure_id=measure_id,
            amount_eur=Decimal(amount_eur).quantize(CENT),
            delivered_on=delivered_on,
            by=by,
        )
        self.start(by=by)

    @event("MaterialDeliveryRecorded")
    def _record_material_delivery(
        self, delivery_id: str, measure_id: str, amount_eur: Decimal, delivered_on: date, by: str
    ) -> None:
        self.deliveries[delivery_id] = {
            "delivery_id": delivery_id,
            "measure_id": measure_id,
            "amount_eur": amount_eur,
            "delivered_on": delivered_on,
        }
        self.spent_eur += amount_eur

    # -- the end of the semester -----------------------------------------------------------
    def evaluate(self, *, risk_outcomes: Mapping[str, str], outcome: str, by: str) -> None:
        self.check_status("evaluate", APPROVED, IN_PROGRESS, SUSPENDED)
        self.check_semester_started("evaluate")
        missing = sorted(self.evaluated_codes() - set(risk_outcomes))
        unknown = sorted(set(risk_outcomes) - set(self.risk_codes))
        if missing or unknown:
            raise IncompleteEvaluationError(
                "an evaluation rates every risk sign the plan addresses, and only the plan's",
                {"missing": missing, "unknown": unknown},
            )
        if outcome not in OUTCOMES or set(risk_outcomes.values()) - set(RISK_OUTCOMES):
            raise IncompleteEvaluationError("unknown outcome", {"outcome": outcome})
        self._evaluate(risk_outcomes=dict(risk_outcomes), outcome=outcome, by=by)

    @event("Evaluated")
    def _evaluate(self, risk_outcomes: dict[str, str], outcome: str, by: str) -> None:
        self.status = EVALUATED
        self.pending_level = None
        self.risk_outcomes = dict(risk_outcomes)
        self.outcome = outcome

    def unresolved_measures(self) -> list[dict[str, Any]]:
        """The measures of the risk signs the evaluation did not find resolved."""
        unresolved = {code for code, result in self.risk_outcomes.items() if result != "resolved"}
        return [m for m in self.measures.values() if m["risk_code"] in unresolved]

    def continue_into(self, semester: Semester, *, by: str) -> None:
        """Check that this plan can go on into ``semester``; ``Plan.continued`` does it."""
        self.check_status("continue", EVALUATED)
        # The next draft carries this plan's consent: a date that cannot be right stays here.
        check_consent_signed(self.consent_signed_on)
        if self.next_plan_id is not None:
            raise CannotContinueError(
                f"the plan was already continued as {self.next_plan_id}",
                {"next_plan_id": self.next_plan_id},
            )
        if self.outcome != CONTINUES_LEARNING:
            raise CannotContinueError(
                f"the plan's outcome is {self.outcome}", {"outcome": self.outcome}
            )
        expected = Semester.parse(self.semester).next()
        if semester != expected:
            raise InvalidSemesterError(
                f"a plan of {self.semester} continues into {expected}",
                {"fields": {"semester": [f"must be {expected}"]}},
            )

    @event("Continued")
    def _continue(self, next_plan_id: str, semester: str, by: str) -> None:
        self.next_plan_id = next_plan_id

    def continued(
        self, semester: Semester, *, pupil: PupilView, school: SchoolView, by: str
    ) -> Plan:
        """The next semester's draft, with the unresolved risk signs and their measures."""
        self.continue_into(semester, by=by)
        carried = [
            m for m in self.unresolved_measures() if m["risk_code"] in pupil.active_risk_codes
        ]
        if not carried:
            raise CannotContinueError(
                "no risk sign with measures is left unresolved and active to carry over"
            )
        check_may_have_plan(pupil, school, semester)
        plan = Plan(
            pupil_id=self.pupil_id,
            school_id=pupil.school_id,
            semester=str(semester),
            levels=school.levels,
            risk_codes=list(pupil.active_risk_codes),
            consent_given_by=self.consent_given_by,
            consent_signed_on=self.consent_signed_on,
            previous_plan_id=str(self.id),
            by=by,
        )
        for measure in carried:
            plan.add_measure(
                kind=measure["kind"],
                risk_code=measure["risk_code"],
                justification=measure["justification"],
                hours=measure["hours"],
                amount_eur=measure["amount_eur"],
                subject=measure["subject"],
                active_risk_codes=pupil.active_risk_codes,
                by=by,
            )
        self._continue(next_plan_id=str(plan.id), semester=str(semester), by=by)
        return plan

    def close(self, *, by: str) -> None:
        """An evaluated plan that is not continued ends with its evaluation's outcome."""
        self.check_status("close", EVALUATED)
        if self.next_plan_id is not None:
            raise TransitionNotAllowedError(
                "cannot close a plan that was continued",
                {"status": self.status, "next_plan_id": self.next_plan_id},
            )
        self._close(outcome=self.outcome or CONTINUES_LEARNING, cause="evaluated", by=by)

    def close_on_departure(self, *, reason: str, by: str) -> None:
        self.check_status("close", *ACTIVE)
        self._close(outcome=OUTCOME_OF_DEPARTURE[reason], cause="pupil_departed", by=by)

    @event("Closed")
    def _close(self, outcome: str, cause: str, by: str) -> None:
        self.status = CLOSED
        self.pending_level = None
        self.outcome = outcome
        # Such a plan ended with the pupil's stay at its school, not with its semester's
        # support: it does not stand in the way of a plan where the pupil is now.
        self.closed_on_departure = cause == "pupil_departed"
