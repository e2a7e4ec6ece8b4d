"""Provisioning's application on a real SQLite store: planning's events, HTTP commands,
tenancy, versions, retries after a concurrent save, and what goes on the bus."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError

from services.provisioning.application import ProvisioningApplication, pupil_cap
from services.provisioning.domain import (
    BudgetBelowCommitmentsError,
    BudgetNotFoundError,
    InvalidAmountError,
    OverPlannedError,
    ProvisionNotFoundError,
    SchoolNotFoundError,
)
from shared.auth import Principal
from shared.contracts import Envelope, registry
from shared.errors import ForbiddenError, StaleVersionError
from shared.inbox import IncomingEvent
from shared.outbox import read_envelopes
from shared.store import store_env

D = Decimal
SCHOOL, OTHER = "daugavpils-10-vsk", "daugavpils-12-vsk"
SEMESTER = "2019-2020-1"
COORDINATOR = Principal("maris", "municipal_coordinator", municipality="daugavpils")
RIGA = Principal("rita", "municipal_coordinator", municipality="riga")
IKVD = Principal("ilze", "national_coordinator")
DIRECTOR = Principal("dace", "director", school=SCHOOL)
STRANGER = Principal("olga", "director", school=OTHER)


class Planning:
    """Feeds the application planning's events as the inbox would: numbered, validated."""

    def __init__(self, app: ProvisioningApplication) -> None:
        self.app = app
        self.last = 0
        self.versions: dict[str, int] = {}

    def send(self, event_type: str, plan_id: str, payload: dict[str, Any]) -> IncomingEvent:
        event = self.event(event_type, plan_id, payload)
        self.app.apply_planning_event(event)
        return event

    def event(self, event_type: str, plan_id: str, payload: dict[str, Any]) -> IncomingEvent:
        """The next event, not yet given to the application."""
        self.last += 1
        self.versions[plan_id] = self.versions.get(plan_id, 0) + 1
        envelope = Envelope(
            event_id=str(uuid.uuid4()),
            event_type=event_type,
            schema_version=1,
            source="planning",
            notification_id=self.last,
            previous_id=self.last - 1 or None,
            occurred_at=datetime(2019, 10, 1, tzinfo=UTC),
            aggregate_id=plan_id,
            aggregate_version=self.versions[plan_id],
            actor="ilze",
            payload=payload,
        )
        return IncomingEvent(envelope, registry.load(envelope))

    def approve(
        self, plan_id: str, measures: dict[str, str], pupil_id: str = "p-1", school: str = SCHOOL
    ) -> IncomingEvent:
        return self.send(
            "plan_fully_approved", plan_id, approval(plan_id, measures, pupil_id, school)
        )


def approval(
    plan_id: str, measures: dict[str, str], pupil_id: str = "p-1", school: str = SCHOOL
) -> dict[str, Any]:
    return {
        "plan_id": plan_id,
        "pupil_id": pupil_id,
        "school_id": school,
        "semester": SEMESTER,
        "status": "approved",
        "material_measures": [
            {"measure_id": m, "kind": "public_transport", "amount_eur": amount}
            for m, amount in measures.items()
        ],
    }


@pytest.fixture
def app(tmp_path: Path) -> Iterator[ProvisioningApplication]:
    application = ProvisioningApplication(store_env("provisioning", tmp_path, {}))
    yield application
    application.close()


@pytest.fixture
def planning(app: ProvisioningApplication) -> Planning:
    return Planning(app)


def a_plan() -> str:
    return str(uuid.uuid4())


def budget_numbers(app: ProvisioningApplication, school: str = SCHOOL) -> tuple[str, ...]:
    b = app.get_budget(school, SEMESTER, IKVD)
    return (f"{b.allocated}", f"{b.committed}", f"{b.spent}", f"{b.available}")


def provisions(app: ProvisioningApplication, plan_id: str) -> dict[str, dict[str, Any]]:
    return {row["measure_id"]: row for row in app.list_provisions(None, plan_id=plan_id)}


def deliver(app: ProvisioningApplication, row: dict[str, Any], amount: str, receipt: str) -> Any:
    provision = app.get_provision(uuid.UUID(row["provision_id"]), DIRECTOR)
    return app.deliver(
        provision.id,
        delivered_on=date(2019, 10, 15),
        amount_eur=D(amount),
        receipt_no=receipt,
        expected_version=provision.version,
        user=DIRECTOR,
    )


