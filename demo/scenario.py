"""The Daugavpils scenario as data: who the pupils are, what is recorded about them, and every
plan's course through semester ``2019-2020-1`` (and one continuation into ``2019-2020-2``).

``demo.build`` makes it; the seed (demo/seed.py) sends it over the public API and fills in the
ids the services answer with, so the scenario is also the record of what was sent (the
end-to-end test derives its expected figures from it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from shared import vocabulary

SEMESTER = "2019-2020-1"
NEXT_SEMESTER = "2019-2020-2"
SCHOOL_YEAR = "2019-2020"
CENT = Decimal("0.01")

MATERIAL_KINDS = frozenset(vocabulary.MATERIAL_KINDS)
SUPPLIERS = {
    "public_transport": "AS Daugavpils satiksme",
    "special_transport": "SIA Latgales transports",
    "accommodation": "Daugavpils internāts",
    "meals": "SIA Skolas virtuve",
    "learning_materials": "Zvaigzne ABC",
    "personal_items": "SIA Apģērbu nams",
}


# -- what is sent ---------------------------------------------------------------------------


@dataclass
class Sign:
    code: str
    group: str
    observed_on: date
    evidence: str


@dataclass
class Pupil:
    key: str
    school_id: str
    grade: int
    gender: str
    birth_date: date
    # Personal data: kept out of repr so no traceback or log line ever shows it.
    given_name: str = field(repr=False)
    family_name: str = field(repr=False)
    personal_code: str = field(repr=False)
    signs: list[Sign] = field(default_factory=list)
    pupil_id: str | None = None

    @property
    def at_risk(self) -> bool:
        return bool(self.signs)

    def age_on(self, day: date) -> int:
        born = self.birth_date
        return day.year - born.year - ((day.month, day.day) < (born.month, born.day))

    def registration(self) -> dict[str, Any]:
        return {
            "school_id": self.school_id,
            "grade": self.grade,
            "given_name": self.given_name,
            "family_name": self.family_name,
            "personal_code": self.personal_code,
            "birth_date": self.birth_date.isoformat(),
            "gender": self.gender,
        }


@dataclass
class Measure:
    key: str
    kind: str
    risk_code: str
    justification: str
    hours: Decimal | None = None
    amount_eur: Decimal | None = None
    subject: str | None = None
    measure_id: str | None = None

    @property
    def material(self) -> bool:
        return self.kind in MATERIAL_KINDS

    def body(self, *, hours: Decimal | None = None) -> dict[str, Any]:
        """The request body (``hours`` overrides the planned hours, for a revision)."""
        body: dict[str, Any] = {
            "kind": self.kind,
            "risk_code": self.risk_code,
            "justification": self.justification,
        }
        if self.material:
            body["amount_eur"] = f"{self.amount_eur:.2f}"
        else:
            body["hours"] = number(hours if hours is not None else self.hours)
        if self.subject:
            body["subject"] = self.subject
        return body


@dataclass
class Consultation:
    measure: Measure
    day: date
    hours: Decimal
    remote: bool
    confirmed_on: date | None
    provider: str
    topic: str
    after_revision: bool = False
    consultation_id: str | None = None


@dataclass
class Delivery:
    measure: Measure
    delivered_on: date
    amount_eur: Decimal
    receipt_no: str
    delivery_id: str | None = None


@dataclass
class Revision:
    measure: Measure
    hours: Decimal
    reason: str


@dataclass
class Evaluation:
    risk_outcomes: dict[str, str]
    outcome: str
    close: bool


@dataclass
class Approval:
    level: str
    by: str


@dataclass
class Plan:
    key: str
    pupil: Pupil
    semester: str
    consent_given_by: str
    consent_signed_on: date
    measures: list[Measure]
    # Where the plan is left: "draft" (never submitted), an approval level it waits at, or
    # None (approved at every level).
    stops_at: str | None = None
    consultations: list[Consultation] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    revision: Revision | None = None
    evaluation: Evaluation | None = None
    previous: Plan | None = None
    next: Plan | None = field(default=None, repr=False)
    plan_id: str | None = None
    approvals: list[Approval] = field(default_factory=list)

    @property
    def fully_approved(self) -> bool:
        return self.stops_at is None

    @property
    def risk_codes(self) -> list[str]:
        return [sign.code for sign in self.pupil.signs]

    def measure(self, kind: str, risk_code: str) -> Measure:
        return next(m for m in self.measures if (m.kind, m.risk_code) == (kind, risk_code))

    def draft_body(self) -> dict[str, Any]:
        return {
            "pupil_id": self.pupil.pupil_id,
            "semester": self.semester,
            "consent": {
                "given_by": self.consent_given_by,
                "signed_on": self.consent_signed_on.isoformat(),
            },
        }


@dataclass
class Departure:
    pupil: Pupil
    plan: Plan
    reason: str
    on: date


@dataclass
class Transfer:
    """The pupil whose plan ended in a transfer leaves for another school at the start of
    the next semester. That school registers the pupil again (identification enrols the same
    pupil, under the same id) and records a sign of its own."""

    pupil: Pupil
    plan: Plan
    to_school_id: str
    on: date
    sign: Sign


@dataclass
class Scenario:
    seed: int
    schools: list[dict[str, Any]]
    pupils: list[Pupil]
    plans: list[Plan]
    budgets: dict[tuple[str, str], Decimal]
    departure: Departure
    transfer: Transfer

    def plans_in(self, semester: str) -> list[Plan]:
        return [plan for plan in self.plans if plan.semester == semester]

    @property
    def at_risk(self) -> list[Pupil]:
        return [pupil for pupil in self.pupils if pupil.at_risk]

    @property
    def continued(self) -> Plan:
        return next(plan for plan in self.plans if plan.next is not None)

    @property
    def revised(self) -> Plan:
        return next(plan for plan in self.plans if plan.revision is not None)


def number(value: Decimal | None) -> int | float:
    """Hours as a JSON number (the API's form)."""
    assert value is not None
    return int(value) if value == value.to_integral_value() else float(value)


def eur(value: str | float) -> Decimal:
    return Decimal(str(value)).quantize(CENT)
