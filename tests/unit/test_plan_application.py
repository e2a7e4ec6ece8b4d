"""Planning's application on a real SQLite store: read model, tenancy, versions, snapshots.
A pupil who leaves and is enrolled again: on the store under test (SQLite or PostgreSQL)."""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from services.planning import domain
from services.planning.application import PlanningApplication, PlanNotFoundError, load_rates
from services.planning.domain import (
    InvalidDateError,
    MinorCannotConsentError,
    MoneySpentError,
    Plan,
    PlanAlreadyExistsError,
    PupilDepartedError,
    PupilNotAtRiskError,
    PupilNotEligibleError,
    PupilNotFoundError,
    RiskSignNotActiveError,
)
from shared.auth import Principal
from shared.contracts import Envelope
from shared.errors import ForbiddenError, StaleVersionError, http_status
from shared.inbox import IncomingEvent
from shared.outbox import read_envelopes
from shared.store import store_env
from shared.testing import Stores

SCHOOL = "daugavpils-10-vsk"
OTHER = "daugavpils-12-vsk"
TEACHER = Principal("anna", "teacher", school=SCHOOL)
DIRECTOR = Principal("dace", "director", school=SCHOOL)
COORDINATOR = Principal("maris", "municipal_coordinator", municipality="daugavpils")
IKVD = Principal("ilze", "national_coordinator")
CONSENT = {"given_by": "parent", "signed_on": date(2019, 9, 2)}


class Identification:
    """Feeds the application identification's events, numbered like a real source."""

    def __init__(self, app: PlanningApplication) -> None:
        self.app = app
        self.last = 0
        self.versions: dict[str, int] = {}

    def send(self, event_type: str, aggregate_id: str, payload: dict[str, Any]) -> None:
        self.last += 1
        self.versions[aggregate_id] = self.versions.get(aggregate_id, 0) + 1
        envelope = Envelope(
            event_id=str(uuid.uuid4()),
            event_type=event_type,
            schema_version=1,
            source="identification",
            notification_id=self.last,
            previous_id=self.last - 1 or None,
            occurred_at=datetime(2019, 10, 1, tzinfo=UTC),
            aggregate_id=aggregate_id,
            aggregate_version=self.versions[aggregate_id],
            actor="anna",
            payload=payload,
        )
        self.app.apply_identification_event(IncomingEvent(envelope, payload))

    def pupil(
        self, school: str = SCHOOL, grade: int = 7, codes: tuple[str, ...] = ("learning.absences",)
    ) -> str:
        pupil_id = str(uuid.uuid4())
        self.send(
            "pupil_registered", pupil_id, {"school_id": school, "grade": grade, "gender": "F"}
        )
        for code in codes:
            self.send(
                "risk_sign_recorded",
                pupil_id,
                {"code": code, "observed_on": date(2019, 9, 20), "source": "assessment"},
            )
        if codes:
            self.send("pupil_flagged_at_risk", pupil_id, {"school_id": school})
        return pupil_id


@pytest.fixture
def app(tmp_path: Path) -> Iterator[PlanningApplication]:
    application = PlanningApplication(store_env("planning", tmp_path, {}))
    yield application
    application.close()


@pytest.fixture
def identification(app: PlanningApplication) -> Identification:
    return Identification(app)


def draft(app: PlanningApplication, pupil_id: str, semester: str = "2019-2020-1") -> Any:
    return app.draft_plan(
        pupil_id=uuid.UUID(pupil_id), semester=semester, consent=CONSENT, user=TEACHER
    )


def with_measure(
    app: PlanningApplication, plan: Any, author: Principal = TEACHER
) -> tuple[Any, str]:
    return app.add_measure(
        plan.id,
        kind="psychologist",
        risk_code="learning.absences",
        justification="weekly talks",
        hours=Decimal(6),
        expected_version=plan.version,
        user=author,
    )


def approved(app: PlanningApplication, identification: Identification) -> tuple[Any, str]:
    plan, measure_id = with_measure(app, draft(app, identification.pupil()))
    plan = app.submit(plan.id, expected_version=plan.version, user=TEACHER)
    for approver in (DIRECTOR, COORDINATOR, IKVD):
        plan = app.approve(plan.id, expected_version=plan.version, user=approver)
    return plan, measure_id


# -- planning's view of pupils -----------------------------------------------------------------


def test_a_plan_needs_a_pupil_planning_knows_to_be_at_risk(
    app: PlanningApplication, identification: Identification
) -> None:
    with pytest.raises(PupilNotFoundError):
        draft(app, str(uuid.uuid4()))
    with pytest.raises(PupilNotAtRiskError):
        draft(app, identification.pupil(codes=()))
    with pytest.raises(PupilNotEligibleError):
        draft(app, identification.pupil(grade=3), semester="2020-2021-2")
    assert draft(app, identification.pupil(grade=3), semester="2021-2022-1").status == "draft"


