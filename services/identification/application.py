"""Identification's use cases: each gets, calls one command, saves."""

from __future__ import annotations

from datetime import date
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from services.identification.domain import Pupil
from shared.errors import NotFoundError
from shared.store import ServiceApplication


class PupilNotFoundError(NotFoundError):
    code = "pupil_not_found"


class IdentificationApplication(ServiceApplication):
    name = "identification"

    def register_pupil(
        self, *, school_id: str, grade: int, gender: str, birth_date: date, by: str
    ) -> Pupil:
        pupil = Pupil(school_id=school_id, grade=grade, gender=gender, birth_date=birth_date, by=by)
        self.save(pupil)
        return pupil

    def record_risk_sign(
        self,
        pupil_id: UUID,
        *,
        code: str,
        observed_on: date,
        evidence: str,
        expected_version: int,
        by: str,
        source: str = "assessment",
    ) -> Pupil:
        pupil = self.get_pupil(pupil_id)
        pupil.check_version(expected_version)
        pupil.record_risk_sign(code, observed_on, evidence, source, by)
        self.save(pupil)
        return pupil

    def get_pupil(self, pupil_id: UUID) -> Pupil:
        try:
            pupil: object = self.repository.get(pupil_id)
        except AggregateNotFoundError:
            raise PupilNotFoundError(f"pupil {pupil_id} not found") from None
        if not isinstance(pupil, Pupil):
            raise PupilNotFoundError(f"pupil {pupil_id} not found")
        return pupil