def ordered(app: ProvisioningApplication, row: dict[str, Any]) -> dict[str, Any]:
    provision = app.order(
        uuid.UUID(row["provision_id"]),
        supplier="AS Daugavpils satiksme",
        amount_eur=D(row["planned_eur"]),
        expected_version=row["version"],
        user=DIRECTOR,
    )
    return {**row, "version": provision.version}


# -- budgets -----------------------------------------------------------------------------------


def test_coordinators_set_budgets_of_their_own_schools_with_versions(
    app: ProvisioningApplication,
) -> None:
    with pytest.raises(BudgetNotFoundError):
        app.get_budget(SCHOOL, SEMESTER, IKVD)
    budget = app.set_budget(SCHOOL, SEMESTER, amount_eur=D("500.00"), user=COORDINATOR)
    assert (budget.version, budget_numbers(app)) == (2, ("500.00", "0.00", "0.00", "500.00"))
    with pytest.raises(ForbiddenError):
        app.set_budget(SCHOOL, SEMESTER, amount_eur=D("1.00"), user=RIGA)
    with pytest.raises(StaleVersionError):
        app.set_budget(
            SCHOOL, SEMESTER, amount_eur=D("600.00"), expected_version=1, user=COORDINATOR
        )
    budget = app.set_budget(SCHOOL, SEMESTER, amount_eur=D("600.00"), expected_version=2, user=IKVD)
    assert (budget.version, budget_numbers(app)) == (3, ("600.00", "0.00", "0.00", "600.00"))
    # Readers outside the tenant do not find it.
    with pytest.raises(BudgetNotFoundError):
        app.get_budget(SCHOOL, SEMESTER, RIGA)
    with pytest.raises(BudgetNotFoundError):
        app.get_budget(SCHOOL, SEMESTER, STRANGER)
    history = [type(e).__name__ for e in app.history(budget.id)]
    assert history == ["Opened", "Set", "Set"]


def test_the_pupil_cap_comes_from_configuration(tmp_path: Path) -> None:
    assert pupil_cap(None) is None and pupil_cap("") is None
    assert pupil_cap("150") == D("150.00")
    with pytest.raises(InvalidAmountError):
        pupil_cap("150.001")
    env = {**store_env("provisioning", tmp_path, {}), "PUMPURS_PUPIL_CAP_EUR": "100.00"}
    capped = ProvisioningApplication(env)
    try:
        capped.set_budget(SCHOOL, SEMESTER, amount_eur=D("1000.00"), user=IKVD)
        plan_id = a_plan()
        Planning(capped).approve(plan_id, {"m1": "60.00", "m2": "50.00"})
        rows = provisions(capped, plan_id)
        assert (rows["m1"]["status"], rows["m2"]["status"]) == ("requested", "rejected")
        rejected = capped.get_provision(uuid.UUID(rows["m2"]["provision_id"]), IKVD)
        assert rejected.rejection_reason == "over_pupil_cap"
    finally:
        capped.close()


# -- from approval to delivery -----------------------------------------------------------------


def test_an_approved_plan_commits_its_material_measures_and_rejects_what_does_not_fit(
    app: ProvisioningApplication, planning: Planning
) -> None:
    app.set_budget(SCHOOL, SEMESTER, amount_eur=D("100.00"), user=COORDINATOR)
    plan_id = a_plan()
    planning.approve(plan_id, {"m1": "60.00", "m2": "50.00"})
    rows = provisions(app, plan_id)
    assert {m: (r["status"], r["committed_eur"]) for m, r in rows.items()} == {
        "m1": ("requested", "60.00"),
        "m2": ("rejected", "0.00"),
    }
    assert budget_numbers(app) == ("100.00", "60.00", "0.00", "40.00")
    # A plan of a school with no budget: rejected for that.
    elsewhere = a_plan()
    planning.approve(elsewhere, {"m3": "10.00"}, school=OTHER)
    row = provisions(app, elsewhere)["m3"]
    assert row["status"] == "rejected"
    assert app.get_provision(uuid.UUID(row["provision_id"]), IKVD).rejection_reason == "no_budget"
    # The budget cannot be lowered under what is committed.
    with pytest.raises(BudgetBelowCommitmentsError):
        app.set_budget(SCHOOL, SEMESTER, amount_eur=D("59.99"), user=COORDINATOR)


