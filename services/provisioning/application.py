"""Provisioning's use cases: each loads, calls the domain, saves.

Every save commits the provisions' and the budget's new events and the provisions'
read-model rows in one transaction; planning's events commit their effect with the
inbox's tracking record. A command that changes money saves the budget too, so the
budget's version guards it: if another command saved the budget first, the save
fails with eventsourcing's IntegrityError and the whole command runs again on the new
state (a few times, then the caller gets 409). That is how two deliveries, two
approvals or an approval and a new allocation racing for one budget never overspend it.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError, Tracking

from services.provisioning import domain
from services.provisioning.domain import (
    PLAN_CLOSED,
    PLAN_DEACTIVATED,
    ApprovedPlan,
    Budget,
    BudgetNotFoundError,
    InvalidAmountError,
    Provision,
    ProvisionNotFoundError,
    SchoolNotFoundError,
    Semester,
    check_version,
    money,
)
from services.provisioning.readmodel import ProvisionsReadModel, SchoolsReadModel
from shared.auth import Principal, visible_schools
from shared.errors import ForbiddenError
from shared.inbox import IncomingEvent
from shared.store import POSTGRES, ServiceApplication, project_events

log = logging.getLogger(__name__)

PUPIL_CAP_VARIABLE = "PUMPURS_PUPIL_CAP_EUR"
ATTEMPTS = 12

T = TypeVar("T")
Passed = Sequence[Tracking]  # records of the events before, which provisioning left alone


def pupil_cap(value: str | None) -> Decimal | None:
    """The optional cap per pupil per semester (unset or empty: no cap)."""
    if value is None or not value.strip():
        return None
    cap = money(value.strip())
    if cap < 0:
        raise InvalidAmountError(f"{PUPIL_CAP_VARIABLE} must not be negative")
    return cap


def retried(method: Callable[..., T]) -> Callable[..., T]:
    """Run the command again (on fresh state) when a concurrent save got there first."""

    @functools.wraps(method)
    def again(self: ProvisioningApplication, *args: Any, **kwargs: Any) -> T:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return method(self, *args, **kwargs)
            except IntegrityError:
                if attempt == ATTEMPTS:
                    raise
                self.conflicts += 1
                log.info("%s lost a race for its aggregates: attempt %d", method.__name__, attempt)
                time.sleep(random.uniform(0, 0.01 * attempt))
        raise AssertionError("unreachable")

    return again


class ProvisioningApplication(ServiceApplication):
    name = "provisioning"
    # A school's budget changes with every provision of the semester, so replaying it for
    # each command costs more as the semester goes on. Recently used aggregates stay in
    # memory; each load reads only the events saved since (by any replica) and works on a
    # copy, so a refused command leaves the cache as it was.
    # A provision's commands come in a burst (requested, ordered, delivered) and a school
    # has one budget a semester, so a few hundred cover what is being worked on, as in
    # planning. AGGREGATE_CACHE_MAXSIZE in the environment overrides it.
    env = {**ServiceApplication.env, "AGGREGATE_CACHE_MAXSIZE": "250"}
    # Loading reads the latest snapshot and at most this many events after it.
    snapshotting_intervals = {Budget: 100, Provision: 50}

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        super().__init__(env)
        self.pupil_cap = pupil_cap(self.env.get(PUPIL_CAP_VARIABLE))
        self.provisions = ProvisionsReadModel(self.table_prefix)
        self.schools = SchoolsReadModel(self.table_prefix)
        self.conflicts = 0  # saves lost to a concurrent command (and retried)
        with self.transaction() as sql:
            if self.dialect == POSTGRES:  # replicas starting together create tables once
                sql.execute("SELECT pg_advisory_xact_lock(hashtext('pumpurs-ddl'))")
            self.provisions.create_table(sql)
            self.schools.create_table(sql)

    # -- the schools, for the tenant policy ------------------------------------------------------
    def apply_identification_events(self, events: Sequence[IncomingEvent]) -> None:
        """Consecutive events of identification: only a school's registration matters here."""
        effects = [
            e for event in events for e in self.schools.effects_for(event.type, event.payload)
        ]
        self.save_tracked(tracking=[event.tracking for event in events], effects=effects)

    def sees(self, user: Principal, school_id: str) -> bool:
        """Tenancy by the schools known here: identification may have registered schools
        since the shipped reference data, in any municipality."""
        return user.sees_school(school_id, lambda s: self.schools.municipality(self.query, s))

    def visible_schools(self, user: Principal, requested: str | None) -> list[str] | None:
        return visible_schools(user, requested, lambda: self.schools.directory(self.query))

    def check_school_known(self, school_id: str) -> None:
        if self.schools.municipality(self.query, school_id) is None:
            raise SchoolNotFoundError(f"no school {school_id} is registered")

    # -- loading and saving ------------------------------------------------------------------
    def budget(self, school_id: str, semester: str) -> Budget | None:
        try:
            budget: object = self.repository.get(
                Budget.create_id(school_id, semester), projector_func=project_events
            )
        except AggregateNotFoundError:
            return None
        return budget if isinstance(budget, Budget) else None

    def existing_budget(self, school_id: str, semester: str) -> Budget:
        budget = self.budget(school_id, semester)
        if budget is None:
            raise BudgetNotFoundError(f"no budget is set for {school_id} in {semester}")
        return budget

    def provision(self, provision_id: UUID | str) -> Provision:
        try:
            provision: object = self.repository.get(
                UUID(str(provision_id)), projector_func=project_events
            )
        except (AggregateNotFoundError, ValueError):
            raise ProvisionNotFoundError(f"provision {provision_id} not found") from None
        if not isinstance(provision, Provision):
            raise ProvisionNotFoundError(f"provision {provision_id} not found")
        return provision

    def provisions_of(self, plan_id: str) -> list[Provision]:
        return [self.provision(p) for p in self.provisions.of_plan(self.query, plan_id)]

    def rows(self, aggregates: Sequence[Any]) -> list[Any]:
        return [self.provisions.upsert(a) for a in aggregates if isinstance(a, Provision)]

    def save_all(self, *aggregates: Budget | Provision | None) -> None:
        present = [a for a in aggregates if a is not None]
        self.save(*present, effects=self.rows(present))

    # -- budgets -----------------------------------------------------------------------------
    def get_budget(self, school_id: str, semester: str, user: Principal) -> Budget:
        """The budget, if the school is in the caller's tenant (another school's is 404)."""
        if not self.sees(user, school_id):
            raise BudgetNotFoundError(f"no budget is set for {school_id} in {semester}")
        return self.existing_budget(school_id, str(Semester.parse(semester)))

    def budget_for_change(
        self, school_id: str, semester: str, expected_version: int | None, user: Principal
    ) -> Budget:
        """The budget to set (a new one if none yet), in the caller's tenant, version checked."""
        if not self.sees(user, school_id):
            raise ForbiddenError("this school is outside your tenant")
        self.check_school_known(school_id)
        budget = self.budget(school_id, str(Semester.parse(semester)))
        check_version(budget, expected_version)
        return budget or Budget(school_id=school_id, semester=semester, by=user.sub)

    @retried
    def set_budget(
        self,
        school_id: str,
        semester: str,
        *,
        amount_eur: Decimal,
        expected_version: int | None = None,
        user: Principal,
    ) -> Budget:
        budget = self.budget_for_change(school_id, semester, expected_version, user)
        budget.set(amount_eur, by=user.sub)
        self.save_all(budget)
        return budget

    # -- provisions ----------------------------------------------------------------------------
    def get_provision(self, provision_id: UUID, user: Principal) -> Provision:
        """The provision, if it is in the caller's tenant (another school's is 404)."""
        provision = self.provision(provision_id)
        if not self.sees(user, provision.school_id):
            raise ProvisionNotFoundError(f"provision {provision_id} not found")
        return provision

    def provision_for_change(
        self, provision_id: UUID, user: Principal, expected_version: int
    ) -> Provision:
        provision = self.get_provision(provision_id, user)
        check_version(provision, expected_version)
        return provision

    def history(self, aggregate_id: UUID, *, after: int = 0, limit: int = 1000) -> list[Any]:
        """A budget's or a provision's events in order (each with who and when), as stored."""
        return list(self.events.get(aggregate_id, gt=after, limit=limit))

    def list_provisions(
        self, school_ids: Sequence[str] | None, **filters: Any
    ) -> list[dict[str, Any]]:
        return self.provisions.list(self.query, school_ids=school_ids, **filters)

    @retried
    def order(
        self,
        provision_id: UUID,
        *,
        supplier: str,
        amount_eur: Decimal,
        expected_version: int,
        user: Principal,
    ) -> Provision:
        provision = self.provision_for_change(provision_id, user, expected_version)
        provision.order(supplier=supplier, amount_eur=amount_eur, by=user.sub)
        self.save_all(provision)
        return provision

    @retried
    def deliver(
        self,
        provision_id: UUID,
        *,
        delivered_on: date,
        amount_eur: Decimal,
        receipt_no: str,
        expected_version: int,
        user: Principal,
    ) -> tuple[Provision, str]:
        provision = self.provision_for_change(provision_id, user, expected_version)
        budget = self.existing_budget(provision.school_id, provision.semester)
        delivery_id = domain.deliver(
            provision,
            budget,
            delivered_on=delivered_on,
            amount_eur=amount_eur,
            receipt_no=receipt_no,
            on=domain.today(),
            by=user.sub,
        )
        self.save_all(provision, budget)
        return provision, delivery_id

    @retried
    def cancel(
        self, provision_id: UUID, *, reason: str, expected_version: int, user: Principal
    ) -> Provision:
        provision = self.provision_for_change(provision_id, user, expected_version)
        budget = self.budget(provision.school_id, provision.semester)
        domain.cancel(provision, budget, domain.BY_USER, reason, by=user.sub)
        self.save_all(provision, budget)
        return provision

    # -- planning's events -----------------------------------------------------------------
    def apply_planning_event(self, event: IncomingEvent) -> None:
        self.apply_planning_events([event])

    def apply_planning_events(self, events: Sequence[IncomingEvent]) -> None:
        """Consecutive events of planning, in order. Most are no business of provisioning:
        their tracking records go with the next event it acts on, or together at the end,
        so a consumer that is behind pays a transaction per event it acts on only."""
        passed: list[Tracking] = []
        handlers = self._handlers()
        for event in events:
            handler = handlers.get(event.type)
            if handler is None:
                passed.append(event.tracking)
                continue
            handler(event, passed=passed)
            passed = []
        if passed:
            self.save_tracked(tracking=passed)

    def _handlers(self) -> dict[str, Callable[..., None]]:
        return {
            "plan_fully_approved": self.on_plan_fully_approved,
            "plan_suspended": self.on_plan_suspended,
            "plan_resumed": self.on_plan_resumed,
            "plan_deactivated": functools.partial(self.on_plan_ended, cause=PLAN_DEACTIVATED),
            "plan_closed": functools.partial(self.on_plan_ended, cause=PLAN_CLOSED),
        }

    def save_tracked_all(
        self,
        event: IncomingEvent,
        *aggregates: Budget | Provision | None,
        passed: Passed = (),
    ) -> None:
        """Commit the effect with the inbox record (and those of the events ``passed``
        before it), unless another consumer of the same queue (a replica) applied the
        event first, and with it the ones before."""
        tracking = event.tracking
        if self.last_tracked(tracking.application_name) >= tracking.notification_id:
            return
        present = [a for a in aggregates if a is not None]
        self.save_tracked(*present, tracking=[*passed, tracking], effects=self.rows(present))

    @retried
    def on_plan_fully_approved(self, event: IncomingEvent, passed: Passed = ()) -> None:
        plan = ApprovedPlan.from_payload(event.payload)
        budget = self.budget(plan.school_id, plan.semester)
        provisions = self.provisions_of(plan.plan_id)
        touched = domain.reconcile(
            plan, provisions, budget, self.pupil_cap, by=event.envelope.actor
        )
        self.save_tracked_all(event, *touched, budget, passed=passed)

    @retried
    def on_plan_suspended(self, event: IncomingEvent, passed: Passed = ()) -> None:
        provisions = self.provisions_of(event.envelope.aggregate_id)
        held = domain.put_on_hold(provisions, by=event.envelope.actor)
        self.save_tracked_all(event, *held, passed=passed)

    @retried
    def on_plan_resumed(self, event: IncomingEvent, passed: Passed = ()) -> None:
        provisions = self.provisions_of(event.envelope.aggregate_id)
        resumed = domain.resume(provisions, by=event.envelope.actor)
        self.save_tracked_all(event, *resumed, passed=passed)

    @retried
    def on_plan_ended(self, event: IncomingEvent, *, cause: str, passed: Passed = ()) -> None:
        provisions = self.provisions_of(event.envelope.aggregate_id)
        budget = (
            self.budget(provisions[0].school_id, provisions[0].semester) if provisions else None
        )
        ended = domain.end(provisions, budget, cause, by=event.envelope.actor)
        self.save_tracked_all(event, *ended, budget if ended else None, passed=passed)
