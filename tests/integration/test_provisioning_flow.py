"""Provisioning beside identification and planning, on a real broker and the store under test:
from a plan's approval to requests against the budget, orders, deliveries, holds and
cancellations, with concurrent requests against one budget.

Provisioning runs with a cap of 500.00 EUR per pupil per semester (PUMPURS_PUPIL_CAP_EUR).

The tests share one running system: each plans for pupils of its own and spends from the
budget of a semester of its own. The test that stops provisioning has its own system.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest

from shared.testing import Client, ServiceProcess, running, wait_until
from tests.integration.test_planning_service import (
    OTHER_SCHOOL,
    SCHOOL,
    add_measure,
    command,
    draft_plan,
    known_at_risk,
    ok,
    plan_of,
    register_at_risk,
)
from tests.integration.test_provisioning_budgets import Tap, put

SEMESTER = "2019-2020-1"
BUDGET = f"/budgets/{SCHOOL}/{SEMESTER}"
# Semesters of the other tests' budgets; each begins before those tests' delivery dates.
RETRY_SEMESTER = "2018-2019-1"
HOLD_SEMESTER = "2018-2019-2"
RACE_SEMESTER = "2017-2018-1"
PUPIL_CAP = "500.00"
APPROVERS = ("director", "municipal", "national")


# -- what users do (shared with tests/e2e) ---------------------------------------------------


def plan_with(
    s: dict[str, Any],
    measures: list[tuple[str, str]],
    approvers: tuple[str, ...] = APPROVERS,
    semester: str = SEMESTER,
) -> tuple[str, int, list[str]]:
    """A plan of ``semester`` for a new pupil at risk with material measures (kind, euros),
    submitted and approved by ``approvers``: its id, version and measure ids."""
    pupil_id = register_at_risk(s["identification"])
    known_at_risk(s["teacher"], pupil_id)
    plan = draft_plan(s["teacher"], pupil_id, semester)
    version, measure_ids = plan["version"], []
    for kind, amount in measures:
        added = add_measure(
            s["teacher"],
            plan["plan_id"],
            version,
            kind=kind,
            risk_code="economic.low_income",
            justification=f"{kind} the family cannot afford",
            hours=None,
            amount_eur=amount,
        )
        version = added["version"]
        measure_ids.append(added["measure_id"])
    version = command(s["teacher"], plan["plan_id"], "submit", version)["version"]
    for role in approvers:
        version = command(s[role], plan["plan_id"], "approve", version)["version"]
    return plan["plan_id"], version, measure_ids


def on_latest(client: Client, plan_id: str, send: Callable[[int], Any], status: int = 200) -> Any:
    """A planning command on the plan's latest version. Provisioning's deliveries change the
    plan meanwhile (they count as spent), so a user who meets a stale version reloads the plan
    and tries again, as a 409 tells them to."""
    for _ in range(50):
        answer = send(plan_of(client, plan_id)["version"])
        if answer.status_code != 409 or answer.json()["error"]["code"] != "stale_version":
            return ok(answer, status)
        time.sleep(0.2)
    raise AssertionError(f"plan {plan_id} kept changing under {answer.request.method}")


def plan_command(client: Client, plan_id: str, action: str, **body: Any) -> dict[str, Any]:
    path = f"/plans/{plan_id}/{action}"
    return dict(
        on_latest(client, plan_id, lambda v: client.post(path, {**body, "expected_version": v}))
    )


def provisions_of(client: Client, plan_id: str, count: int) -> dict[str, dict[str, Any]]:
    """The plan's provisions by measure id, once provisioning has ``count`` of them."""

    def listed() -> dict[str, dict[str, Any]] | None:
        items = ok(client.get("/provisions", params={"plan_id": plan_id}))["items"]
        return {p["measure_id"]: p for p in items} if len(items) == count else None

    return dict(wait_until(listed, timeout=30, interval=0.1))


def settles(client: Client, plan_id: str, done: Callable[[dict[str, Any]], bool]) -> None:
    """Wait until every provision of the plan satisfies ``done`` (a planning event acted)."""

    def settled() -> bool:
        items = ok(client.get("/provisions", params={"plan_id": plan_id}))["items"]
        return bool(items) and all(done(p) for p in items)

    wait_until(settled, timeout=30, interval=0.1)


def act(client: Client, provision: dict[str, Any], action: str, **body: Any) -> Any:
    """POST an action on a provision with its current version."""
    path = f"/provisions/{provision['provision_id']}/{action}"
    return client.post(path, {**body, "expected_version": provision["version"]})


def budget_path(semester: str) -> str:
    return f"/budgets/{SCHOOL}/{semester}"


def budget(client: Client, semester: str = SEMESTER) -> tuple[str, str, str, str]:
    b = ok(client.get(budget_path(semester)))
    return (b["allocated"], b["committed"], b["spent"], b["available"])


