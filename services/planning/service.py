"""Planning's entrypoints: load schema, call the application, dump schema."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from services.planning.application import AdultOn, PlanningApplication
from services.planning.identity import AdultCheck
from services.planning.schemas import (
    ConfirmSchema,
    ConsultationCreatedSchema,
    ConsultationRequestSchema,
    ContinuedSchema,
    ContinueSchema,
    DraftPlanSchema,
    EvaluateSchema,
    HistoryQuerySchema,
    HistorySchema,
    MeasureCreatedSchema,
    MeasureRequestSchema,
    PlanListSchema,
    PlanSchema,
    PlansQuerySchema,
    PlanVersionSchema,
    PupilListSchema,
    PupilsQuerySchema,
    ReasonSchema,
    Versioned,
    VersionQuerySchema,
)
from shared.auth import (
    AUDITOR,
    DIRECTOR,
    MUNICIPAL_COORDINATOR,
    NATIONAL_COORDINATOR,
    TEACHER,
    Principal,
)
from shared.eventstore import EventStore
from shared.inbox import IncomingEvent, inbox
from shared.rpc import rpc
from shared.service import ServiceBase
from shared.web import Call, relayed, route, schema_instance

READERS = (TEACHER, DIRECTOR, MUNICIPAL_COORDINATOR, NATIONAL_COORDINATOR, AUDITOR)
AUTHORS = (TEACHER, DIRECTOR)
APPROVERS = (DIRECTOR, MUNICIPAL_COORDINATOR, NATIONAL_COORDINATOR)
PLAN = "/plans/<uuid:plan_id>"


def make_application(env: Mapping[str, str]) -> PlanningApplication:
    return PlanningApplication(env)


class PlanningService(ServiceBase):
    name = "planning"
    app: PlanningApplication = EventStore(make_application)
    adult_on: AdultOn = AdultCheck()

    @inbox("identification", batched=True)
    def on_identification_events(self, events: list[IncomingEvent]) -> None:
        self.app.apply_identification_events(events)

    @inbox("provisioning")
    def on_provisioning_event(self, event: IncomingEvent) -> None:
        self.app.apply_provisioning_event(event)

    @route("GET", "/pupils-at-risk", query=PupilsQuerySchema, answer=PupilListSchema, roles=READERS)
    def pupils_at_risk(self, call: Call) -> Any:
        schools = self.app.visible_schools(call.user, call.query.get("school_id"))
        return {"items": self.app.pupils_at_risk(schools)}

    # -- plans ------------------------------------------------------------------------
    @route(
        "POST", "/plans", body=DraftPlanSchema, answer=PlanVersionSchema, status=201, roles=AUTHORS
    )
    def draft_plan(self, call: Call) -> Any:
        return self.app.draft_plan(**call.body, user=call.user, adult_on=self.adult_on)

    @route("GET", PLAN, answer=PlanSchema, roles=READERS)
    def get_plan(self, call: Call, plan_id: UUID) -> Any:
        return self.app.plan_view(plan_id, call.user)

    @route("GET", "/plans", query=PlansQuerySchema, answer=PlanListSchema, roles=READERS)
    def list_plans(self, call: Call) -> Any:
        query = dict(call.query)
        schools = self.app.visible_schools(call.user, query.pop("school_id", None))
        after = str(query.pop("after")) if query.get("after") else None
        items = self.app.list_plans(schools, after=after, **query)
        full = len(items) == query["limit"]
        return {"items": items, "next_after": items[-1]["plan_id"] if full else None}

    @route("GET", f"{PLAN}/history", query=HistoryQuerySchema, answer=HistorySchema, roles=READERS)
    def plan_history(self, call: Call, plan_id: UUID) -> Any:
        events = self.app.history(plan_id, call.user, **call.query)
        full = len(events) == call.query["limit"]
        last = events[-1].originator_version if full else None
        return {"plan_id": str(plan_id), "items": events, "next_after": last}

    # -- measures -----------------------------------------------------------------------
    @route(
        "POST",
        f"{PLAN}/measures",
        body=MeasureRequestSchema,
        answer=MeasureCreatedSchema,
        status=201,
        roles=AUTHORS,
    )
    def add_measure(self, call: Call, plan_id: UUID) -> Any:
        plan, measure_id = self.app.add_measure(plan_id, **call.body, user=call.user)
        return {"measure_id": measure_id, "version": plan.version}

    @route(
        "PUT",
        f"{PLAN}/measures/<uuid:measure_id>",
        body=MeasureRequestSchema,
        answer=PlanVersionSchema,
        roles=AUTHORS,
    )
    def change_measure(self, call: Call, plan_id: UUID, measure_id: UUID) -> Any:
        return self.app.change_measure(plan_id, measure_id, **call.body, user=call.user)

    @route(
        "DELETE",
        f"{PLAN}/measures/<uuid:measure_id>",
        query=VersionQuerySchema,
        answer=PlanVersionSchema,
        roles=AUTHORS,
    )
    def remove_measure(self, call: Call, plan_id: UUID, measure_id: UUID) -> Any:
        return self.app.remove_measure(plan_id, measure_id, **call.query, user=call.user)

    # -- the lifecycle ----------------------------------------------------------------
    @route("POST", f"{PLAN}/submit", body=Versioned, answer=PlanVersionSchema, roles=AUTHORS)
    def submit(self, call: Call, plan_id: UUID) -> Any:
        return self.app.submit(plan_id, **call.body, user=call.user)

    @route("POST", f"{PLAN}/approve", body=Versioned, answer=PlanVersionSchema, roles=APPROVERS)
    def approve(self, call: Call, plan_id: UUID) -> Any:
        return self.app.approve(plan_id, **call.body, user=call.user)

    @route("POST", f"{PLAN}/return", body=ReasonSchema, answer=PlanVersionSchema, roles=APPROVERS)
    def return_to_author(self, call: Call, plan_id: UUID) -> Any:
        return self.app.return_to_author(plan_id, **call.body, user=call.user)

    @route("POST", f"{PLAN}/revise", body=ReasonSchema, answer=PlanVersionSchema, roles=AUTHORS)
    def revise(self, call: Call, plan_id: UUID) -> Any:
        return self.app.revise(plan_id, **call.body, user=call.user)

    @route("POST", f"{PLAN}/suspend", body=ReasonSchema, answer=PlanVersionSchema, roles=AUTHORS)
    def suspend(self, call: Call, plan_id: UUID) -> Any:
        return self.app.suspend(plan_id, **call.body, user=call.user)

    @route("POST", f"{PLAN}/resume", body=Versioned, answer=PlanVersionSchema, roles=AUTHORS)
    def resume(self, call: Call, plan_id: UUID) -> Any:
        return self.app.resume(plan_id, **call.body, user=call.user)

    @route("POST", f"{PLAN}/deactivate", body=ReasonSchema, answer=PlanVersionSchema, roles=AUTHORS)
    def deactivate(self, call: Call, plan_id: UUID) -> Any:
        return self.app.deactivate(plan_id, **call.body, user=call.user)

    @route("POST", f"{PLAN}/evaluate", body=EvaluateSchema, answer=PlanVersionSchema, roles=AUTHORS)
    def evaluate(self, call: Call, plan_id: UUID) -> Any:
        return self.app.evaluate(plan_id, **call.body, user=call.user)

    @route(
        "POST",
        f"{PLAN}/continue",
        body=ContinueSchema,
        answer=ContinuedSchema,
        status=201,
        roles=AUTHORS,
    )
    def continue_plan(self, call: Call, plan_id: UUID) -> Any:
        previous, plan = self.app.continue_plan(plan_id, **call.body, user=call.user)
        return {
            "plan_id": str(plan.id),
            "version": plan.version,
            "previous_plan_id": str(previous.id),
            "previous_version": previous.version,
        }

    @route("POST", f"{PLAN}/close", body=Versioned, answer=PlanVersionSchema, roles=AUTHORS)
    def close(self, call: Call, plan_id: UUID) -> Any:
        return self.app.close_plan(plan_id, **call.body, user=call.user)

    # -- delivered consultations --------------------------------------------------------
    @route(
        "POST",
        f"{PLAN}/consultations",
        body=ConsultationRequestSchema,
        answer=ConsultationCreatedSchema,
        status=201,
        roles=AUTHORS,
    )
    def log_consultation(self, call: Call, plan_id: UUID) -> Any:
        plan, consultation_id = self.app.log_consultation(plan_id, **call.body, user=call.user)
        return {"consultation_id": consultation_id, "version": plan.version}

    @route(
        "POST",
        f"{PLAN}/consultations/<uuid:consultation_id>/confirm",
        body=ConfirmSchema,
        answer=PlanVersionSchema,
        roles=AUTHORS,
    )
    def confirm_consultation(self, call: Call, plan_id: UUID, consultation_id: UUID) -> Any:
        return self.app.confirm_consultation(plan_id, consultation_id, **call.body, user=call.user)

    # -- audit: reporting relays these answers to auditors --------------------------------
    @rpc
    def audit_plan_history(self, plan_id: str, principal: dict[str, Any]) -> dict[str, Any]:
        def answer() -> Any:
            events = self.app.full_history(UUID(plan_id), Principal(**principal))
            return schema_instance(HistorySchema).dump({"plan_id": plan_id, "items": events})

        return relayed(answer)

    @rpc
    def audit_plan_as_of(
        self, plan_id: str, principal: dict[str, Any], as_of: str | None = None
    ) -> dict[str, Any]:
        def answer() -> Any:
            at = datetime.fromisoformat(as_of) if as_of else None
            view = self.app.plan_as_of(UUID(plan_id), Principal(**principal), at)
            return {**schema_instance(PlanSchema).dump(view), "as_of": as_of}

        return relayed(answer)
