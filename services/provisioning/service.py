"""Provisioning's entrypoints: load schema, call the application, dump schema.

Who may do what: municipal coordinators (their own municipality's schools) and the
national coordinator set budgets; the school's director and those coordinators order,
record deliveries and cancel; teachers of the school and auditors read. Another
tenant's provision or budget is not found (404).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from services.provisioning.application import ProvisioningApplication
from services.provisioning.schemas import (
    BudgetSchema,
    CancelSchema,
    DeliveredSchema,
    DeliverSchema,
    HistoryQuerySchema,
    HistorySchema,
    OrderSchema,
    ProvisionListSchema,
    ProvisionSchema,
    ProvisionsQuerySchema,
    SetBudgetSchema,
    budget_view,
    provision_view,
)
from shared.auth import (
    AUDITOR,
    DIRECTOR,
    MUNICIPAL_COORDINATOR,
    NATIONAL_COORDINATOR,
    TEACHER,
)
from shared.eventstore import EventStore
from shared.inbox import IncomingEvent, inbox
from shared.service import ServiceBase
from shared.web import Call, route

# Most of planning's events, and all of identification's but a school's registration, need
# nothing of provisioning but their tracking record; they wait this long (seconds) for
# company in one transaction.
MOSTLY_NOT_OURS = 0.05
READERS = (TEACHER, DIRECTOR, MUNICIPAL_COORDINATOR, NATIONAL_COORDINATOR, AUDITOR)
BUDGET_SETTERS = (MUNICIPAL_COORDINATOR, NATIONAL_COORDINATOR)
PROVIDERS = (DIRECTOR, MUNICIPAL_COORDINATOR, NATIONAL_COORDINATOR)
BUDGET = "/budgets/<string:school_id>/<string:semester>"
PROVISION = "/provisions/<uuid:provision_id>"


def make_application(env: Mapping[str, str]) -> ProvisioningApplication:
    return ProvisioningApplication(env)


class ProvisioningService(ServiceBase):
    name = "provisioning"
    app: ProvisioningApplication = EventStore(make_application)

    @inbox("identification", batched=True, linger=MOSTLY_NOT_OURS)
    def on_identification_events(self, events: list[IncomingEvent]) -> None:
        self.app.apply_identification_events(events)

    @inbox("planning", batched=True, linger=MOSTLY_NOT_OURS)
    def on_planning_events(self, events: list[IncomingEvent]) -> None:
        self.app.apply_planning_events(events)

    # -- budgets ---------------------------------------------------------------------------
    @route("PUT", BUDGET, body=SetBudgetSchema, answer=BudgetSchema, roles=BUDGET_SETTERS)
    def set_budget(self, call: Call, school_id: str, semester: str) -> Any:
        budget = self.app.set_budget(school_id, semester, **call.body, user=call.user)
        return budget_view(budget)

    @route("GET", BUDGET, answer=BudgetSchema, roles=READERS)
    def get_budget(self, call: Call, school_id: str, semester: str) -> Any:
        return budget_view(self.app.get_budget(school_id, semester, call.user))

    @route(
        "GET", f"{BUDGET}/history", query=HistoryQuerySchema, answer=HistorySchema, roles=READERS
    )
    def budget_history(self, call: Call, school_id: str, semester: str) -> Any:
        budget = self.app.get_budget(school_id, semester, call.user)
        return self._history(budget.id, call.query)

    # -- provisions ----------------------------------------------------------------------------
    @route(
        "GET", "/provisions", query=ProvisionsQuerySchema, answer=ProvisionListSchema, roles=READERS
    )
    def list_provisions(self, call: Call) -> Any:
        query = dict(call.query)
        schools = self.app.visible_schools(call.user, query.pop("school_id", None))
        for key in ("plan_id", "after"):
            query[key] = str(query[key]) if query.get(key) else None
        items = self.app.list_provisions(schools, **query)
        full = len(items) == query["limit"]
        return {"items": items, "next_after": items[-1]["provision_id"] if full else None}

    @route("GET", PROVISION, answer=ProvisionSchema, roles=READERS)
    def get_provision(self, call: Call, provision_id: UUID) -> Any:
        return provision_view(self.app.get_provision(provision_id, call.user))

    @route(
        "GET", f"{PROVISION}/history", query=HistoryQuerySchema, answer=HistorySchema, roles=READERS
    )
    def provision_history(self, call: Call, provision_id: UUID) -> Any:
        provision = self.app.get_provision(provision_id, call.user)
        return self._history(provision.id, call.query)

    @route("POST", f"{PROVISION}/order", body=OrderSchema, answer=ProvisionSchema, roles=PROVIDERS)
    def order(self, call: Call, provision_id: UUID) -> Any:
        return provision_view(self.app.order(provision_id, **call.body, user=call.user))

    @route(
        "POST",
        f"{PROVISION}/deliver",
        body=DeliverSchema,
        answer=DeliveredSchema,
        status=201,
        roles=PROVIDERS,
    )
    def deliver(self, call: Call, provision_id: UUID) -> Any:
        provision, delivery_id = self.app.deliver(provision_id, **call.body, user=call.user)
        return {**provision_view(provision), "delivery_id": delivery_id}

    @route(
        "POST", f"{PROVISION}/cancel", body=CancelSchema, answer=ProvisionSchema, roles=PROVIDERS
    )
    def cancel(self, call: Call, provision_id: UUID) -> Any:
        return provision_view(self.app.cancel(provision_id, **call.body, user=call.user))

    def _history(self, aggregate_id: UUID, query: dict[str, Any]) -> dict[str, Any]:
        events = self.app.history(aggregate_id, **query)
        full = len(events) == query["limit"]
        last = events[-1].originator_version if full else None
        return {"id": str(aggregate_id), "items": events, "next_after": last}
