"""The budget arithmetic: allocated = committed + spent + available, never overspent."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.provisioning.domain import (
    OVER_BUDGET,
    OVER_PUPIL_CAP,
    Budget,
    BudgetBelowCommitmentsError,
    InvalidAmountError,
    OverBudgetError,
    Semester,
    money,
)
from shared.errors import ConflictError
from shared.semesters import InvalidSemesterError

SCHOOL, SEMESTER = "daugavpils-10-vsk", "2019-2020-1"
D = Decimal


def budget(amount: str = "100.00") -> Budget:
    b = Budget(school_id=SCHOOL, semester=SEMESTER, by="coordinator")
    b.set(D(amount), by="coordinator")
    return b


def numbers(b: Budget) -> tuple[str, str, str, str]:
    return (f"{b.allocated}", f"{b.committed}", f"{b.spent}", f"{b.available}")


def event_names(b: Budget) -> list[str]:
    return [type(e).__name__ for e in b.collect_events()]


def test_money_is_exact_euros_and_cents_never_a_float() -> None:
    assert money("12.5") == D("12.50") and str(money("12.5")) == "12.50"
    assert money(7) == D("7.00")
    assert money(D("0.10")) + money(D("0.20")) == D("0.30")
    for wrong in ("12.345", "abc", "NaN", "Infinity"):
        with pytest.raises(InvalidAmountError):
            money(wrong)
    with pytest.raises(InvalidAmountError):
        money(12.5)  # type: ignore[arg-type]


def test_a_new_budget_is_opened_and_set_and_every_change_is_an_event() -> None:
    b = budget("1000.00")
    assert numbers(b) == ("1000.00", "0.00", "0.00", "1000.00")
    assert event_names(b) == ["Opened", "Set"]
    b.set(D("1200.00"), by="coordinator")
    b.set(D("1200.00"), by="coordinator")  # the same amount again changes nothing
    assert event_names(b) == ["Set"]
    assert b.version == 3 and b.allocated == D("1200.00")
    with pytest.raises(InvalidAmountError):
        b.set(D("-1.00"), by="coordinator")
    with pytest.raises(InvalidAmountError):
        b.set(D("10.001"), by="coordinator")


def test_commit_spend_and_release_move_money_between_the_columns() -> None:
    b = budget("100.00")
    b.commit("p1", "pupil-1", D("60.00"), by="x")
    assert numbers(b) == ("100.00", "60.00", "0.00", "40.00")
    b.spend("p1", D("25.50"), by="x")
    assert numbers(b) == ("100.00", "34.50", "25.50", "40.00")
    b.release("p1", D("34.50"), by="x")
    assert numbers(b) == ("100.00", "0.00", "25.50", "74.50")
    assert event_names(b) == ["Opened", "Set", "Committed", "Spent", "Released"]
    # What a pupil holds counts committed and spent money, not what was released.
    assert b.pupil_total("pupil-1") == D("25.50")


def test_more_than_is_available_is_never_committed() -> None:
    b = budget("100.00")
    b.commit("p1", "pupil-1", D("99.99"), by="x")
    assert b.refusal("pupil-2", D("0.02"), None) == OVER_BUDGET
    assert b.refusal("pupil-2", D("0.01"), None) is None
    with pytest.raises(OverBudgetError):
        b.commit("p2", "pupil-2", D("0.02"), by="x")
    assert numbers(b) == ("100.00", "99.99", "0.00", "0.01")


def test_the_pupil_cap_counts_what_the_pupil_already_holds() -> None:
    b = budget("1000.00")
    b.commit("p1", "pupil-1", D("80.00"), by="x")
    assert b.refusal("pupil-1", D("20.01"), D("100.00")) == OVER_PUPIL_CAP
    assert b.refusal("pupil-1", D("20.00"), D("100.00")) is None
    assert b.refusal("pupil-2", D("100.00"), D("100.00")) is None
    # A pupil over the cap is refused for the cap even when the budget is short too.
    small = budget("10.00")
    assert small.refusal("pupil-1", D("150.00"), D("100.00")) == OVER_PUPIL_CAP


def test_a_budget_cannot_go_below_what_is_committed_and_spent() -> None:
    b = budget("100.00")
    b.commit("p1", "pupil-1", D("70.00"), by="x")
    b.spend("p1", D("20.00"), by="x")
    with pytest.raises(BudgetBelowCommitmentsError) as refused:
        b.set(D("69.99"), by="coordinator")
    assert refused.value.details == {"committed": "50.00", "spent": "20.00"}
    b.set(D("70.00"), by="coordinator")
    assert numbers(b) == ("70.00", "50.00", "20.00", "0.00")


def test_a_provision_releases_or_spends_only_what_it_holds() -> None:
    b = budget("100.00")
    b.commit("p1", "pupil-1", D("10.00"), by="x")
    b.commit("p2", "pupil-2", D("5.00"), by="x")
    for refused in (
        lambda: b.release("p1", D("10.01"), by="x"),
        lambda: b.spend("p1", D("10.01"), by="x"),
        lambda: b.release("p3", D("0.01"), by="x"),  # holds nothing here
        lambda: b.spend("p1", D("0.00"), by="x"),
        lambda: b.commit("p1", "pupil-1", D("-1.00"), by="x"),
    ):
        with pytest.raises((ConflictError, InvalidAmountError)):
            refused()
    assert numbers(b) == ("100.00", "15.00", "0.00", "85.00")
    assert (b.held_by("p1"), b.held_by("p2")) == (D("10.00"), D("5.00"))


def test_semesters_are_checked() -> None:
    assert str(Semester.parse("2019-2020-2")) == "2019-2020-2"
    for wrong in ("2019-2021-1", "2019-2020-3", "2019/2020-1", ""):
        with pytest.raises(InvalidSemesterError):
            Semester.parse(wrong)


cents = st.integers(min_value=0, max_value=100_000).map(lambda c: Decimal(c) / 100)
operations = st.lists(
    st.tuples(
        st.sampled_from(["commit", "spend", "release", "set"]),
        st.sampled_from(["p1", "p2", "p3", "p4"]),
        cents,
    ),
    max_size=40,
)
PUPIL_OF = {"p1": "pupil-1", "p2": "pupil-1", "p3": "pupil-2", "p4": "pupil-3"}


@given(allocation=cents, steps=operations)
def test_whatever_happens_the_columns_add_up_and_nothing_is_overspent(
    allocation: Decimal, steps: list[tuple[str, str, Decimal]]
) -> None:
    b = budget(f"{allocation:.2f}")
    for action, provision, amount in steps:
        try:
            if action == "commit":
                b.commit(provision, PUPIL_OF[provision], amount, by="x")
            elif action == "spend":
                b.spend(provision, min(amount, b.held_by(provision)), by="x")
            elif action == "release":
                b.release(provision, amount, by="x")
            else:
                b.set(amount, by="x")
        except (ConflictError, InvalidAmountError):
            pass
        assert b.allocated == b.committed + b.spent + b.available
        assert b.available >= 0 and b.committed >= 0 and b.spent >= 0
        assert b.committed == sum(b.holdings.values(), Decimal(0))
        assert all(v >= 0 for v in b.pupils.values())
        assert all(v == v.quantize(Decimal("0.01")) for v in (b.committed, b.spent, b.available))
    # The events alone rebuild the same numbers.
    rebuilt = None
    for stored in b.collect_events():
        rebuilt = stored.mutate(rebuilt)
    assert rebuilt is not None and numbers(rebuilt) == numbers(b)