def test_a_cleared_or_resolved_risk_and_a_departure_reach_the_read_model(
    app: PlanningApplication, identification: Identification
) -> None:
    pupil_id = identification.pupil(codes=("learning.absences", "family.crisis"))
    plan = draft(app, pupil_id)
    assert plan.risk_codes == ["family.crisis", "learning.absences"]
    identification.send("risk_sign_resolved", pupil_id, {"code": "family.crisis"})
    with pytest.raises(RiskSignNotActiveError):
        app.add_measure(
            plan.id,
            kind="psychologist",
            risk_code="family.crisis",
            justification="talks",
            hours=Decimal(2),
            expected_version=1,
            user=TEACHER,
        )
    identification.send("pupil_risk_cleared", pupil_id, {"school_id": SCHOOL})
    with pytest.raises(PupilNotAtRiskError):
        draft(app, pupil_id, semester="2019-2020-2")
    departed = identification.pupil()
    identification.send(
        "pupil_departed",
        departed,
        {"reason": "moved_abroad", "on": date(2019, 11, 1), "to_school_id": None},
    )
    with pytest.raises(PupilDepartedError):
        draft(app, departed)
    rows = app.query(
        "SELECT pupil_id, applied_events FROM planning_pupils WHERE pupil_id = ?", (pupil_id,)
    )
    assert rows[0]["applied_events"] == 6  # each event of the pupil applied once


def test_schools_registered_by_identification_decide_the_approval_chain(
    app: PlanningApplication, identification: Identification
) -> None:
    identification.send(
        "school_registered",
        str(uuid.uuid4()),
        {
            "school_id": "daugavpils-tech",
            "name": "Daugavpils Technical School",
            "municipality": "daugavpils",
            "kind": "vocational",
            "owner": "state",
            "grade_from": 1,
            "grade_to": 4,
        },
    )
    teacher = Principal("t", "teacher", school="daugavpils-tech")
    pupil_id = identification.pupil(school="daugavpils-tech", grade=2)
    plan = app.draft_plan(
        pupil_id=uuid.UUID(pupil_id), semester="2019-2020-1", consent=CONSENT, user=teacher
    )
    assert plan.levels == ["school", "national"]
    with pytest.raises(PupilNotEligibleError):
        app.draft_plan(
            pupil_id=uuid.UUID(identification.pupil(school="daugavpils-tech", grade=5)),
            semester="2019-2020-1",
            consent=CONSENT,
            user=teacher,
        )


def test_a_consent_signed_after_today_is_refused_and_nothing_is_saved(
    app: PlanningApplication, identification: Identification, monkeypatch: pytest.MonkeyPatch
) -> None:
    pupil_id = identification.pupil()
    monkeypatch.setattr(domain, "today", lambda: date(2019, 9, 2))
    head = app.head()
    for signed_on in (date(2019, 9, 3), date(2031, 1, 1)):
        with pytest.raises(InvalidDateError) as refused:
            app.draft_plan(
                pupil_id=uuid.UUID(pupil_id),
                semester="2019-2020-1",
                consent={"given_by": "parent", "signed_on": signed_on},
                user=TEACHER,
            )
        assert http_status(refused.value) == 422
        assert refused.value.details == {
            "fields": {"consent": {"signed_on": ["not after 2019-09-02"]}}
        }
    assert (app.head(), app.list_plans([SCHOOL])) == (head, [])
    assert draft(app, pupil_id).consent_signed_on == date(2019, 9, 2)  # signed today: valid


def test_a_pupil_signs_the_consent_only_if_identification_says_the_pupil_was_of_age(
    app: PlanningApplication, identification: Identification
) -> None:
    pupil_id = identification.pupil()
    asked: list[tuple[str, date]] = []

    def identification_says(adult: bool | None) -> Any:
        def adult_on(pupil: str, day: date) -> bool | None:
            asked.append((pupil, day))
            return adult

        return adult_on

    signed_by_pupil = {"given_by": "pupil", "signed_on": date(2019, 9, 2)}
    head = app.head()
    for answer in (False, None):  # a minor, or a pupil identification does not know
        with pytest.raises(MinorCannotConsentError) as refused:
            app.draft_plan(
                pupil_id=uuid.UUID(pupil_id),
                semester="2019-2020-1",
                consent=signed_by_pupil,
                user=TEACHER,
                adult_on=identification_says(answer),
            )
        assert http_status(refused.value) == 422
        assert refused.value.details == {
            "fields": {"consent": {"given_by": ["a parent, for a minor"]}}
        }
    assert asked == [(pupil_id, date(2019, 9, 2))] * 2
    assert (app.head(), app.list_plans([SCHOOL])) == (head, [])
    plan = app.draft_plan(
        pupil_id=uuid.UUID(pupil_id),
        semester="2019-2020-1",
        consent=signed_by_pupil,
        user=TEACHER,
        adult_on=identification_says(True),
    )
    assert plan.consent_given_by == "pupil"


