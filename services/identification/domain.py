"""Pupils and their risk signs (the first slice: register, record a sign, flag at risk)."""

from __future__ import annotations

from datetime import date
from typing import Any

from eventsourcing.domain import Aggregate, event

from shared.errors import ConflictError, InvalidInputError, StaleVersionError

# The catalogue of risk signs, by group (../shared/domain.md).
RISK_GROUPS: dict[str, tuple[str, ...]] = {
    "learning": (
        "difficulties",
        "gaps",
        "low_achievement",
        "absences",
        "behaviour",
        "language_barrier",
        "low_motivation",
        "conflicts",
        "repeated_year",
    ),
    "economic": ("low_income", "lacks_essentials", "transport_costs", "paid_work"),
    "family": ("lack_of_care", "crisis", "caring_duties", "early_parenthood"),
    "social_health": ("health", "addiction", "environment", "special_needs"),
}
RISK_CODES = frozenset(f"{group}.{sign}" for group, signs in RISK_GROUPS.items() for sign in signs)


class UnknownRiskCodeError(InvalidInputError):
    code = "unknown_risk_code"


class RiskSignAlreadyActiveError(ConflictError):
    code = "risk_sign_already_active"


class Pupil(Aggregate):
    @event("Registered")
    def __init__(self, school_id: str, grade: int, gender: str, birth_date: date, by: str) -> None:
        self.school_id = school_id
        self.grade = grade
        self.gender = gender
        self.birth_date = birth_date
        self.risk_signs: dict[str, dict[str, Any]] = {}

    @property
    def at_risk(self) -> bool:
        return any(sign["active"] for sign in self.risk_signs.values())

    def check_version(self, expected_version: int) -> None:
        if expected_version != self.version:
            raise StaleVersionError(expected_version, self.version)

    def check_can_record(self, code: str) -> None:
        if code not in RISK_CODES:
            raise UnknownRiskCodeError(f"unknown risk sign {code}", {"code": code})
        if self.risk_signs.get(code, {}).get("active"):
            raise RiskSignAlreadyActiveError(f"risk sign {code} is already active", {"code": code})

    def record_risk_sign(
        self, code: str, observed_on: date, evidence: str, source: str, by: str
    ) -> None:
        self.check_can_record(code)
        was_at_risk = self.at_risk
        self._record_risk_sign(code, observed_on, evidence, source, by)
        if not was_at_risk:
            self._flag_at_risk(self.school_id, by)

    @event("RiskSignRecorded")
    def _record_risk_sign(
        self, code: str, observed_on: date, evidence: str, source: str, by: str
    ) -> None:
        self.risk_signs[code] = {
            "code": code,
            "observed_on": observed_on,
            "source": source,
            "evidence": evidence,
            "active": True,
        }

    @event("FlaggedAtRisk")
    def _flag_at_risk(self, school_id: str, by: str) -> None:
        pass