def reload(client: Client, provision: dict[str, Any]) -> dict[str, Any]:
    return ok(client.get(f"/provisions/{provision['provision_id']}"))


def of_measures(tap: Tap, measures: set[str], *types: str) -> list[dict[str, Any]]:
    """The events of those types about provisions of ``measures`` (the tap sees every
    test's)."""
    return [m for m in tap.of_type(*types) if m["payload"]["measure_id"] in measures]


# -- the fixture ------------------------------------------------------------------------------


@contextlib.contextmanager
def provisioning_beside_planning(system: Any) -> Iterator[dict[str, Any]]:
    tap = Tap(system.broker.uri, "provisioning")
    identification = system.service("identification")
    planning = system.service("planning")
    provisioning = system.service("provisioning", PUMPURS_PUPIL_CAP_EUR=PUPIL_CAP)
    with running(identification, planning, provisioning):
        tokens = {
            "teacher": system.token("teacher", school=SCHOOL),
            "director": system.token("director", school=SCHOOL),
            "municipal": system.token("municipal_coordinator", municipality="daugavpils"),
            "national": system.token("national_coordinator"),
            "stranger": system.token("director", school=OTHER_SCHOOL),
        }
        yield {
            "tap": tap,
            "provisioning_process": provisioning,
            "identification": Client(identification.url, tokens["teacher"]),
            **{role: Client(planning.url, token) for role, token in tokens.items()},
            **{
                f"{role}@provisioning": Client(provisioning.url, token)
                for role, token in tokens.items()
            },
        }


@pytest.fixture(scope="module")
def stack(module_system: Any) -> Iterator[dict[str, Any]]:
    with provisioning_beside_planning(module_system) as stack:
        yield stack


@pytest.fixture
def own_stack(system: Any) -> Iterator[dict[str, Any]]:
    with provisioning_beside_planning(system) as stack:
        yield stack


# -- the tests ---------------------------------------------------------------------------------


def test_an_approved_plan_requests_its_material_support_and_deliveries_spend_the_budget(
    stack: dict[str, Any],
) -> None:
    municipal = stack["municipal@provisioning"]
    director = stack["director@provisioning"]
    ok(put(municipal, BUDGET, {"amount_eur": "100.00"}))
    plan_id, _, (meals, books, boarding) = plan_with(
        stack, [("meals", "60.00"), ("learning_materials", "50.00"), ("accommodation", "600.00")]
    )
    shown = provisions_of(director, plan_id, 3)
    assert {m: (p["status"], p["planned_eur"], p["committed_eur"]) for m, p in shown.items()} == {
        meals: ("requested", "60.00", "60.00"),
        books: ("rejected", "50.00", "0.00"),  # 40.00 is left
        boarding: ("rejected", "600.00", "0.00"),  # more than a pupil may get
    }
    assert reload(director, shown[books])["rejection_reason"] == "over_budget"
    assert reload(director, shown[boarding])["rejection_reason"] == "over_pupil_cap"
    assert budget(municipal) == ("100.00", "60.00", "0.00", "40.00")

    # Planning learns every decision, naming the plan and the measure.
    ours = {meals, books, boarding}
    wait_until(lambda: len(of_measures(stack["tap"], ours, "provision_rejected")) == 2, timeout=20)
    rejected = {
        m["payload"]["measure_id"]: m for m in of_measures(stack["tap"], ours, "provision_rejected")
    }
    assert {m: r["payload"]["reason"] for m, r in rejected.items()} == {
        books: "over_budget",
        boarding: "over_pupil_cap",
    }
    assert {r["payload"]["plan_id"] for r in rejected.values()} == {plan_id}

    # The director orders the meals and records monthly deliveries up to the planned amount.
    assert (
        act(
            stack["teacher@provisioning"], shown[meals], "order", supplier="x", amount_eur="60.00"
        ).status_code
        == 403
    )
    assert (
        act(
            stack["stranger@provisioning"], shown[meals], "order", supplier="x", amount_eur="60.00"
        ).status_code
        == 404
    )
    provision = ok(act(director, shown[meals], "order", supplier="Ēdnīca SIA", amount_eur="60.00"))
    assert (provision["status"], provision["order"]["supplier"]) == ("ordered", "Ēdnīca SIA")
    for month, receipt in (("2019-09-30", "R-0930"), ("2019-10-31", "R-1031")):
        provision = ok(
            act(
                director,
                provision,
                "deliver",
                delivered_on=month,
                amount_eur="20.00",
                receipt_no=receipt,
            ),
            201,
        )
    assert (provision["status"], provision["delivered_eur"], provision["committed_eur"]) == (
        "partially_delivered",
        "40.00",
        "20.00",
    )
    too_much = act(
        director,
        provision,
        "deliver",
        delivered_on="2019-11-29",
        amount_eur="20.01",
        receipt_no="R-1129",
    )
    assert too_much.status_code == 422
    assert too_much.json()["error"]["code"] == "over_planned"
    stale = act(
        director,
        {**provision, "version": 1},
        "deliver",
        delivered_on="2019-11-29",
        amount_eur="20.00",
        receipt_no="R-1129",
    )
    assert stale.status_code == 409
    last = act(
        director,
        provision,
        "deliver",
        delivered_on="2019-11-29",
        amount_eur="20.00",
        receipt_no="R-1129",
    )
    provision = ok(last, 201)
    assert (provision["status"], provision["delivered_eur"], provision["committed_eur"]) == (
        "delivered",
        "60.00",
        "0.00",
    )
    assert [d["receipt_no"] for d in provision["deliveries"]] == ["R-0930", "R-1031", "R-1129"]
    assert budget(municipal) == ("100.00", "0.00", "60.00", "40.00")
    done = ok(director.get("/provisions", params={"plan_id": plan_id, "status": "delivered"}))
    assert [p["measure_id"] for p in done["items"]] == [meals]

    # Every delivery is published with its amount and date, without supplier or receipt.
    wait_until(lambda: len(of_measures(stack["tap"], ours, "provision_delivered")) == 3, timeout=20)
    delivered = of_measures(stack["tap"], ours, "provision_delivered")
    assert [(d["payload"]["amount_eur"], d["payload"]["delivered_on"]) for d in delivered] == [
        ("20.00", "2019-09-30"),
        ("20.00", "2019-10-31"),
        ("20.00", "2019-11-29"),
    ]
    assert {d["payload"]["delivery_id"] for d in delivered} == {
        d["delivery_id"] for d in provision["deliveries"]
    }
    text = str(stack["tap"].drain())
    assert "Ēdnīca" not in text and "R-1031" not in text