def test_order_deliveries_and_cancel_move_the_budget(
    app: ProvisioningApplication, planning: Planning
) -> None:
    app.set_budget(SCHOOL, SEMESTER, amount_eur=D("100.00"), user=COORDINATOR)
    plan_id = a_plan()
    planning.approve(plan_id, {"m1": "60.00"})
    row = ordered(app, provisions(app, plan_id)["m1"])
    provision, delivery_id = deliver(app, row, "20.00", "R-1")
    assert (provision.status, provision.deliveries[0]["delivery_id"]) == (
        "partially_delivered",
        delivery_id,
    )
    assert budget_numbers(app) == ("100.00", "40.00", "20.00", "40.00")
    with pytest.raises(OverPlannedError):
        deliver(app, provisions(app, plan_id)["m1"], "40.01", "R-2")
    with pytest.raises(StaleVersionError):
        app.cancel(provision.id, reason="x", expected_version=1, user=DIRECTOR)
    cancelled = app.cancel(
        provision.id, reason="moved away", expected_version=provision.version, user=DIRECTOR
    )
    assert (cancelled.status, cancelled.delivered_eur) == ("cancelled", D("20.00"))
    assert budget_numbers(app) == ("100.00", "0.00", "20.00", "80.00")
    assert provisions(app, plan_id)["m1"]["status"] == "cancelled"
    # Another school's director does not find it.
    with pytest.raises(ProvisionNotFoundError):
        app.get_provision(provision.id, STRANGER)


def test_suspension_holds_resumption_restores_deactivation_cancels(
    app: ProvisioningApplication, planning: Planning
) -> None:
    app.set_budget(SCHOOL, SEMESTER, amount_eur=D("100.00"), user=COORDINATOR)
    plan_id = a_plan()
    planning.approve(plan_id, {"m1": "30.00", "m2": "20.00"})
    ordered(app, provisions(app, plan_id)["m1"])
    planning.send("plan_suspended", plan_id, {})
    assert {r["status"] for r in provisions(app, plan_id).values()} == {"on_hold"}
    planning.send("plan_resumed", plan_id, {"status": "approved"})
    rows = provisions(app, plan_id)
    assert (rows["m1"]["status"], rows["m2"]["status"]) == ("ordered", "requested")
    planning.send("plan_deactivated", plan_id, {})
    assert {r["status"] for r in provisions(app, plan_id).values()} == {"cancelled"}
    assert budget_numbers(app) == ("100.00", "0.00", "0.00", "100.00")
    closed = a_plan()
    planning.approve(closed, {"m3": "30.00"})
    planning.send("plan_closed", closed, {"outcome": "left_education", "cause": "pupil_departed"})
    assert provisions(app, closed)["m3"]["status"] == "cancelled"
    assert budget_numbers(app) == ("100.00", "0.00", "0.00", "100.00")


def test_a_re_approved_revision_adjusts_requests(
    app: ProvisioningApplication, planning: Planning
) -> None:
    app.set_budget(SCHOOL, SEMESTER, amount_eur=D("200.00"), user=COORDINATOR)
    plan_id = a_plan()
    planning.approve(plan_id, {"transport": "60.00", "books": "40.00", "clothes": "30.00"})
    row = ordered(app, provisions(app, plan_id)["transport"])
    deliver(app, row, "40.00", "R-1")
    planning.approve(plan_id, {"transport": "50.00", "books": "45.00"})
    rows = provisions(app, plan_id)
    assert {
        m: (r["status"], r["planned_eur"], r["committed_eur"], r["delivered_eur"])
        for m, r in rows.items()
    } == {
        "transport": ("partially_delivered", "50.00", "10.00", "40.00"),
        "books": ("requested", "45.00", "45.00", "0.00"),
        "clothes": ("cancelled", "30.00", "0.00", "0.00"),
    }
    assert budget_numbers(app) == ("200.00", "55.00", "40.00", "105.00")


# -- exactly once, and concurrency -------------------------------------------------------------