def test_a_parents_consent_asks_identification_nothing(
    app: PlanningApplication, identification: Identification
) -> None:
    def away(pupil: str, day: date) -> bool | None:
        raise AssertionError("identification was asked")

    plan = app.draft_plan(
        pupil_id=uuid.UUID(identification.pupil()),
        semester="2019-2020-1",
        consent=CONSENT,
        user=TEACHER,
        adult_on=away,
    )
    assert plan.consent_given_by == "parent"


# -- one plan per pupil and semester -----------------------------------------------------------


def test_a_second_plan_for_the_same_pupil_and_semester_is_refused(
    app: PlanningApplication, identification: Identification
) -> None:
    pupil_id = identification.pupil()
    first = draft(app, pupil_id)
    head = app.head()
    with pytest.raises(PlanAlreadyExistsError) as refused:
        draft(app, pupil_id)
    assert refused.value.details == {"plan_id": str(first.id)}
    assert app.head() == head
    assert draft(app, pupil_id, semester="2019-2020-2").semester == "2019-2020-2"
    # A deactivated (deleted) plan frees the semester again.
    app.deactivate(first.id, reason="wrong pupil", expected_version=1, user=TEACHER)
    assert draft(app, pupil_id).id != first.id


def test_the_unique_index_holds_even_if_the_check_is_raced(
    app: PlanningApplication, identification: Identification
) -> None:
    pupil_id = identification.pupil()
    draft(app, pupil_id)
    app.check_no_live_plan = lambda *args: []  # type: ignore[method-assign]
    head = app.head()
    with pytest.raises(IntegrityError):
        draft(app, pupil_id)
    assert app.head() == head  # the events rolled back with the read-model row


# -- tenancy, roles and versions ---------------------------------------------------------------


def test_another_schools_plan_is_not_found_and_unchanged(
    app: PlanningApplication, identification: Identification
) -> None:
    plan = draft(app, identification.pupil())
    stranger = Principal("olga", "teacher", school=OTHER)
    riga = Principal("x", "municipal_coordinator", municipality="riga")
    for user in (stranger, riga, Principal("op", "operator")):
        with pytest.raises(PlanNotFoundError):
            app.get_plan(plan.id, user)
        with pytest.raises(PlanNotFoundError):
            app.submit(plan.id, expected_version=1, user=user)
    with pytest.raises(PupilNotFoundError):
        app.draft_plan(
            pupil_id=uuid.UUID(plan.pupil_id),
            semester="2019-2020-2",
            consent=CONSENT,
            user=stranger,
        )
    assert app.get_plan(plan.id, COORDINATOR).version == 1


def test_the_approving_level_follows_from_the_role(
    app: PlanningApplication, identification: Identification
) -> None:
    plan, _ = with_measure(app, draft(app, identification.pupil()))
    plan = app.submit(plan.id, expected_version=plan.version, user=TEACHER)
    with pytest.raises(ForbiddenError):
        app.approve(plan.id, expected_version=plan.version, user=TEACHER)
    plan = app.approve(plan.id, expected_version=plan.version, user=DIRECTOR)
    plan = app.approve(plan.id, expected_version=plan.version, user=COORDINATOR)
    assert plan.pending_level == "national"
    assert [a["by"] for a in plan.approvals] == ["dace", "maris"]


def test_a_stale_expected_version_changes_nothing(
    app: PlanningApplication, identification: Identification
) -> None:
    plan, _ = with_measure(app, draft(app, identification.pupil()))
    head = app.head()
    with pytest.raises(StaleVersionError) as refused:
        app.submit(plan.id, expected_version=1, user=TEACHER)
    assert refused.value.details == {"expected_version": 1, "current_version": 2}
    assert app.head() == head
    assert app.get_plan(plan.id, TEACHER).status == "draft"


# -- money, departure, continuation ------------------------------------------------------------


def test_consultations_cost_the_rate_of_the_rates_file(
    app: PlanningApplication, identification: Identification
) -> None:
    plan, measure_id = approved(app, identification)
    plan, _ = app.log_consultation(
        plan.id,
        measure_id=uuid.UUID(measure_id),
        date=date(2019, 10, 1),
        hours=Decimal("1.5"),
        provider="J. Ozola",
        topic="attendance",
        remote=False,
        expected_version=plan.version,
        user=TEACHER,
    )
    rate = load_rates()["psychologist"]
    assert plan.spent_eur == (rate * Decimal("1.5")).quantize(Decimal("0.01"))
    row = app.list_plans([SCHOOL])[0]
    assert (row["status"], row["spent_eur"]) == ("in_progress", f"{plan.spent_eur:.2f}")


