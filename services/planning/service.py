"""Planning's entrypoints."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.planning.application import PlanningApplication
from services.planning.schemas import PupilListSchema, PupilsQuerySchema
from shared.auth import NATIONWIDE_ROLES, Principal
from shared.eventstore import EventStore
from shared.inbox import IncomingEvent, inbox
from shared.schools import reference_schools
from shared.service import ServiceBase
from shared.web import Call, route

READERS = ("teacher", "director", "municipal_coordinator", "national_coordinator", "auditor")


def make_application(env: Mapping[str, str]) -> PlanningApplication:
    return PlanningApplication(env)


def visible_schools(principal: Principal, requested: str | None) -> list[str] | None:
    """The schools a list may show: the tenant's, narrowed by the request."""
    if principal.role in NATIONWIDE_ROLES:
        return [requested] if requested else None
    schools = [s for s in reference_schools() if principal.sees_school(s)]
    return [s for s in schools if s == requested] if requested else schools


class PlanningService(ServiceBase):
    name = "planning"
    app: PlanningApplication = EventStore(make_application)

    @inbox("identification")
    def on_identification_event(self, event: IncomingEvent) -> None:
        self.app.apply_identification_event(event)

    @route("GET", "/pupils-at-risk", query=PupilsQuerySchema, answer=PupilListSchema, roles=READERS)
    def pupils_at_risk(self, call: Call) -> Any:
        schools = visible_schools(call.user, call.query.get("school_id"))
        return {"items": self.app.pupils_at_risk(schools)}