def test_a_batch_commits_the_events_provisioning_acts_on_and_records_every_one(
    app: ProvisioningApplication, planning: Planning
) -> None:
    """The inbox hands over planning's events that waited together; those provisioning has
    no business with are recorded as seen all the same, so none is applied twice."""
    app.set_budget(SCHOOL, SEMESTER, amount_eur=D("100.00"), user=COORDINATOR)
    plan_id = a_plan()
    submitted = {"pending_level": "school"}
    approved = {"level": "school", "by": "dace"}
    batch = [
        planning.event("plan_submitted", plan_id, submitted),
        planning.event("plan_approved", plan_id, approved),
        planning.event("plan_fully_approved", plan_id, approval(plan_id, {"m1": "60.00"})),
        planning.event("plan_approved", plan_id, approved),
        planning.event("plan_approved", plan_id, approved),
    ]
    app.apply_planning_events(batch)

    assert provisions(app, plan_id)["m1"]["status"] == "requested"
    assert budget_numbers(app) == ("100.00", "60.00", "0.00", "40.00")
    rows = app.query("SELECT notification_id FROM tracking WHERE application_name = 'planning'")
    assert sorted(row["notification_id"] for row in rows) == [1, 2, 3, 4, 5]
    with pytest.raises(IntegrityError):  # the inbox's sign that a message was applied
        app.apply_planning_events(batch[3:])
    assert budget_numbers(app) == ("100.00", "60.00", "0.00", "40.00")


def test_a_redelivered_approval_changes_nothing(
    app: ProvisioningApplication, planning: Planning
) -> None:
    app.set_budget(SCHOOL, SEMESTER, amount_eur=D("100.00"), user=COORDINATOR)
    plan_id = a_plan()
    event = planning.approve(plan_id, {"m1": "60.00"})
    head = app.head()
    app.apply_planning_event(event)  # the same message again
    assert app.head() == head
    assert budget_numbers(app) == ("100.00", "60.00", "0.00", "40.00")
    assert app.last_tracked("planning") == event.envelope.notification_id