def test_a_departure_closes_the_pupils_active_plans_with_its_tracking_record(
    app: PlanningApplication, identification: Identification
) -> None:
    plan, _ = approved(app, identification)
    later = draft(app, plan.pupil_id, semester="2019-2020-2")
    identification.send(
        "pupil_departed",
        plan.pupil_id,
        {"reason": "transferred", "on": date(2019, 11, 4), "to_school_id": OTHER},
    )
    for plan_id in (plan.id, later.id):
        closed = app.get_plan(plan_id, TEACHER)
        assert (closed.status, closed.outcome) == ("closed", "transferred")
    assert {r["status"] for r in app.list_plans([SCHOOL])} == {"closed"}
    assert app.last_tracked("identification") == identification.last
    last = read_envelopes(app, app.head() - 2, 10)
    assert [e.event_type for e in last] == ["plan_closed", "plan_closed"]
    assert {e.payload["cause"] for e in last} == {"pupil_departed"}


def test_continuing_creates_the_next_semesters_linked_draft(
    app: PlanningApplication, identification: Identification
) -> None:
    plan, _ = approved(app, identification)
    plan = app.evaluate(
        plan.id,
        risk_outcomes={"learning.absences": "reduced"},
        outcome="continues_learning",
        expected_version=plan.version,
        user=TEACHER,
    )
    previous, successor = app.continue_plan(
        plan.id, semester="2019-2020-2", expected_version=plan.version, user=TEACHER
    )
    assert app.get_plan(previous.id, TEACHER).next_plan_id == str(successor.id)
    reloaded = app.get_plan(successor.id, TEACHER)
    assert (reloaded.status, reloaded.previous_plan_id) == ("draft", str(plan.id))
    assert [m["hours"] for m in reloaded.measures.values()] == [Decimal("6.00")]
    rows = {r["plan_id"]: r for r in app.list_plans([SCHOOL])}
    assert rows[str(plan.id)]["next_plan_id"] == str(successor.id)
    assert rows[str(successor.id)]["previous_plan_id"] == str(plan.id)
    with pytest.raises(PlanAlreadyExistsError):
        draft(app, plan.pupil_id, semester="2019-2020-2")


# -- lists, history, snapshots -----------------------------------------------------------------


def test_plans_list_by_school_semester_and_status_in_pages(
    app: PlanningApplication, identification: Identification
) -> None:
    mine = [draft(app, identification.pupil()) for _ in range(5)]
    app.submit(with_measure(app, mine[0])[0].id, expected_version=2, user=TEACHER)
    other = Principal("o", "teacher", school=OTHER)
    app.draft_plan(
        pupil_id=uuid.UUID(identification.pupil(school=OTHER)),
        semester="2019-2020-1",
        consent=CONSENT,
        user=other,
    )
    assert len(app.list_plans([SCHOOL])) == 5
    assert len(app.list_plans(None)) == 6
    assert [r["plan_id"] for r in app.list_plans([SCHOOL], status="in_approval")] == [
        str(mine[0].id)
    ]
    assert app.list_plans([SCHOOL], semester="2019-2020-2") == []
    first = app.list_plans([SCHOOL], limit=2)
    rest = app.list_plans([SCHOOL], limit=10, after=first[-1]["plan_id"])
    assert len(first) == 2 and len(rest) == 3
    assert sorted(r["plan_id"] for r in first + rest) == sorted(str(p.id) for p in mine)


def test_history_lists_every_event_in_order_with_who_and_when(
    app: PlanningApplication, identification: Identification
) -> None:
    plan, _ = approved(app, identification)
    events = app.history(plan.id, COORDINATOR)
    assert [e.originator_version for e in events] == list(range(1, plan.version + 1))
    assert [type(e).__qualname__ for e in events][:3] == [
        "Plan.Drafted",
        "Plan.MeasureAdded",
        "Plan.Submitted",
    ]
    assert [e.by for e in events][-3:] == ["maris", "ilze", "ilze"]
    assert all(e.timestamp.tzinfo is not None for e in events)
    assert len(app.history(plan.id, TEACHER, after=3, limit=2)) == 2


def test_a_long_history_loads_from_a_snapshot_to_the_same_state(
    app: PlanningApplication, identification: Identification
) -> None:
    plan, measure_id = approved(app, identification)
    for day in range(1, 61):
        plan, _ = app.log_consultation(
            plan.id,
            measure_id=uuid.UUID(measure_id),
            date=date(2019, 10, 1 + day % 28),
            hours=Decimal("0.1"),
            provider="p",
            topic="t",
            remote=day % 2 == 0,
            expected_version=plan.version,
            user=TEACHER,
        )
    assert plan.version > 60
    snapshots = list(app.snapshots.get(plan.id)) if app.snapshots else []
    assert [s.originator_version for s in snapshots] == [20, 40, 60]
    from_snapshot = app.get_plan(plan.id, TEACHER)
    replayed = None
    for event in app.events.get(plan.id):  # every event from the first, no snapshot
        assert isinstance(event, Aggregate.Event)
        replayed = event.mutate(replayed)
    assert vars(from_snapshot) == vars(replayed)
    assert len(from_snapshot.consultations) == 60
    assert from_snapshot.spent_eur == Decimal("120.00")  # 60 x 0.1 h x 20.00 EUR


