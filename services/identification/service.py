"""Identification's entrypoints: load schema, call the application, dump schema."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from services.identification.application import IdentificationApplication, PupilNotFoundError
from services.identification.schemas import (
    CreatedPupilSchema,
    PupilSchema,
    RecordRiskSignSchema,
    RegisterPupilSchema,
    VersionSchema,
)
from shared.auth import DIRECTOR, TEACHER
from shared.eventstore import EventStore
from shared.service import ServiceBase
from shared.web import Call, route

READERS = (TEACHER, DIRECTOR, "municipal_coordinator", "national_coordinator", "auditor")


def make_application(env: Mapping[str, str]) -> IdentificationApplication:
    return IdentificationApplication(env)


class IdentificationService(ServiceBase):
    name = "identification"
    app: IdentificationApplication = EventStore(make_application)

    @route(
        "POST",
        "/pupils",
        body=RegisterPupilSchema,
        answer=CreatedPupilSchema,
        status=201,
        roles=(TEACHER, DIRECTOR),
    )
    def register_pupil(self, call: Call) -> Any:
        call.user.require_school(call.body["school_id"])
        return self.app.register_pupil(**call.body, by=call.user.sub)

    @route("GET", "/pupils/<uuid:pupil_id>", answer=PupilSchema, roles=READERS)
    def get_pupil(self, call: Call, pupil_id: UUID) -> Any:
        pupil = self.app.get_pupil(pupil_id)
        if not call.user.sees_school(pupil.school_id):
            raise PupilNotFoundError(f"pupil {pupil_id} not found")
        return pupil

    @route(
        "POST",
        "/pupils/<uuid:pupil_id>/risk-signs",
        body=RecordRiskSignSchema,
        answer=VersionSchema,
        status=201,
        roles=(TEACHER, DIRECTOR),
    )
    def record_risk_sign(self, call: Call, pupil_id: UUID) -> Any:
        pupil = self.app.get_pupil(pupil_id)
        if not call.user.sees_school(pupil.school_id):
            raise PupilNotFoundError(f"pupil {pupil_id} not found")
        return self.app.record_risk_sign(pupil_id, **call.body, by=call.user.sub)
