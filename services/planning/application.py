"""Planning's use cases: each gets the plan, calls one command, saves.

Every save commits the plan's new events and its row in the plans read model in one
transaction; the identification inbox commits its effects (read-model rows and, for a
departure, the closing events of the pupil's plans) with its tracking record.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from itertools import takewhile
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from services.planning.domain import (
    CLOSED,
    LEVEL_OF_ROLE,
    PUPIL_SIGNS,
    Plan,
    PlanAlreadyExistsError,
    PupilNotFoundError,
    PupilView,
    Semester,
    check_consent_signed,
    check_consent_signer,
    check_may_have_plan,
)
from services.planning.readmodel import (
    Effect,
    PlansReadModel,
    ProvisionsReadModel,
    PupilsReadModel,
    SchoolsReadModel,
)
from shared.auth import Principal, visible_schools
from shared.errors import ForbiddenError, NotFoundError, PumpursError
from shared.inbox import IncomingEvent
from shared.store import ServiceApplication, Sql, project_events

log = logging.getLogger(__name__)

RATES_FILE = Path(__file__).with_name("rates.json")
# How the plan's Closed events are stored (eventsourcing names the event class by topic).
CLOSED_TOPIC = f"{get_topic(Plan)}.Closed"


def closes_on_departure(event: Any) -> bool:
    """Whether a stored event of a plan is its closing on the pupil's departure."""
    return get_topic(type(event)) == CLOSED_TOPIC and event.cause == "pupil_departed"


# Whether a pupil was of age on a day: True, False, or None when not known.
AdultOn = Callable[[str, date], bool | None]


def never_asked(pupil_id: str, day: date) -> bool | None:
    """Without identification to ask, no pupil is known to be of age."""
    return None


class PlanNotFoundError(NotFoundError):
    code = "plan_not_found"


class PlanNotYetCreatedError(NotFoundError):
    code = "plan_not_yet_created"


@dataclass(frozen=True)
class PlanView:
    """A plan as read: the aggregate, and provisioning's status of its material measures."""

    plan: Plan
    provision_statuses: dict[str, str]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.plan, name)


def load_rates(path: str | os.PathLike[str] | None = None) -> dict[str, Decimal]:
    """EUR per hour of consultation, per provider kind."""
    data = json.loads(Path(path or RATES_FILE).read_text("utf-8"))
    return {kind: Decimal(str(rate)) for kind, rate in data["eur_per_hour"].items()}