def test_a_plan_cached_by_one_replica_sees_what_another_saved(
    app: PlanningApplication, identification: Identification, tmp_path: Path
) -> None:
    plan, _ = with_measure(app, draft(app, identification.pupil()))
    other = PlanningApplication(store_env("planning", tmp_path, {}))
    try:
        assert other.get_plan(plan.id, TEACHER).version == 2  # now cached there
        app.submit(plan.id, expected_version=2, user=TEACHER)
        assert other.get_plan(plan.id, TEACHER).status == "in_approval"
        with pytest.raises(StaleVersionError):
            other.submit(plan.id, expected_version=2, user=TEACHER)
        # A refused command worked on a copy: the cached plan is unchanged.
        with pytest.raises(Exception, match="cannot revise"):
            other.revise(plan.id, reason="x", expected_version=3, user=TEACHER)
        cached = other.get_plan(plan.id, TEACHER)
        assert (cached.version, cached.status) == (3, "in_approval")
        cached.measures.clear()
        assert len(other.get_plan(plan.id, TEACHER).measures) == 1
    finally:
        other.close()


# -- provisioning's events ----------------------------------------------------------------------


class Provisioning(Identification):
    """Feeds the application provisioning's events (the envelope says where from)."""

    def __init__(self, app: PlanningApplication) -> None:
        super().__init__(app)
        self.provisions: dict[str, str] = {}

    def provision(self, event_type: str, plan: Any, measure_id: str, **payload: Any) -> None:
        provision_id = self.provisions.setdefault(measure_id, str(uuid.uuid4()))
        self.last += 1
        body = {"plan_id": str(plan.id), "measure_id": measure_id, **payload}
        envelope = Envelope(
            event_id=str(uuid.uuid4()),
            event_type=event_type,
            schema_version=1,
            source="provisioning",
            notification_id=self.last,
            previous_id=self.last - 1 or None,
            occurred_at=datetime(2019, 10, 2, tzinfo=UTC),
            aggregate_id=provision_id,
            aggregate_version=1,
            actor="dace",
            payload=body,
        )
        self.app.apply_provisioning_event(
            IncomingEvent(envelope, {"provision_id": provision_id, **body})
        )


@pytest.fixture
def provisioning(app: PlanningApplication) -> Provisioning:
    return Provisioning(app)


def with_meals(app: PlanningApplication, identification: Identification) -> tuple[Any, str]:
    plan = draft(app, identification.pupil(codes=("economic.low_income",)))
    plan, meals = app.add_measure(
        plan.id,
        kind="meals",
        risk_code="economic.low_income",
        justification="lunch",
        amount_eur=Decimal("90.00"),
        expected_version=plan.version,
        user=TEACHER,
    )
    plan = app.submit(plan.id, expected_version=plan.version, user=TEACHER)
    for approver in (DIRECTOR, COORDINATOR, IKVD):
        plan = app.approve(plan.id, expected_version=plan.version, user=approver)
    return plan, meals


def test_provisions_show_on_the_measure_and_deliveries_count_as_spent(
    app: PlanningApplication, identification: Identification, provisioning: Provisioning
) -> None:
    plan, meals = with_meals(app, identification)
    provisioning.provision("provision_requested", plan, meals, status="requested")
    provisioning.provision("provision_ordered", plan, meals, status="ordered", amount_eur="90.00")
    assert app.plan_view(plan.id, TEACHER).provision_statuses == {meals: "ordered"}
    assert app.get_plan(plan.id, TEACHER).version == plan.version  # not a change of the plan
    delivery = {
        "delivery_id": "d-1",
        "amount_eur": Decimal("40.00"),
        "delivered_on": date(2019, 10, 3),
    }
    for _ in range(2):  # the same delivery reported twice (another event carrying it)
        provisioning.provision(
            "provision_delivered", plan, meals, status="partially_delivered", **delivery
        )
    shown = app.get_plan(plan.id, TEACHER)
    assert (shown.status, shown.spent_eur) == ("in_progress", Decimal("40.00"))
    assert app.plan_view(plan.id, TEACHER).provision_statuses == {meals: "partially_delivered"}
    assert app.list_plans([SCHOOL])[0]["spent_eur"] == "40.00"
    with pytest.raises(MoneySpentError):
        app.deactivate(plan.id, reason="x", expected_version=shown.version, user=TEACHER)
    assert app.last_tracked("provisioning") == provisioning.last