def test_a_retried_delivery_with_its_idempotency_key_is_recorded_once(
    stack: dict[str, Any],
) -> None:
    director = stack["director@provisioning"]
    ok(put(stack["national@provisioning"], budget_path(RETRY_SEMESTER), {"amount_eur": "50.00"}))
    plan_id, _, (meals,) = plan_with(stack, [("meals", "30.00")], semester=RETRY_SEMESTER)
    provision = provisions_of(director, plan_id, 1)[meals]
    provision = ok(act(director, provision, "order", supplier="canteen", amount_eur="30.00"))
    body = {
        "delivered_on": "2019-10-01",
        "amount_eur": "10.00",
        "receipt_no": "R-1",
        "expected_version": provision["version"],
    }
    path = f"/provisions/{provision['provision_id']}/deliver"
    first = director.post(path, body, headers={"Idempotency-Key": "october-meals"})
    again = director.post(path, body, headers={"Idempotency-Key": "october-meals"})
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert len(reload(director, provision)["deliveries"]) == 1
    assert budget(director, RETRY_SEMESTER) == ("50.00", "20.00", "10.00", "20.00")


def test_suspension_holds_deactivation_and_cancellation_release_the_money(
    stack: dict[str, Any],
) -> None:
    director, teacher = stack["director@provisioning"], stack["teacher"]
    ok(put(stack["municipal@provisioning"], budget_path(HOLD_SEMESTER), {"amount_eur": "100.00"}))
    plan_id, _, (meals, clothes) = plan_with(
        stack, [("meals", "30.00"), ("personal_items", "20.00")], semester=HOLD_SEMESTER
    )
    shown = provisions_of(director, plan_id, 2)
    ok(act(director, shown[meals], "order", supplier="canteen", amount_eur="30.00"))

    plan_command(teacher, plan_id, "suspend", reason="in hospital")
    settles(director, plan_id, lambda p: p["status"] == "on_hold")
    held = reload(director, shown[meals])
    refused = act(
        director, held, "deliver", delivered_on="2019-10-01", amount_eur="5.00", receipt_no="R-1"
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "transition_not_allowed"
    assert budget(director, HOLD_SEMESTER) == ("100.00", "50.00", "0.00", "50.00")  # still reserved

    plan_command(teacher, plan_id, "resume")
    settles(director, plan_id, lambda p: p["status"] != "on_hold")
    statuses = {m: p["status"] for m, p in provisions_of(director, plan_id, 2).items()}
    assert statuses == {meals: "ordered", clothes: "requested"}

    cancelled = ok(act(director, reload(director, shown[clothes]), "cancel", reason="not needed"))
    assert (cancelled["status"], cancelled["cancellation"]["reason"]) == ("cancelled", "not needed")
    assert budget(director, HOLD_SEMESTER) == ("100.00", "30.00", "0.00", "70.00")

    plan_command(teacher, plan_id, "deactivate", reason="enrolled by mistake")
    settles(director, plan_id, lambda p: p["status"] == "cancelled")
    assert budget(director, HOLD_SEMESTER) == ("100.00", "0.00", "0.00", "100.00")
    causes = {
        m["payload"]["measure_id"]: m["payload"]["cause"]
        for m in of_measures(stack["tap"], {meals, clothes}, "provision_cancelled")
    }
    assert causes == {clothes: "cancelled", meals: "plan_deactivated"}
    ours = {meals, clothes}
    wait_until(lambda: len(of_measures(stack["tap"], ours, "provision_released")) == 2, timeout=20)
    released = of_measures(stack["tap"], ours, "provision_released")
    assert sorted(Decimal(m["payload"]["amount_eur"]) for m in released) == [20, 30]


def test_concurrent_deliveries_approvals_and_a_new_allocation_never_overspend_the_budget(
    stack: dict[str, Any],
) -> None:
    director, municipal = stack["director@provisioning"], stack["municipal@provisioning"]
    ok(put(municipal, budget_path(RACE_SEMESTER), {"amount_eur": "200.00"}))
    # Five provisions of 20.00, ordered: 100.00 committed.
    plan_id, _, measures = plan_with(stack, [("meals", "20.00")] * 5, semester=RACE_SEMESTER)
    ordered = [
        ok(act(director, p, "order", supplier="canteen", amount_eur="20.00"))
        for p in provisions_of(director, plan_id, 5).values()
    ]
    # Four more plans of 40.00 each, waiting only for the national approval: 160.00 wanted,
    # 100.00 left, so exactly two fit whatever the order.
    waiting = [
        plan_with(
            stack,
            [("learning_materials", "40.00")],
            approvers=APPROVERS[:2],
            semester=RACE_SEMESTER,
        )
        for _ in range(4)
    ]

    start = threading.Barrier(11)

    def at_once(call: Callable[[], Any]) -> Any:
        start.wait(timeout=60)
        return call()

    calls: list[Callable[[], Any]] = [
        # Four full deliveries, one on each of four provisions of the same budget.
        *[
            lambda p=p: act(
                director,
                p,
                "deliver",
                delivered_on="2019-10-01",
                amount_eur="20.00",
                receipt_no="R-A",
            )
            for p in ordered[:4]
        ],
        # Two deliveries racing for the fifth provision, from the same version.
        *[
            lambda r=r: act(
                director,
                ordered[4],
                "deliver",
                delivered_on="2019-10-01",
                amount_eur="15.00",
                receipt_no=r,
            )
            for r in ("R-B", "R-C")
        ],
        # The national approvals, which provisioning turns into commitments.
        *[
            lambda plan=plan: command(stack["national"], plan[0], "approve", plan[1])
            for plan in waiting
        ],
        # And the coordinator lowers the allocation meanwhile.
        lambda: put(municipal, budget_path(RACE_SEMESTER), {"amount_eur": "190.00"}),
    ]
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        answers = list(pool.map(at_once, calls))

    assert [a.status_code for a in answers[:4]] == [201] * 4
    assert sorted(a.status_code for a in answers[4:6]) == [201, 409]
    assert answers[10].status_code == 200
    approved = [provisions_of(director, plan[0], 1) for plan in waiting]
    statuses = sorted(next(iter(p.values()))["status"] for p in approved)
    assert statuses == ["rejected", "rejected", "requested", "requested"]

    # 95.00 delivered, 5.00 + 80.00 reserved, out of 190.00.
    assert budget(director, RACE_SEMESTER) == ("190.00", "85.00", "95.00", "10.00")
    every = ok(director.get("/provisions", params={"school_id": SCHOOL, "semester": RACE_SEMESTER}))
    items = every["items"]
    assert sum(Decimal(p["committed_eur"]) for p in items) == Decimal("85.00")
    assert sum(Decimal(p["delivered_eur"]) for p in items) == Decimal("95.00")
    assert {p["measure_id"] for p in items} >= set(measures)


def test_provisioning_down_during_an_approval_catches_up_and_requests_once(
    own_stack: dict[str, Any],
) -> None:
    stack = own_stack
    director = stack["director@provisioning"]
    process: ServiceProcess = stack["provisioning_process"]
    ok(put(stack["national@provisioning"], BUDGET, {"amount_eur": "100.00"}))
    process.stop()
    plan_id, _, (meals,) = plan_with(stack, [("meals", "70.00")])
    process.start()
    shown = provisions_of(director, plan_id, 1)
    assert (shown[meals]["status"], shown[meals]["committed_eur"]) == ("requested", "70.00")
    process.kill()  # and a crash: nothing is applied twice
    process.start()
    assert budget(director) == ("100.00", "70.00", "0.00", "30.00")
    assert len(provisions_of(director, plan_id, 1)) == 1