class PlanningApplication(ServiceApplication):
    name = "planning"
    # Recently used plans stay in memory; each load reads only the events saved since
    # (by any replica) and works on a copy, so a refused command leaves the cache as it was.
    # Commands on one plan come in bursts (drafting, approvals, deliveries), so a few
    # hundred cover the plans being worked on: at 100 commands/s the load suite's 250 are
    # its last 40 s of plans, and 1,000 held 8 MiB more. AGGREGATE_CACHE_MAXSIZE in the
    # environment overrides it.
    env = {**ServiceApplication.env, "AGGREGATE_CACHE_MAXSIZE": "250"}
    # Loading a plan reads its latest snapshot and at most this many events after it.
    snapshotting_intervals = {Plan: 20}
    snapshotting_projectors = {Plan: project_events}

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        super().__init__(env)
        self.rates = load_rates(self.env.get("RATES_FILE") or None)
        self.pupils = PupilsReadModel(self.table_prefix)
        self.schools = SchoolsReadModel(self.table_prefix)
        self.plans = PlansReadModel(self.table_prefix)
        self.provisions = ProvisionsReadModel(self.table_prefix)
        with self.transaction() as sql:
            self.pupils.create_table(sql)
            self.schools.create_table(sql)
            if self.plans.create_table(sql):
                self.plans.mark_ended_by_departure(sql, self.plans_closed_on_departure(sql))
            self.provisions.create_table(sql)

    def plans_closed_on_departure(self, sql: Sql) -> list[str]:
        """The plans a departure closed, as their stored events tell: the rows an earlier
        release wrote do not say why a plan was closed. Read once, when the mark is added."""
        rows = sql.execute(
            f"SELECT originator_id, originator_version, topic, state FROM {self.events_table} "
            "WHERE topic = ?",
            (CLOSED_TOPIC,),
        ).fetchall()
        closings = (
            self.mapper.to_domain_event(
                StoredEvent(
                    originator_id=row["originator_id"],
                    originator_version=row["originator_version"],
                    topic=row["topic"],
                    state=bytes(row["state"]),
                )
            )
            for row in rows
        )
        return [str(e.originator_id) for e in closings if closes_on_departure(e)]

    # -- identification's events ---------------------------------------------------------
    def apply_identification_event(self, event: IncomingEvent) -> None:
        self.apply_identification_events([event])

    def apply_identification_events(self, events: Sequence[IncomingEvent]) -> None:
        """Consecutive events of identification, applied in one transaction."""
        effects, closed = [], []
        for event in events:
            envelope, payload = event.envelope, event.payload
            effects += self.pupils.effects_for(
                envelope.event_type, envelope.aggregate_id, envelope.aggregate_version, payload
            ) + self.schools.effects_for(envelope.event_type, payload)
            if envelope.event_type == "pupil_departed":
                closed += self.close_plans_of_departed(
                    envelope.aggregate_id, payload, envelope.actor
                )
        effects += [self.plans.upsert(plan) for plan in closed]
        trackings = [event.tracking for event in events]
        self.save_tracked(*closed, tracking=trackings, effects=effects)

    def close_plans_of_departed(
        self, pupil_id: str, payload: Mapping[str, Any], actor: str
    ) -> list[Plan]:
        plans = [self.load(UUID(p)) for p in self.plans.active_plans(self.query, pupil_id)]
        for plan in plans:
            plan.close_on_departure(reason=payload["reason"], by=actor)
        return plans

    def pupils_at_risk(self, school_ids: list[str] | None) -> list[dict[str, Any]]:
        return self.pupils.list(self.query, school_ids, at_risk=True)

    # -- loading and saving ----------------------------------------------------------------
    def load(self, plan_id: UUID) -> Plan:
        try:
            plan: object = self.repository.get(plan_id, projector_func=project_events)
        except AggregateNotFoundError:
            raise PlanNotFoundError(f"plan {plan_id} not found") from None
        if not isinstance(plan, Plan):
            raise PlanNotFoundError(f"plan {plan_id} not found")
        return plan

    def sees(self, user: Principal, school_id: str) -> bool:
        """Tenancy by the schools known here: identification may have registered schools
        since the shipped reference data, in any municipality."""
        return user.sees_school(school_id, lambda s: self.schools.municipality(self.query, s))

    def visible_schools(self, user: Principal, requested: str | None) -> list[str] | None:
        return visible_schools(user, requested, lambda: self.schools.directory(self.query))

    def get_plan(self, plan_id: UUID, user: Principal) -> Plan:
        """The plan, if it is in the caller's tenant (another school's plan is not found)."""
        plan = self.load(plan_id)
        if not self.sees(user, plan.school_id):
            raise PlanNotFoundError(f"plan {plan_id} not found")
        return plan

    def plan_for_change(self, plan_id: UUID, user: Principal, expected_version: int) -> Plan:
        plan = self.get_plan(plan_id, user)
        plan.check_version(expected_version)
        return plan

    def save_plans(self, *plans: Plan, repairs: Sequence[Effect] = ()) -> None:
        self.save(*plans, effects=[*repairs, *(self.plans.upsert(plan) for plan in plans)])

    def pupil(self, pupil_id: str, user: Principal) -> PupilView:
        pupil = self.pupils.get(self.query, pupil_id)
        if pupil is None or not self.sees(user, pupil.school_id):
            raise PupilNotFoundError(f"pupil {pupil_id} not found")
        return pupil

    def check_no_live_plan(self, pupil_id: str, semester: str) -> list[Effect]:
        """Refuse a second plan for the semester; the effects that free it of a plan a
        departure closed whose row was not marked so (a replica of the earlier release
        closed it during the rolling update, after the migration had marked the others)."""
        existing = self.plans.live_plan(self.query, pupil_id, semester)
        if existing is None:
            return []
        if self.closed_on_departure(UUID(existing)):
            return [lambda sql: self.plans.mark_ended_by_departure(sql, [existing])]
        raise PlanAlreadyExistsError(
            f"the pupil already has plan {existing} for {semester}", {"plan_id": existing}
        )

    def closed_on_departure(self, plan_id: UUID) -> bool:
        """Whether a departure closed the plan. A plan loaded from a snapshot the earlier
        release took after closing it cannot say (its upcast reads False); the stored
        Closed event can, and is read only for a closed plan that does not say so."""
        plan = self.load(plan_id)
        if plan.closed_on_departure or plan.status != CLOSED:
            return plan.closed_on_departure
        return any(closes_on_departure(event) for event in self.events.get(plan_id))

    # -- commands ------------------------------------------------------------------------
    def draft_plan(
        self,
        *,
        pupil_id: UUID,
        semester: str,
        consent: Mapping[str, Any],
        user: Principal,
        adult_on: AdultOn = never_asked,
    ) -> Plan:
        """``adult_on`` asks identification whether the pupil was of age on a day: only
        for a consent the pupil signed."""
        pupil = self.pupil(str(pupil_id), user)
        school = self.schools.get(self.query, pupil.school_id)
        check_may_have_plan(pupil, school, Semester.parse(semester))
        check_consent_signed(consent["signed_on"])
        repairs = self.check_no_live_plan(pupil.pupil_id, semester)
        if consent["given_by"] == PUPIL_SIGNS:
            adult = adult_on(pupil.pupil_id, consent["signed_on"])
            check_consent_signer(consent["given_by"], adult)
        plan = Plan(
            pupil_id=pupil.pupil_id,
            school_id=pupil.school_id,
            semester=semester,
            levels=school.levels,
            risk_codes=list(pupil.active_risk_codes),
            consent_given_by=consent["given_by"],
            consent_signed_on=consent["signed_on"],
            previous_plan_id=None,
            by=user.sub,
        )
        self.save_plans(plan, repairs=repairs)
        return plan

    def add_measure(
        self, plan_id: UUID, *, expected_version: int, user: Principal, **fields: Any
    ) -> tuple[Plan, str]:
        plan = self.plan_for_change(plan_id, user, expected_version)
        codes = self.pupil(plan.pupil_id, user).active_risk_codes
        measure_id = plan.add_measure(**fields, active_risk_codes=codes, by=user.sub)
        self.save_plans(plan)
        return plan, measure_id

    def change_measure(
        self,
        plan_id: UUID,
        measure_id: UUID,
        *,
        expected_version: int,
        user: Principal,
        **fields: Any,
    ) -> Plan:
        plan = self.plan_for_change(plan_id, user, expected_version)
        codes = self.pupil(plan.pupil_id, user).active_risk_codes
        plan.change_measure(str(measure_id), **fields, active_risk_codes=codes, by=user.sub)
        self.save_plans(plan)
        return plan

    def remove_measure(
        self, plan_id: UUID, measure_id: UUID, *, expected_version: int, user: Principal
    ) -> Plan:
        plan = self.plan_for_change(plan_id, user, expected_version)
        plan.remove_measure(str(measure_id), by=user.sub)
        self.save_plans(plan)
        return plan

    def submit(self, plan_id: UUID, *, expected_version: int, user: Principal) -> Plan:
        plan = self.plan_for_change(plan_id, user, expected_version)
        plan.submit(by=user.sub)
        self.save_plans(plan)
        return plan

    def approve(self, plan_id: UUID, *, expected_version: int, user: Principal) -> Plan:
        plan = self.plan_for_change(plan_id, user, expected_version)
        plan.approve(level=approval_level(user), by=user.sub)
        self.save_plans(plan)
        return plan

    def return_to_author(
        self, plan_id: UUID, *, reason: str, expected_version: int, user: Principal
    ) -> Plan:
        plan = self.plan_for_change(plan_id, user, expected_version)
        plan.return_to_author(level=approval_level(user), reason=reason, by=user.sub)
        self.save_plans(plan)
        return plan

    def revise(self, plan_id: UUID, *, reason: str, expected_version: int, user: Principal) -> Plan:
        plan = self.plan_for_change(plan_id, user, expected_version)
        plan.revise(reason=reason, by=user.sub)
        self.save_plans(plan)
        return plan

    def suspend(
        self, plan_id: UUID, *, reason: str, expected_version: int, user: Principal
    ) -> Plan:
        plan = self.plan_for_change(plan_id, user, expected_version)
        plan.suspend(reason=reason, by=user.sub)
        self.save_plans(plan)
        return plan

    def resume(self, plan_id: UUID, *, expected_version: int, user: Principal) -> Plan:
        plan = self.plan_for_change(plan_id, user, expected_version)
        plan.resume(by=user.sub)
        self.save_plans(plan)
        return plan

    def deactivate(
        self, plan_id: UUID, *, reason: str, expected_version: int, user: Principal
    ) -> Plan:
        plan = self.plan_for_change(plan_id, user, expected_version)
        plan.deactivate(reason=reason, by=user.sub)
        self.save_plans(plan)
        return plan

    def log_consultation(
        self,
        plan_id: UUID,
        *,
        measure_id: UUID,
        expected_version: int,
        user: Principal,
        **fields: Any,
    ) -> tuple[Plan, str]:
        plan = self.plan_for_change(plan_id, user, expected_version)
        consultation_id = plan.log_consultation(
            measure_id=str(measure_id), **fields, rates=self.rates, by=user.sub
        )
        self.save_plans(plan)
        return plan, consultation_id

    def confirm_consultation(
        self,
        plan_id: UUID,
        consultation_id: UUID,
        *,
        confirmed_on: date,
        expected_version: int,
        user: Principal,
    ) -> Plan:
        plan = self.plan_for_change(plan_id, user, expected_version)
        plan.confirm_consultation(str(consultation_id), confirmed_on=confirmed_on, by=user.sub)
        self.save_plans(plan)
        return plan

    def evaluate(
        self,
        plan_id: UUID,
        *,
        risk_outcomes: Mapping[str, str],
        outcome: str,
        expected_version: int,
        user: Principal,
    ) -> Plan:
        plan = self.plan_for_change(plan_id, user, expected_version)
        plan.evaluate(risk_outcomes=risk_outcomes, outcome=outcome, by=user.sub)
        self.save_plans(plan)
        return plan

    def continue_plan(
        self, plan_id: UUID, *, semester: str, expected_version: int, user: Principal
    ) -> tuple[Plan, Plan]:
        plan = self.plan_for_change(plan_id, user, expected_version)
        pupil = self.pupil(plan.pupil_id, user)
        repairs = self.check_no_live_plan(plan.pupil_id, semester)
        school = self.schools.get(self.query, pupil.school_id)
        successor = plan.continued(
            Semester.parse(semester), pupil=pupil, school=school, by=user.sub
        )
        self.save_plans(plan, successor, repairs=repairs)
        return plan, successor

    def close_plan(self, plan_id: UUID, *, expected_version: int, user: Principal) -> Plan:
        plan = self.plan_for_change(plan_id, user, expected_version)
        plan.close(by=user.sub)
        self.save_plans(plan)
        return plan

    # -- provisioning's events ------------------------------------------------------------
    def apply_provisioning_event(self, event: IncomingEvent) -> None:
        """A provision's status reaches its measure's row; a delivery, the plan and its money."""
        plans = self.delivered(event) if event.type == "provision_delivered" else []
        effects = self.provisions.effects_for(event.type, event.payload)
        effects += [self.plans.upsert(plan) for plan in plans]
        self.save_tracked(*plans, tracking=event.tracking, effects=effects)

    def delivered(self, event: IncomingEvent) -> list[Plan]:
        payload = event.payload
        try:
            plan = self.load(UUID(payload["plan_id"]))
            plan.record_material_delivery(
                delivery_id=payload["delivery_id"],
                measure_id=payload["measure_id"],
                amount_eur=payload["amount_eur"],
                delivered_on=payload["delivered_on"],
                by=event.envelope.actor,
            )
        except (PumpursError, ValueError) as exc:
            # A fact planning cannot place must not stop the stream behind it.
            log.warning("provisioning's delivery not applied to a plan (%s)", exc)
            return []
        return [plan]

    def plan_view(self, plan_id: UUID, user: Principal) -> PlanView:
        plan = self.get_plan(plan_id, user)
        return PlanView(plan, self.provisions.statuses(self.query, str(plan.id)))

    # -- what provisioning reports, one by one --------------------------------------------
    def record_material_delivery(
        self,
        plan_id: UUID,
        *,
        delivery_id: str,
        measure_id: str,
        amount_eur: Decimal,
        delivered_on: date,
        by: str,
    ) -> Plan:
        plan = self.load(plan_id)
        plan.record_material_delivery(
            delivery_id=delivery_id,
            measure_id=measure_id,
            amount_eur=amount_eur,
            delivered_on=delivered_on,
            by=by,
        )
        self.save_plans(plan)
        return plan

    # -- reading -------------------------------------------------------------------------
    def list_plans(
        self,
        school_ids: Sequence[str] | None,
        *,
        semester: str | None = None,
        status: str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[dict[str, Any]]:
        return self.plans.list(
            self.query,
            school_ids=school_ids,
            semester=semester,
            status=status,
            limit=limit,
            after=after,
        )

    def history(
        self, plan_id: UUID, user: Principal, *, after: int = 0, limit: int = 1000
    ) -> list[Any]:
        """The plan's events in order (each with who and when), as stored."""
        self.get_plan(plan_id, user)
        return list(self.events.get(plan_id, gt=after, limit=limit))

    def full_history(self, plan_id: UUID, user: Principal) -> list[Any]:
        """Every event of the plan, in order, for auditors."""
        self.get_plan(plan_id, user)
        return list(self.events.get(plan_id))

    def plan_as_of(self, plan_id: UUID, user: Principal, as_of: datetime | None) -> PlanView:
        """The plan as its stored events had made it at ``as_of``: replayed from the events
        saved up to then, never read from the cache or a snapshot."""
        self.get_plan(plan_id, user)
        events = self.events.get(plan_id)
        plan: Plan | None = project_events(
            None, takewhile(lambda e: as_of is None or e.timestamp <= as_of, events)
        )
        if plan is None:
            at = as_of.isoformat() if as_of else "that time"
            raise PlanNotYetCreatedError(f"plan {plan_id} did not exist yet at {at}")
        return PlanView(plan, {})


def approval_level(user: Principal) -> str:
    """The level a caller approves (or returns) at follows from the caller's role."""
    level = LEVEL_OF_ROLE.get(user.role)
    if level is None:
        raise ForbiddenError(f"role {user.role} does not approve plans")
    return level