def test_a_delivery_after_the_plan_ended_is_still_recorded(
    app: PlanningApplication, identification: Identification, provisioning: Provisioning
) -> None:
    plan, meals = with_meals(app, identification)
    identification.send(
        "pupil_departed",
        plan.pupil_id,
        {"reason": "graduated", "on": date(2019, 12, 1), "to_school_id": None},
    )
    provisioning.provision(
        "provision_delivered",
        plan,
        meals,
        status="delivered",
        delivery_id="d-9",
        amount_eur=Decimal("90.00"),
        delivered_on=date(2019, 11, 30),
    )
    shown = app.get_plan(plan.id, TEACHER)
    assert (shown.status, shown.outcome, shown.spent_eur) == (
        "closed",
        "graduated",
        Decimal("90.00"),
    )


def test_a_delivery_planning_cannot_place_is_passed_over_without_stopping_the_stream(
    app: PlanningApplication, identification: Identification, provisioning: Provisioning
) -> None:
    plan, meals = with_meals(app, identification)
    ghost = type("Ghost", (), {"id": uuid.uuid4()})()
    delivery = {"amount_eur": Decimal("5.00"), "delivered_on": date(2019, 10, 3)}
    provisioning.provision(
        "provision_delivered", ghost, meals, status="delivered", delivery_id="g", **delivery
    )
    provisioning.provision("budget_spent", plan, meals, status="x")  # not about a measure
    assert app.get_plan(plan.id, TEACHER).version == plan.version
    assert app.last_tracked("provisioning") == provisioning.last


# -- schools registered since the reference data -------------------------------------------------


def riga_school(identification: Identification) -> str:
    identification.send(
        "school_registered",
        str(uuid.uuid4()),
        {
            "school_id": "riga-1-vsk",
            "name": "Rīgas 1. vidusskola",
            "municipality": "riga",
            "kind": "general",
            "owner": "municipal",
            "grade_from": 1,
            "grade_to": 12,
        },
    )
    return "riga-1-vsk"


def test_a_municipal_coordinator_approves_plans_of_a_school_registered_in_their_municipality(
    app: PlanningApplication, identification: Identification
) -> None:
    school = riga_school(identification)
    teacher = Principal("t", "teacher", school=school)
    riga = Principal("r", "municipal_coordinator", municipality="riga")
    pupil_id = uuid.UUID(identification.pupil(school=school))
    plan = app.draft_plan(pupil_id=pupil_id, semester="2019-2020-1", consent=CONSENT, user=teacher)
    plan = with_measure(app, plan, teacher)[0]
    plan = app.submit(plan.id, expected_version=plan.version, user=teacher)
    plan = app.approve(
        plan.id, expected_version=plan.version, user=Principal("d", "director", school=school)
    )
    assert plan.pending_level == "municipality"

    assert [p["plan_id"] for p in app.list_plans(app.visible_schools(riga, None))] == [str(plan.id)]
    plan = app.approve(plan.id, expected_version=plan.version, user=riga)
    assert plan.pending_level == "national"
    with pytest.raises(PlanNotFoundError):  # Daugavpils' coordinator: not their school
        app.get_plan(plan.id, COORDINATOR)
    assert app.list_plans(app.visible_schools(COORDINATOR, school)) == []


def test_a_pupil_who_has_left_is_no_longer_listed_at_risk(
    app: PlanningApplication, identification: Identification
) -> None:
    staying, leaving = identification.pupil(), identification.pupil()
    identification.send(
        "pupil_departed",
        leaving,
        {"reason": "dropped_out", "on": date(2019, 11, 15), "to_school_id": None},
    )
    listed = [p["pupil_id"] for p in app.pupils_at_risk([SCHOOL])]
    assert listed == [staying]


# -- a pupil who leaves and is enrolled again ----------------------------------------------------

OTHER_TEACHER = Principal("olga", "teacher", school=OTHER)


def on_store(stores: Stores) -> PlanningApplication:
    """Planning on the store under test: SQLite, or PostgreSQL on that run."""
    environ = {**os.environ, **stores.env(["planning"])}
    return PlanningApplication(store_env("planning", environ["PUMPURS_DATA_DIR"], environ))


@pytest.fixture
def stored(stores: Stores) -> Iterator[PlanningApplication]:
    application = on_store(stores)
    yield application
    application.close()


def leaves_and_returns(
    identification: Identification,
    pupil_id: str,
    school: str,
    reason: str = "transferred",
    codes: tuple[str, ...] = (),
) -> None:
    """The pupil departs, is enrolled at ``school`` in grade 8 and gets ``codes`` recorded there."""
    to_school = school if reason == "transferred" else None
    identification.send(
        "pupil_departed",
        pupil_id,
        {"reason": reason, "on": date(2019, 11, 4), "to_school_id": to_school},
    )
    identification.send(
        "pupil_re_enrolled", pupil_id, {"school_id": school, "grade": 8, "gender": "F"}
    )
    for code in codes:
        identification.send(
            "risk_sign_recorded",
            pupil_id,
            {"code": code, "observed_on": date(2019, 11, 11), "source": "assessment"},
        )
    if codes:
        identification.send("pupil_flagged_at_risk", pupil_id, {"school_id": school})