def test_a_command_that_loses_a_race_for_the_budget_runs_again_on_the_new_state(
    app: ProvisioningApplication, planning: Planning, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.set_budget(SCHOOL, SEMESTER, amount_eur=D("100.00"), user=COORDINATOR)
    plan_id = a_plan()
    planning.approve(plan_id, {"m1": "30.00", "m2": "30.00"})
    rows = {m: ordered(app, r) for m, r in provisions(app, plan_id).items()}
    real_save = app.save
    raced: list[bool] = []

    def save_after_a_rival(*aggregates: Any, **kwargs: Any) -> Any:
        if not raced:  # another worker delivers on m2 between our load and our save
            raced.append(True)
            deliver(app, rows["m2"], "10.00", "R-2")
        return real_save(*aggregates, **kwargs)

    monkeypatch.setattr(app, "save", save_after_a_rival)
    provision, _ = deliver(app, rows["m1"], "25.00", "R-1")
    assert app.conflicts == 1
    assert provision.delivered_eur == D("25.00")
    # Neither delivery was lost: the budget counts both.
    assert budget_numbers(app) == ("100.00", "25.00", "35.00", "40.00")


# -- what goes on the bus ----------------------------------------------------------------------


def test_every_event_is_published_with_plan_and_measure_and_without_free_text(
    app: ProvisioningApplication, planning: Planning
) -> None:
    app.set_budget(SCHOOL, SEMESTER, amount_eur=D("100.00"), user=COORDINATOR)
    plan_id = a_plan()
    planning.approve(plan_id, {"m1": "60.00", "m2": "50.00"})
    row = ordered(app, provisions(app, plan_id)["m1"])
    provision, delivery_id = deliver(app, row, "20.00", "R-2019/0042")
    app.cancel(
        provision.id,
        reason="the family moved to Riga",
        expected_version=provision.version,
        user=DIRECTOR,
    )
    envelopes = read_envelopes(app, after=0, limit=100)
    assert [e.event_type for e in envelopes] == [
        "budget_opened",
        "budget_set",
        "provision_requested",
        "provision_committed",
        "provision_requested",
        "provision_rejected",
        "budget_committed",
        "provision_ordered",
        "provision_delivered",
        "budget_spent",
        "provision_cancelled",
        "provision_released",
        "budget_released",
    ]
    by_type = {e.event_type: e for e in envelopes}
    delivered = by_type["provision_delivered"]
    assert delivered.payload == {
        "provision_id": str(provision.id),
        "plan_id": plan_id,
        "measure_id": "m1",
        "status": "partially_delivered",
        "delivery_id": delivery_id,
        "amount_eur": "20.00",
        "delivered_on": "2019-10-15",
    }
    assert delivered.aggregate_id == str(provision.id) and delivered.actor == "dace"
    assert by_type["provision_rejected"].payload["reason"] == "over_budget"
    assert by_type["provision_released"].payload == {
        "provision_id": str(provision.id),
        "plan_id": plan_id,
        "measure_id": "m1",
        "status": "cancelled",
        "amount_eur": "40.00",
        "cause": "cancelled",
    }
    text = json.dumps([e.payload for e in envelopes])
    for free_text in ("Daugavpils satiksme", "R-2019/0042", "Riga", "p-1"):
        assert free_text not in text
    for envelope in envelopes:  # every payload loads back under its contract
        registry.load(envelope)


def test_a_hundred_deliveries_of_ten_cents_add_up_exactly_and_survive_snapshots(
    app: ProvisioningApplication, planning: Planning, tmp_path: Path
) -> None:
    app.set_budget(SCHOOL, SEMESTER, amount_eur=D("10.00"), user=COORDINATOR)
    plan_id = a_plan()
    planning.approve(plan_id, {"m1": "10.00"})
    row = ordered(app, provisions(app, plan_id)["m1"])
    for month in range(100):
        provision, _ = deliver(app, row, "0.10", f"R-{month}")
        row = {**row, "version": provision.version}
    assert (provision.status, provision.delivered_eur, provision.committed_eur) == (
        "delivered",
        D("10.00"),
        D("0.00"),
    )
    assert budget_numbers(app) == ("10.00", "0.00", "10.00", "0.00")
    budget_id = app.get_budget(SCHOOL, SEMESTER, IKVD).id
    assert list(app.snapshots.get(budget_id))  # type: ignore[union-attr]
    assert list(app.snapshots.get(provision.id))  # type: ignore[union-attr]
    # Another process on the same store reads the same, from the snapshots.
    again = ProvisioningApplication(store_env("provisioning", tmp_path, {}))
    try:
        reloaded = again.get_provision(provision.id, DIRECTOR)
        assert reloaded.deliveries == provision.deliveries
        assert (reloaded.version, reloaded.delivered_eur) == (provision.version, D("10.00"))
        assert budget_numbers(again) == ("10.00", "0.00", "10.00", "0.00")
    finally:
        again.close()


# -- schools registered since the reference data -------------------------------------------------


def school_registered(app: ProvisioningApplication, school_id: str, municipality: str) -> None:
    """Identification's registration of a school, as provisioning's inbox hands it over."""
    payload = {
        "school_id": school_id,
        "name": "Rīgas 1. vidusskola",
        "municipality": municipality,
        "kind": "general",
        "owner": "municipal",
        "grade_from": 1,
        "grade_to": 12,
    }
    envelope = Envelope(
        event_id=str(uuid.uuid4()),
        event_type="school_registered",
        schema_version=1,
        source="identification",
        notification_id=app.last_tracked("identification") + 1,
        previous_id=app.last_tracked("identification") or None,
        occurred_at=datetime(2019, 8, 20, tzinfo=UTC),
        aggregate_id=str(uuid.uuid4()),
        aggregate_version=1,
        actor="ilze",
        payload=payload,
    )
    app.apply_identification_events([IncomingEvent(envelope, registry.load(envelope))])


def test_a_municipal_coordinator_sets_budgets_of_a_school_registered_in_their_municipality(
    app: ProvisioningApplication, planning: Planning
) -> None:
    school_registered(app, "riga-1-vsk", "riga")
    assert app.last_tracked("identification") == 1
    app.set_budget("riga-1-vsk", SEMESTER, amount_eur=D("500.00"), user=RIGA)
    assert app.get_budget("riga-1-vsk", SEMESTER, RIGA).allocated == D("500.00")
    planning.approve(a_plan(), {"m1": "60.00"}, school="riga-1-vsk")
    assert [p["school_id"] for p in app.list_provisions(app.visible_schools(RIGA, None))] == [
        "riga-1-vsk"
    ]
    # Daugavpils' coordinator: not their school.
    with pytest.raises(ForbiddenError):
        app.set_budget("riga-1-vsk", SEMESTER, amount_eur=D("1.00"), user=COORDINATOR)
    with pytest.raises(BudgetNotFoundError):
        app.get_budget("riga-1-vsk", SEMESTER, COORDINATOR)
    assert app.list_provisions(app.visible_schools(COORDINATOR, None)) == []


def test_a_budget_for_a_school_nobody_registered_is_refused_and_nothing_stored(
    app: ProvisioningApplication,
) -> None:
    for typo in ("daugavpils-10-vsk ", "not-a-school"):
        with pytest.raises(SchoolNotFoundError):
            app.set_budget(typo, SEMESTER, amount_eur=D("5.00"), user=IKVD)
    assert app.head() == 0
