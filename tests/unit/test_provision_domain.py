"""Every transition of a provision, and how each one moves the school's budget."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from services.provisioning import domain
from services.provisioning.domain import (
    CANCELLED,
    DELIVERED,
    MEASURE_REMOVED,
    NO_BUDGET,
    ON_HOLD,
    ORDERED,
    OVER_BUDGET,
    OVER_PUPIL_CAP,
    PARTIALLY_DELIVERED,
    PLAN_DEACTIVATED,
    REJECTED,
    REQUESTED,
    ApprovedPlan,
    Budget,
    InvalidAmountError,
    InvalidDateError,
    MaterialMeasure,
    OverPlannedError,
    Provision,
    ReceiptAlreadyRecordedError,
)
from shared.errors import TransitionNotAllowedError

D = Decimal
SCHOOL, SEMESTER = "daugavpils-10-vsk", "2019-2020-1"
TODAY = date(2020, 3, 1)


def budget(amount: str) -> Budget:
    b = Budget(school_id=SCHOOL, semester=SEMESTER, by="coordinator")
    b.set(D(amount), by="coordinator")
    return b


def plan(*measures: tuple[str, str, str], plan_id: str = "plan-1") -> ApprovedPlan:
    return ApprovedPlan(
        plan_id=plan_id,
        pupil_id="pupil-1",
        school_id=SCHOOL,
        semester=SEMESTER,
        measures=tuple(MaterialMeasure(m, kind, D(amount)) for m, kind, amount in measures),
    )


def requested(amount: str = "60.00", available: str = "100.00") -> tuple[Provision, Budget]:
    b = budget(available)
    approved = plan(("m1", "public_transport", amount))
    return domain.request(approved, approved.measures[0], b, None, by="ikvd"), b


def ordered(amount: str = "60.00") -> tuple[Provision, Budget]:
    p, b = requested(amount)
    p.order(supplier="AS Daugavpils satiksme", amount_eur=D(amount), by="director")
    return p, b


def deliver(p: Provision, b: Budget, amount: str, receipt: str, on: str = "2019-10-01") -> str:
    return domain.deliver(
        p,
        b,
        delivered_on=date.fromisoformat(on),
        amount_eur=D(amount),
        receipt_no=receipt,
        on=TODAY,
        by="director",
    )


def money_of(p: Provision) -> tuple[str, str, str, str]:
    return (p.status, f"{p.planned_eur}", f"{p.committed_eur}", f"{p.delivered_eur}")


def columns(b: Budget) -> tuple[str, str, str]:
    return (f"{b.committed}", f"{b.spent}", f"{b.available}")


def names(*aggregates: Provision | Budget) -> list[list[str]]:
    return [[type(e).__name__ for e in a.collect_events()] for a in aggregates]


# -- a request --------------------------------------------------------------------------------


def test_a_request_the_budget_allows_is_committed() -> None:
    p, b = requested("60.00", available="100.00")
    assert money_of(p) == (REQUESTED, "60.00", "60.00", "0.00")
    assert columns(b) == ("60.00", "0.00", "40.00")
    assert names(p, b) == [["Requested", "Committed"], ["Opened", "Set", "Committed"]]
    assert p.id == Provision.create_id("plan-1", "m1")  # one provision per plan and measure


@pytest.mark.parametrize(
    ("available", "cap", "reason"),
    [
        ("59.99", None, OVER_BUDGET),
        ("1000.00", D("50.00"), OVER_PUPIL_CAP),
        (None, None, NO_BUDGET),
    ],
)
def test_a_request_the_budget_cannot_take_is_rejected_and_holds_nothing(
    available: str | None, cap: Decimal | None, reason: str
) -> None:
    b = budget(available) if available else None
    measure = MaterialMeasure("m1", "meals", D("60.00"))
    p = domain.request(plan(("m1", "meals", "60.00")), measure, b, cap, by="ikvd")
    assert money_of(p) == (REJECTED, "60.00", "0.00", "0.00")
    assert p.rejection_reason == reason
    if b is not None:
        assert columns(b) == ("0.00", "0.00", available)
    for refused in (
        lambda: p.order(supplier="x", amount_eur=D("1.00"), by="d"),
        lambda: p.put_on_hold(by="d"),
    ):
        with pytest.raises(TransitionNotAllowedError):
            refused()


# -- order and deliveries --------------------------------------------------------------------


def test_an_order_names_the_supplier_and_at_most_the_planned_amount() -> None:
    p, _ = requested("60.00")
    with pytest.raises(OverPlannedError):
        p.order(supplier="x", amount_eur=D("60.01"), by="director")
    with pytest.raises(InvalidAmountError):
        p.order(supplier="x", amount_eur=D("0.00"), by="director")
    p.order(supplier="AS Daugavpils satiksme", amount_eur=D("60.00"), by="director")
    assert p.status == ORDERED
    assert p.purchase_order == {
        "supplier": "AS Daugavpils satiksme",
        "amount_eur": D("60.00"),
        "by": "director",
    }
    with pytest.raises(TransitionNotAllowedError):
        p.order(supplier="again", amount_eur=D("1.00"), by="director")


def test_monthly_partial_deliveries_until_the_planned_amount_is_used() -> None:
    p, b = ordered("60.00")
    first = deliver(p, b, "20.00", "R-09", "2019-09-30")
    assert money_of(p) == (PARTIALLY_DELIVERED, "60.00", "40.00", "20.00")
    assert columns(b) == ("40.00", "20.00", "40.00")
    deliver(p, b, "20.00", "R-10", "2019-10-31")
    with pytest.raises(OverPlannedError) as refused:
        deliver(p, b, "20.01", "R-11", "2019-11-30")  # more than planned
    assert refused.value.details == {
        "planned_eur": "60.00",
        "committed_eur": "20.00",
        "delivered_eur": "40.00",
    }
    deliver(p, b, "20.00", "R-11", "2019-11-30")
    assert money_of(p) == (DELIVERED, "60.00", "0.00", "60.00")
    assert columns(b) == ("0.00", "60.00", "40.00")
    assert [d["receipt_no"] for d in p.deliveries] == ["R-09", "R-10", "R-11"]
    assert p.deliveries[0]["delivery_id"] == first
    with pytest.raises(TransitionNotAllowedError):
        deliver(p, b, "0.01", "R-12")


def test_a_delivery_is_refused_before_an_order_twice_for_one_receipt_or_on_an_odd_date() -> None:
    p, b = requested("60.00")
    with pytest.raises(TransitionNotAllowedError):
        deliver(p, b, "10.00", "R-1")
    p.order(supplier="shop", amount_eur=D("60.00"), by="director")
    deliver(p, b, "10.00", "R-1")
    with pytest.raises(ReceiptAlreadyRecordedError):
        deliver(p, b, "10.00", "R-1")
    with pytest.raises(InvalidDateError):
        deliver(p, b, "10.00", "R-2", on="2019-08-31")  # before the semester
    with pytest.raises(InvalidDateError):
        deliver(p, b, "10.00", "R-2", on="2020-03-02")  # after today
    assert money_of(p) == (PARTIALLY_DELIVERED, "60.00", "50.00", "10.00")
    assert columns(b) == ("50.00", "10.00", "40.00")


# -- cancellation, hold, the end of the plan ------------------------------------------------


def test_cancelling_releases_what_was_not_delivered_and_keeps_what_was() -> None:
    p, b = ordered("60.00")
    deliver(p, b, "25.00", "R-1")
    names(p, b)
    domain.cancel(p, b, domain.BY_USER, "the family moved", by="director")
    assert money_of(p) == (CANCELLED, "60.00", "0.00", "25.00")
    assert p.cancellation == {"cause": "cancelled", "reason": "the family moved", "by": "director"}
    assert columns(b) == ("0.00", "25.00", "75.00")
    assert names(p, b) == [["Cancelled", "Released"], ["Released"]]
    with pytest.raises(TransitionNotAllowedError):
        domain.cancel(p, b, domain.BY_USER, "again", by="director")


def test_a_delivered_provision_cannot_be_cancelled() -> None:
    p, b = ordered("10.00")
    deliver(p, b, "10.00", "R-1")
    with pytest.raises(TransitionNotAllowedError):
        domain.cancel(p, b, domain.BY_USER, "too late", by="director")


@pytest.mark.parametrize("delivered", [None, "15.00"])
def test_a_suspended_plan_holds_its_open_provisions_and_resuming_restores_them(
    delivered: str | None,
) -> None:
    p, b = ordered("60.00")
    if delivered:
        deliver(p, b, delivered, "R-1")
    before = p.status
    assert domain.put_on_hold([p], by="teacher") == [p]
    assert p.status == ON_HOLD
    with pytest.raises(TransitionNotAllowedError):
        deliver(p, b, "1.00", "R-2")
    with pytest.raises(TransitionNotAllowedError):
        p.order(supplier="x", amount_eur=D("1.00"), by="d")
    assert domain.put_on_hold([p], by="teacher") == []  # nothing more to hold
    assert domain.resume([p], by="teacher") == [p]
    assert p.status == before
    assert domain.resume([p], by="teacher") == []
    expected = ("45.00", "15.00", "40.00") if delivered else ("60.00", "0.00", "40.00")
    assert columns(b) == expected


def test_a_deactivated_plan_cancels_what_is_open_held_or_rejected_and_leaves_the_delivered() -> (
    None
):
    b = budget("100.00")
    approved = plan(
        ("m1", "meals", "30.00"),
        ("m2", "learning_materials", "20.00"),
        ("m3", "personal_items", "10.00"),
        ("m4", "accommodation", "90.00"),  # more than is left: rejected
    )
    provisions = domain.reconcile(approved, [], b, None, by="ikvd")
    m1, m2, m3, m4 = provisions
    assert [p.status for p in provisions] == [REQUESTED, REQUESTED, REQUESTED, REJECTED]
    m2.order(supplier="shop", amount_eur=D("20.00"), by="d")
    deliver(m2, b, "20.00", "R-1")
    m3.put_on_hold(by="t")
    ended = domain.end(provisions, b, PLAN_DEACTIVATED, by="teacher")
    assert ended == [m1, m3, m4]
    assert [p.status for p in provisions] == [CANCELLED, DELIVERED, CANCELLED, CANCELLED]
    assert {p.cancellation["cause"] for p in ended if p.cancellation} == {PLAN_DEACTIVATED}
    assert columns(b) == ("0.00", "20.00", "80.00")


# -- a re-approved revision --------------------------------------------------------------------


def test_a_revision_adjusts_each_request_and_never_touches_delivered_money() -> None:
    b = budget("200.00")
    first = plan(
        ("transport", "public_transport", "60.00"),
        ("books", "learning_materials", "40.00"),
        ("clothes", "personal_items", "30.00"),
    )
    transport, books, clothes = domain.reconcile(first, [], b, None, by="ikvd")
    transport.order(supplier="bus", amount_eur=D("60.00"), by="d")
    deliver(transport, b, "20.00", "R-9")
    deliver(transport, b, "20.00", "R-10")
    assert columns(b) == ("90.00", "40.00", "70.00")
    names(transport, books, clothes, b)

    revised = plan(
        ("transport", "public_transport", "50.00"),  # reduced: 10 of the undelivered 20 back
        ("books", "learning_materials", "45.00"),  # increased: 5 more, checked
        ("shoes", "personal_items", "25.00"),  # new
    )  # clothes removed: its 30 back
    touched = domain.reconcile(revised, [transport, books, clothes], b, None, by="ikvd")
    assert {p.measure_id for p in touched} == {"transport", "books", "shoes", "clothes"}
    shoes = next(p for p in touched if p.measure_id == "shoes")
    assert money_of(transport) == (PARTIALLY_DELIVERED, "50.00", "10.00", "40.00")
    assert money_of(books) == (REQUESTED, "45.00", "45.00", "0.00")
    assert money_of(clothes) == (CANCELLED, "30.00", "0.00", "0.00")
    assert clothes.cancellation and clothes.cancellation["cause"] == MEASURE_REMOVED
    assert money_of(shoes) == (REQUESTED, "25.00", "25.00", "0.00")
    assert columns(b) == ("80.00", "40.00", "80.00")
    assert names(transport, books, clothes) == [
        ["Replanned", "Released"],
        ["Replanned", "Committed"],
        ["Cancelled", "Released"],
    ]


def test_a_reduction_below_what_was_delivered_releases_the_rest_and_counts_as_delivered() -> None:
    b = budget("100.00")
    (transport,) = domain.reconcile(plan(("t", "public_transport", "60.00")), [], b, None, by="x")
    transport.order(supplier="bus", amount_eur=D("60.00"), by="d")
    deliver(transport, b, "45.00", "R-1")
    domain.reconcile(plan(("t", "public_transport", "40.00")), [transport], b, None, by="x")
    assert money_of(transport) == (DELIVERED, "40.00", "0.00", "45.00")
    assert columns(b) == ("0.00", "45.00", "55.00")


def test_an_increase_the_budget_cannot_take_is_refused_and_the_provision_keeps_what_it_had() -> (
    None
):
    b = budget("100.00")
    (books,) = domain.reconcile(plan(("b", "learning_materials", "60.00")), [], b, None, by="x")
    books.order(supplier="shop", amount_eur=D("60.00"), by="d")
    names(books)
    domain.reconcile(plan(("b", "learning_materials", "140.00")), [books], b, None, by="x")
    assert money_of(books) == (ORDERED, "60.00", "60.00", "0.00")
    assert books.rejection_reason == OVER_BUDGET
    assert names(books) == [["Rejected"]]
    assert columns(b) == ("60.00", "0.00", "40.00")
    # Once the budget allows it, approving the plan again commits the increase.
    b.set(D("140.00"), by="coordinator")
    domain.reconcile(plan(("b", "learning_materials", "140.00")), [books], b, None, by="x")
    assert money_of(books) == (ORDERED, "140.00", "140.00", "0.00")
    assert books.rejection_reason is None
    assert columns(b) == ("140.00", "0.00", "0.00")


def test_a_rejected_request_is_tried_again_when_the_plan_is_approved_again() -> None:
    b = budget("50.00")
    (meals,) = domain.reconcile(plan(("m", "meals", "60.00")), [], b, None, by="x")
    assert meals.status == REJECTED
    domain.reconcile(plan(("m", "meals", "60.00")), [meals], b, None, by="x")
    assert (meals.status, meals.rejection_reason) == (REJECTED, OVER_BUDGET)
    b.set(D("80.00"), by="coordinator")
    domain.reconcile(plan(("m", "meals", "60.00")), [meals], b, None, by="x")
    assert money_of(meals) == (REQUESTED, "60.00", "60.00", "0.00")
    assert meals.rejection_reason is None
    assert columns(b) == ("60.00", "0.00", "20.00")


def test_a_cancelled_provision_stays_cancelled_when_the_plan_is_approved_again() -> None:
    b = budget("100.00")
    (meals,) = domain.reconcile(plan(("m", "meals", "60.00")), [], b, None, by="x")
    domain.cancel(meals, b, domain.BY_USER, "no longer needed", by="director")
    names(meals)
    assert domain.reconcile(plan(("m", "meals", "70.00")), [meals], b, None, by="x") == [meals]
    assert names(meals) == [[]]
    assert money_of(meals) == (CANCELLED, "60.00", "0.00", "0.00")
    assert columns(b) == ("0.00", "0.00", "100.00")


def test_the_events_alone_rebuild_a_provision() -> None:
    p, b = ordered("60.00")
    deliver(p, b, "20.00", "R-1")
    domain.put_on_hold([p], by="t")
    domain.resume([p], by="t")
    domain.cancel(p, b, domain.BY_USER, "moved", by="director")
    rebuilt = None
    for stored in p.collect_events():
        rebuilt = stored.mutate(rebuilt)
    assert isinstance(rebuilt, Provision)
    assert money_of(rebuilt) == money_of(p) == (CANCELLED, "60.00", "0.00", "20.00")
    assert rebuilt.deliveries == p.deliveries and rebuilt.version == p.version