def draft_at_other_school(app: PlanningApplication, pupil_id: str) -> Any:
    return app.draft_plan(
        pupil_id=uuid.UUID(pupil_id), semester="2019-2020-1", consent=CONSENT, user=OTHER_TEACHER
    )


def test_a_pupil_transferred_mid_semester_gets_a_plan_at_the_new_school_that_semester(
    stored: PlanningApplication,
) -> None:
    app, identification = stored, Identification(stored)
    old, _ = approved(app, identification)
    pupil_id = old.pupil_id
    leaves_and_returns(identification, pupil_id, OTHER, codes=("family.crisis",))

    # The new school sees the pupil at risk with the sign recorded there, not the old school's.
    assert app.pupils_at_risk([OTHER]) == [
        {
            "pupil_id": pupil_id,
            "school_id": OTHER,
            "grade": 8,
            "gender": "F",
            "at_risk": True,
            "risk_codes": ["family.crisis"],
        }
    ]
    new = draft_at_other_school(app, pupil_id)
    assert (new.school_id, new.semester, new.risk_codes) == (OTHER, old.semester, ["family.crisis"])
    with pytest.raises(PlanAlreadyExistsError) as refused:  # the new plan holds the semester
        draft_at_other_school(app, pupil_id)
    assert refused.value.details == {"plan_id": str(new.id)}

    # The old school no longer has the pupil, but keeps its plan, closed by the departure.
    assert app.pupils_at_risk([SCHOOL]) == []
    with pytest.raises(PupilNotFoundError):
        draft(app, pupil_id, semester="2019-2020-2")
    closed = app.get_plan(old.id, TEACHER)
    assert (closed.status, closed.outcome, closed.school_id) == ("closed", "transferred", SCHOOL)
    assert [r["plan_id"] for r in app.list_plans([SCHOOL])] == [str(old.id)]
    assert [r["plan_id"] for r in app.list_plans([OTHER])] == [str(new.id)]
    with pytest.raises(PlanNotFoundError):
        app.get_plan(old.id, OTHER_TEACHER)
    rows = app.query("SELECT applied_events FROM planning_pupils WHERE pupil_id = ?", (pupil_id,))
    assert rows[0]["applied_events"] == identification.versions[pupil_id]  # each once


def test_a_departure_closing_left_unmarked_by_an_earlier_release_frees_its_semester(
    stored: PlanningApplication,
) -> None:
    """During a rolling update, a replica of the earlier release may close a plan on a
    departure after the migration marked the others: the new school's draft still goes
    through, and the old plan's row is marked with it."""
    app, identification = stored, Identification(stored)
    old, _ = approved(app, identification)
    leaves_and_returns(identification, old.pupil_id, OTHER, codes=("family.crisis",))
    table = app.plans.table
    with app.transaction() as sql:  # the row as the earlier release wrote it
        sql.execute(f"UPDATE {table} SET ended_by_departure = 0 WHERE plan_id = ?", (str(old.id),))
    new = draft_at_other_school(app, old.pupil_id)
    assert (new.school_id, new.semester) == (OTHER, old.semester)
    rows = app.query(f"SELECT ended_by_departure FROM {table} WHERE plan_id = ?", (str(old.id),))
    assert rows[0]["ended_by_departure"] == 1
    with pytest.raises(PlanAlreadyExistsError):  # the new plan holds the semester
        draft_at_other_school(app, old.pupil_id)


def test_a_departure_closing_behind_a_snapshot_of_the_earlier_release_frees_its_semester(
    stores: Stores,
) -> None:
    """The earlier release's replica closed the plan on the departure and then took its
    snapshot (every 20th event): loaded from that snapshot, the plan cannot say why it was
    closed. The new school's draft still goes through, and marks the old plan's row."""
    first = on_store(stores)
    identification = Identification(first)
    old, _ = approved(first, identification)
    leaves_and_returns(identification, old.pupil_id, OTHER, codes=("family.crisis",))
    snapshot_of_earlier_release(first, first.load(old.id))
    table = first.plans.table
    with first.transaction() as sql:  # the row as the earlier release wrote it
        sql.execute(f"UPDATE {table} SET ended_by_departure = 0 WHERE plan_id = ?", (str(old.id),))
    first.close()
    app = on_store(stores)  # a replica of this release, with nothing of the plan cached
    try:
        assert app.load(old.id).closed_on_departure is False  # what the snapshot can say
        new = draft_at_other_school(app, old.pupil_id)
        assert (new.school_id, new.semester) == (OTHER, old.semester)
        rows = app.query(
            f"SELECT ended_by_departure FROM {table} WHERE plan_id = ?", (str(old.id),)
        )
        assert rows[0]["ended_by_departure"] == 1
    finally:
        app.close()


@pytest.mark.parametrize(("school", "reason"), [(OTHER, "transferred"), (SCHOOL, "moved_abroad")])
def test_a_pupil_enrolled_again_is_not_at_risk_until_a_new_sign_is_recorded(
    stored: PlanningApplication, school: str, reason: str
) -> None:
    app, identification = stored, Identification(stored)
    pupil_id = identification.pupil(codes=("learning.absences", "family.crisis"))
    leaves_and_returns(identification, pupil_id, school, reason)
    teacher = Principal("t", "teacher", school=school)
    assert app.pupils_at_risk([school]) == []
    with pytest.raises(PupilNotAtRiskError):  # not refused as a pupil who has left
        app.draft_plan(
            pupil_id=uuid.UUID(pupil_id), semester="2019-2020-1", consent=CONSENT, user=teacher
        )
    assert app.pupil(pupil_id, teacher).active_risk_codes == ()
    assert app.list_plans(None) == []


def test_a_plan_closed_after_its_evaluation_still_holds_its_semester(
    stored: PlanningApplication,
) -> None:
    app, identification = stored, Identification(stored)
    plan, _ = approved(app, identification)
    plan = app.evaluate(
        plan.id,
        risk_outcomes={"learning.absences": "resolved"},
        outcome="continues_learning",
        expected_version=plan.version,
        user=TEACHER,
    )
    plan = app.close_plan(plan.id, expected_version=plan.version, user=TEACHER)
    assert plan.status == "closed"
    with pytest.raises(PlanAlreadyExistsError) as refused:
        draft(app, plan.pupil_id)
    assert refused.value.details == {"plan_id": str(plan.id)}
    app.check_no_live_plan = lambda *args: []  # type: ignore[method-assign]
    head = app.head()
    with pytest.raises(IntegrityError):  # nor does the database's index let one in
        draft(app, plan.pupil_id)
    assert app.head() == head


def earlier_release(app: PlanningApplication, plan: Plan) -> None:
    """Leave the store as the release before the departure mark did: the plans table
    without it, its index, and a snapshot of the plan taken then."""
    table = app.plans.table
    with app.transaction() as sql:
        sql.execute(f"DROP INDEX {table}_one_live_per_semester")
        sql.execute(f"ALTER TABLE {table} DROP COLUMN ended_by_departure")
        sql.execute(
            f"CREATE UNIQUE INDEX {table}_one_per_semester "
            f"ON {table} (pupil_id, semester) WHERE status <> 'inactive'"
        )
    snapshot_of_earlier_release(app, plan)


def snapshot_of_earlier_release(app: PlanningApplication, plan: Plan) -> None:
    """A snapshot of the plan as the release before the departure mark took it."""
    snapshot = Plan.Snapshot.take(plan)
    state = {
        k: v for k, v in snapshot.state.items() if k not in ("class_version", "closed_on_departure")
    }
    assert app.snapshots is not None
    app.snapshots.put([dataclasses.replace(snapshot, state=state)])


def test_a_store_of_the_earlier_release_learns_which_plans_a_departure_closed(
    stores: Stores,
) -> None:
    first = on_store(stores)
    identification = Identification(first)
    old, meals = with_meals(first, identification)
    pupil_id = old.pupil_id
    identification.send(
        "pupil_departed",
        pupil_id,
        {"reason": "transferred", "on": date(2019, 11, 4), "to_school_id": OTHER},
    )
    earlier_release(first, first.get_plan(old.id, TEACHER))
    first.close()
    app = on_store(stores)  # this release starts on that store
    try:
        identification.app = app
        identification.send(
            "pupil_re_enrolled", pupil_id, {"school_id": OTHER, "grade": 8, "gender": "F"}
        )
        identification.send(
            "risk_sign_recorded",
            pupil_id,
            {"code": "family.crisis", "observed_on": date(2019, 11, 11), "source": "assessment"},
        )
        identification.send("pupil_flagged_at_risk", pupil_id, {"school_id": OTHER})
        new = draft_at_other_school(app, pupil_id)
        # A delivery for the old plan, loaded from the earlier release's snapshot, which
        # does not know why the plan was closed: the plan's row keeps the departure's mark.
        provisioning = Provisioning(app)
        provisioning.provision(
            "provision_delivered",
            old,
            meals,
            status="delivered",
            delivery_id="d-1",
            amount_eur=Decimal("90.00"),
            delivered_on=date(2019, 11, 1),
        )
        assert app.get_plan(old.id, TEACHER).spent_eur == Decimal("90.00")
        with pytest.raises(PlanAlreadyExistsError) as refused:
            draft_at_other_school(app, pupil_id)
        assert refused.value.details == {"plan_id": str(new.id)}
    finally:
        app.close()
