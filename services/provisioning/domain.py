"""School budgets per semester, and the material support provided against them.

A ``Budget`` belongs to one school and one semester. Coordinators set its allocation;
every provision reserves (commits) money in it, spends it by deliveries, or gives it
back (releases it). At all times::

    available = allocated - committed - spent >= 0

where ``committed`` is reserved and not yet delivered. Every change of the numbers is
an event of the budget, so its version guards them: two commands that read the same
budget version cannot both save (the loser retries on the new state), and a budget is
never overspent, whichever commands race.

A ``Provision`` is one material measure of a fully approved plan. Its ``planned_eur``
follows the measure; its ``committed_eur`` is what it holds in the budget, not yet
delivered; ``delivered_eur`` what it spent. Money is ``Decimal`` euros with cents,
never a float. Commands are public methods that check (``check_*``) before any event,
so a refused command changes nothing; events are named in the past tense.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from eventsourcing.domain import Aggregate, event

from shared import days
from shared.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    StaleVersionError,
    TransitionNotAllowedError,
    UnprocessableError,
)
from shared.semesters import Semester

CENT = Decimal("0.01")
ZERO = Decimal("0.00")

# -- vocabulary (../shared/api.md) ---------------------------------------------------------

REQUESTED = "requested"
REJECTED = "rejected"
ORDERED = "ordered"
PARTIALLY_DELIVERED = "partially_delivered"
DELIVERED = "delivered"
ON_HOLD = "on_hold"
CANCELLED = "cancelled"
STATUSES = (REQUESTED, REJECTED, ORDERED, PARTIALLY_DELIVERED, DELIVERED, ON_HOLD, CANCELLED)
# Holding money that may still be delivered: these go on hold when the plan is suspended.
OPEN = (REQUESTED, ORDERED, PARTIALLY_DELIVERED)
CANCELLABLE = (*OPEN, ON_HOLD, REJECTED)
DELIVERABLE = (ORDERED, PARTIALLY_DELIVERED)

OVER_BUDGET = "over_budget"
OVER_PUPIL_CAP = "over_pupil_cap"
NO_BUDGET = "no_budget"

# Why money went back to the budget, or a provision was cancelled.
BY_USER = "cancelled"
MEASURE_REDUCED = "measure_reduced"
MEASURE_REMOVED = "measure_removed"
PLAN_DEACTIVATED = "plan_deactivated"
PLAN_CLOSED = "plan_closed"

_NAMESPACE = uuid5(NAMESPACE_URL, "urn:pumpurs:provisioning")


def today() -> date:
    """The day no recorded date may come after, in Riga; tests replace it."""
    return days.today()


# -- errors ------------------------------------------------------------------------------


class InvalidAmountError(InvalidInputError):
    code = "invalid_amount"


class BudgetNotFoundError(NotFoundError):
    code = "budget_not_found"


class SchoolNotFoundError(NotFoundError):
    code = "school_not_found"


class ProvisionNotFoundError(NotFoundError):
    code = "provision_not_found"


class BudgetBelowCommitmentsError(ConflictError):
    code = "budget_below_commitments"


class OverBudgetError(ConflictError):
    code = "over_budget"


class NotCommittedError(ConflictError):
    code = "not_committed"


class OverPlannedError(UnprocessableError):
    code = "over_planned"


class ReceiptAlreadyRecordedError(ConflictError):
    code = "receipt_already_recorded"


class InvalidDateError(UnprocessableError):
    code = "invalid_date"


# -- money and semesters -----------------------------------------------------------------


def money(value: Decimal | int | str) -> Decimal:
    """Euros with at most two decimals, as a Decimal with exactly two; never a float."""
    if isinstance(value, float):
        raise InvalidAmountError("money is never a float: give euros as a string like 12.50")
    try:
        amount = Decimal(value)
    except (InvalidOperation, ValueError):
        raise InvalidAmountError(f"{value!r} is not an amount of euros") from None
    if not amount.is_finite() or amount != amount.quantize(CENT):
        raise InvalidAmountError("an amount of euros has at most two decimals")
    return amount.quantize(CENT)


def check_version(aggregate: Aggregate | None, expected_version: int | None) -> None:
    """A stale ``expected_version`` changes nothing (an aggregate not yet saved is at 0)."""
    current = aggregate.version if aggregate is not None else 0
    if expected_version is not None and expected_version != current:
        raise StaleVersionError(expected_version, current)


# -- the budget --------------------------------------------------------------------------


class Budget(Aggregate):
    """The money of one school for one semester."""

    @staticmethod
    def create_id(school_id: str, semester: str) -> UUID:
        return uuid5(_NAMESPACE, f"budget/{school_id}/{semester}")

    @event("Opened")
    def __init__(self, school_id: str, semester: str, by: str) -> None:
        self.school_id = school_id
        self.semester = semester
        self.allocated = ZERO
        self.committed = ZERO
        self.spent = ZERO
        # What each provision holds (committed, not yet spent), and whose it is.
        self.holdings: dict[str, Decimal] = {}
        self.holders: dict[str, str] = {}
        # Committed plus spent per pupil, for the optional cap per pupil and semester.
        self.pupils: dict[str, Decimal] = {}

    @property
    def available(self) -> Decimal:
        return self.allocated - self.committed - self.spent

    def pupil_total(self, pupil_id: str) -> Decimal:
        return self.pupils.get(pupil_id, ZERO)

    def held_by(self, provision_id: str) -> Decimal:
        return self.holdings.get(provision_id, ZERO)

    def _where(self) -> dict[str, str]:
        return {"school_id": self.school_id, "semester": self.semester}

    # -- checks ----------------------------------------------------------------------
    def check_not_below_commitments(self, amount: Decimal) -> None:
        if amount < self.committed + self.spent:
            raise BudgetBelowCommitmentsError(
                f"{amount:.2f} EUR is less than the {self.committed + self.spent:.2f} EUR "
                "already committed or spent",
                {"committed": f"{self.committed:.2f}", "spent": f"{self.spent:.2f}"},
            )

    def check_held(self, provision_id: str, amount: Decimal, action: str) -> None:
        if not 0 < amount <= self.held_by(provision_id):
            raise NotCommittedError(
                f"cannot {action} {amount:.2f} EUR: provision {provision_id} holds "
                f"{self.held_by(provision_id):.2f} EUR of this budget"
            )

    def refusal(self, pupil_id: str, amount: Decimal, pupil_cap: Decimal | None) -> str | None:
        """Why ``amount`` more cannot be committed for the pupil, or None if it can."""
        if pupil_cap is not None and self.pupil_total(pupil_id) + amount > pupil_cap:
            return OVER_PUPIL_CAP
        if amount > self.available:
            return OVER_BUDGET
        return None

    # -- commands --------------------------------------------------------------------
    def set(self, amount_eur: Decimal, *, by: str) -> None:
        amount = money(amount_eur)
        if amount < 0:
            raise InvalidAmountError("a budget is never negative")
        self.check_not_below_commitments(amount)
        if amount != self.allocated or self.version == 1:
            self._set(**self._where(), amount_eur=amount, previous_eur=self.allocated, by=by)

    @event("Set")
    def _set(
        self, school_id: str, semester: str, amount_eur: Decimal, previous_eur: Decimal, by: str
    ) -> None:
        self.allocated = amount_eur

    def commit(self, provision_id: str, pupil_id: str, amount: Decimal, *, by: str) -> None:
        if amount <= 0:
            raise InvalidAmountError("only a positive amount is committed")
        if amount > self.available:
            raise OverBudgetError(
                f"{amount:.2f} EUR is more than the {self.available:.2f} EUR available",
                {"available": f"{self.available:.2f}"},
            )
        self._commit(
            **self._where(), provision_id=provision_id, pupil_id=pupil_id, amount_eur=amount, by=by
        )

    @event("Committed")
    def _commit(
        self,
        school_id: str,
        semester: str,
        provision_id: str,
        pupil_id: str,
        amount_eur: Decimal,
        by: str,
    ) -> None:
        self.committed += amount_eur
        self.holdings[provision_id] = self.held_by(provision_id) + amount_eur
        self.holders[provision_id] = pupil_id
        self.pupils[pupil_id] = self.pupil_total(pupil_id) + amount_eur

    def release(self, provision_id: str, amount: Decimal, *, by: str) -> None:
        self.check_held(provision_id, amount, "release")
        self._release(**self._where(), provision_id=provision_id, amount_eur=amount, by=by)

    @event("Released")
    def _release(
        self, school_id: str, semester: str, provision_id: str, amount_eur: Decimal, by: str
    ) -> None:
        self.committed -= amount_eur
        pupil_id = self.holders[provision_id]
        self.pupils[pupil_id] = self.pupil_total(pupil_id) - amount_eur
        self._hold_less(provision_id, amount_eur)

    def spend(self, provision_id: str, amount: Decimal, *, by: str) -> None:
        self.check_held(provision_id, amount, "spend")
        self._spend(**self._where(), provision_id=provision_id, amount_eur=amount, by=by)

    @event("Spent")
    def _spend(
        self, school_id: str, semester: str, provision_id: str, amount_eur: Decimal, by: str
    ) -> None:
        self.committed -= amount_eur
        self.spent += amount_eur
        self._hold_less(provision_id, amount_eur)

    def _hold_less(self, provision_id: str, amount: Decimal) -> None:
        left = self.held_by(provision_id) - amount
        if left:
            self.holdings[provision_id] = left
        else:  # settled: forget it, so the budget stays small
            del self.holdings[provision_id], self.holders[provision_id]


# -- the provision ------------------------------------------------------------------------


def status_of_money(status: str, committed: Decimal, delivered: Decimal) -> str:
    """What a provision in ``status`` becomes once its money is as given."""
    if status == CANCELLED:
        return status
    if committed == 0 and delivered > 0:
        return DELIVERED
    if delivered > 0:
        return PARTIALLY_DELIVERED
    if status == REJECTED and committed > 0:
        return REQUESTED
    return status


class Provision(Aggregate):
    """One material measure of an approved plan, provided against the school's budget."""

    @staticmethod
    def create_id(plan_id: str, measure_id: str) -> UUID:
        return uuid5(_NAMESPACE, f"provision/{plan_id}/{measure_id}")

    @event("Requested")
    def __init__(
        self,
        plan_id: str,
        measure_id: str,
        pupil_id: str,
        school_id: str,
        semester: str,
        kind: str,
        planned_eur: Decimal,
        status: str,
        by: str,
    ) -> None:
        self.plan_id = plan_id
        self.measure_id = measure_id
        self.pupil_id = pupil_id
        self.school_id = school_id
        self.semester = semester
        self.kind = kind
        self.planned_eur = planned_eur
        self.committed_eur = ZERO
        self.delivered_eur = ZERO
        self.status = status
        self.held_from: str | None = None
        self.rejection_reason: str | None = None
        self.purchase_order: dict[str, Any] | None = None
        self.deliveries: list[dict[str, Any]] = []
        self.cancellation: dict[str, Any] | None = None

    def _ids(self) -> dict[str, str]:
        """What every event of the provision names (its contracts publish them)."""
        return {"plan_id": self.plan_id, "measure_id": self.measure_id}

    def _status_with(self, committed: Decimal, delivered: Decimal) -> str:
        """The status once the money is as given (a hold or a cancellation stays)."""
        if self.status == ON_HOLD:
            return ON_HOLD
        return status_of_money(self.status, committed, delivered)

    # -- checks ----------------------------------------------------------------------
    def check_status(self, action: str, *allowed: str) -> None:
        if self.status not in allowed:
            raise TransitionNotAllowedError(
                f"cannot {action} a provision that is {self.status}",
                {"status": self.status, "action": action, "allowed_from": list(allowed)},
            )

    def check_within_committed(self, amount: Decimal, action: str) -> None:
        if amount <= 0:
            raise InvalidAmountError(f"the amount to {action} must be positive")
        if amount > self.committed_eur:
            raise OverPlannedError(
                f"{amount:.2f} EUR is more than the {self.committed_eur:.2f} EUR planned and "
                f"not yet delivered ({self.delivered_eur:.2f} of {self.planned_eur:.2f} "
                "delivered)",
                {
                    "planned_eur": f"{self.planned_eur:.2f}",
                    "committed_eur": f"{self.committed_eur:.2f}",
                    "delivered_eur": f"{self.delivered_eur:.2f}",
                },
            )

    def check_new_receipt(self, receipt_no: str) -> None:
        if any(d["receipt_no"] == receipt_no for d in self.deliveries):
            raise ReceiptAlreadyRecordedError(
                "this receipt is recorded already for this provision",
                {"receipt_no": receipt_no},
            )

    def check_delivery_date(self, delivered_on: date, on: date) -> None:
        earliest = Semester.parse(self.semester).starts_on
        if not earliest <= delivered_on <= on:
            raise InvalidDateError(
                f"delivered_on must be between {earliest} and {on}",
                {"fields": {"delivered_on": [f"between {earliest} and {on}"]}},
            )

    # -- money against the budget ----------------------------------------------------
    def commit(self, amount: Decimal, *, by: str) -> None:
        self.check_status("commit money to", REQUESTED, REJECTED, *DELIVERABLE, DELIVERED, ON_HOLD)
        status = self._status_with(self.committed_eur + amount, self.delivered_eur)
        self._commit(**self._ids(), amount_eur=amount, status=status, by=by)

    @event("Committed")
    def _commit(
        self,
        plan_id: str,
        measure_id: str,
        amount_eur: Decimal,
        status: str,
        by: str,
    ) -> None:
        self.committed_eur += amount_eur
        self.status = status
        self.rejection_reason = None

    def holds_money(self) -> bool:
        """Whether money is reserved or spent for it (then a refusal leaves it as it is)."""
        return self.committed_eur > 0 or self.delivered_eur > 0

    def reject(self, reason: str, amount: Decimal, *, by: str) -> None:
        """Reserving ``amount`` was refused; a provision holding nothing is rejected."""
        status = self.status if self.holds_money() else REJECTED
        self._reject(**self._ids(), reason=reason, amount_eur=amount, status=status, by=by)

    @event("Rejected")
    def _reject(
        self,
        plan_id: str,
        measure_id: str,
        reason: str,
        amount_eur: Decimal,
        status: str,
        by: str,
    ) -> None:
        self.status = status
        self.rejection_reason = reason

    def release(self, amount: Decimal, cause: str, *, by: str) -> None:
        if amount <= 0 or amount > self.committed_eur:
            raise ConflictError(f"cannot release {amount:.2f} of {self.committed_eur:.2f} EUR")
        status = self._status_with(self.committed_eur - amount, self.delivered_eur)
        self._release(**self._ids(), amount_eur=amount, cause=cause, status=status, by=by)

    @event("Released")
    def _release(
        self,
        plan_id: str,
        measure_id: str,
        amount_eur: Decimal,
        cause: str,
        status: str,
        by: str,
    ) -> None:
        self.committed_eur -= amount_eur
        self.status = status

    def replan(self, *, kind: str, planned_eur: Decimal, by: str) -> None:
        """The measure changed in a re-approved revision (money moves separately)."""
        if (kind, planned_eur) != (self.kind, self.planned_eur):
            self._replan(
                **self._ids(), kind=kind, planned_eur=planned_eur, status=self.status, by=by
            )

    @event("Replanned")
    def _replan(
        self,
        plan_id: str,
        measure_id: str,
        kind: str,
        planned_eur: Decimal,
        status: str,
        by: str,
    ) -> None:
        self.kind = kind
        self.planned_eur = planned_eur

    # -- what users do ---------------------------------------------------------------
    def order(self, *, supplier: str, amount_eur: Decimal, by: str) -> None:
        self.check_status("order", REQUESTED)
        amount = money(amount_eur)
        self.check_within_committed(amount, "order")
        self._order(**self._ids(), supplier=supplier, amount_eur=amount, status=ORDERED, by=by)

    @event("Ordered")
    def _order(
        self,
        plan_id: str,
        measure_id: str,
        supplier: str,
        amount_eur: Decimal,
        status: str,
        by: str,
    ) -> None:
        self.purchase_order = {"supplier": supplier, "amount_eur": amount_eur, "by": by}
        self.status = status

    def deliver(
        self, *, delivered_on: date, amount_eur: Decimal, receipt_no: str, on: date, by: str
    ) -> str:
        """Record one (partial) delivery; its id. More than planned is refused."""
        self.check_status("deliver", *DELIVERABLE)
        amount = money(amount_eur)
        self.check_within_committed(amount, "deliver")
        self.check_new_receipt(receipt_no)
        self.check_delivery_date(delivered_on, on)
        delivery_id = str(uuid4())
        status = self._status_with(self.committed_eur - amount, self.delivered_eur + amount)
        self._deliver(
            **self._ids(),
            delivery_id=delivery_id,
            delivered_on=delivered_on,
            amount_eur=amount,
            receipt_no=receipt_no,
            status=status,
            by=by,
        )
        return delivery_id

    @event("Delivered")
    def _deliver(
        self,
        plan_id: str,
        measure_id: str,
        delivery_id: str,
        delivered_on: date,
        amount_eur: Decimal,
        receipt_no: str,
        status: str,
        by: str,
    ) -> None:
        self.deliveries.append(
            {
                "delivery_id": delivery_id,
                "delivered_on": delivered_on,
                "amount_eur": amount_eur,
                "receipt_no": receipt_no,
                "by": by,
            }
        )
        self.committed_eur -= amount_eur
        self.delivered_eur += amount_eur
        self.status = status

    def cancel(self, *, cause: str, reason: str | None, by: str) -> Decimal:
        """Cancel what is not delivered; the amount that goes back to the budget."""
        self.check_status("cancel", *CANCELLABLE)
        self._cancel(**self._ids(), cause=cause, reason=reason, status=CANCELLED, by=by)
        released = self.committed_eur
        if released > 0:
            self.release(released, cause, by=by)
        return released

    @event("Cancelled")
    def _cancel(
        self,
        plan_id: str,
        measure_id: str,
        cause: str,
        reason: str | None,
        status: str,
        by: str,
    ) -> None:
        self.cancellation = {"cause": cause, "reason": reason, "by": by}
        self.status = status

    def put_on_hold(self, *, by: str) -> None:
        self.check_status("put on hold", *OPEN)
        self._put_on_hold(**self._ids(), status=ON_HOLD, by=by)

    @event("PutOnHold")
    def _put_on_hold(self, plan_id: str, measure_id: str, status: str, by: str) -> None:
        self.held_from = self.status
        self.status = status

    def resume(self, *, by: str) -> None:
        self.check_status("resume", ON_HOLD)
        status = status_of_money(
            self.held_from or REQUESTED, self.committed_eur, self.delivered_eur
        )
        self._resume(**self._ids(), status=status, by=by)

    @event("Resumed")
    def _resume(self, plan_id: str, measure_id: str, status: str, by: str) -> None:
        self.status = status
        self.held_from = None


# -- what a plan asks for, and how the budget answers ---------------------------------------


@dataclass(frozen=True)
class MaterialMeasure:
    measure_id: str
    kind: str
    amount_eur: Decimal


@dataclass(frozen=True)
class ApprovedPlan:
    """What ``plan_fully_approved`` says: the plan's material measures as approved now."""

    plan_id: str
    pupil_id: str
    school_id: str
    semester: str
    measures: tuple[MaterialMeasure, ...]

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> ApprovedPlan:
        measures = tuple(
            MaterialMeasure(m["measure_id"], m["kind"], money(m["amount_eur"]))
            for m in payload["material_measures"]
        )
        return cls(
            payload["plan_id"],
            payload["pupil_id"],
            payload["school_id"],
            payload["semester"],
            measures,
        )


def refusal(
    budget: Budget | None, pupil_id: str, amount: Decimal, pupil_cap: Decimal | None
) -> str | None:
    """Why ``amount`` more cannot be committed for the pupil, or None if it can."""
    return NO_BUDGET if budget is None else budget.refusal(pupil_id, amount, pupil_cap)


def commit_or_reject(
    provision: Provision,
    budget: Budget | None,
    amount: Decimal,
    pupil_cap: Decimal | None,
    *,
    by: str,
) -> bool:
    """Reserve ``amount`` more for the provision if the budget (and the cap) allow it."""
    if amount <= 0:
        return True
    reason = refusal(budget, provision.pupil_id, amount, pupil_cap)
    if reason is not None or budget is None:
        provision.reject(reason or NO_BUDGET, amount, by=by)
        return False
    budget.commit(str(provision.id), provision.pupil_id, amount, by=by)
    provision.commit(amount, by=by)
    return True


def release(provision: Provision, budget: Budget, amount: Decimal, cause: str, *, by: str) -> None:
    if amount > 0:
        provision.release(amount, cause, by=by)
        budget.release(str(provision.id), amount, by=by)


def cancel(
    provision: Provision, budget: Budget | None, cause: str, reason: str | None, *, by: str
) -> None:
    released = provision.cancel(cause=cause, reason=reason, by=by)
    if released > 0:
        assert budget is not None, "a provision holding money has a budget"
        budget.release(str(provision.id), released, by=by)


def deliver(
    provision: Provision,
    budget: Budget,
    *,
    delivered_on: date,
    amount_eur: Decimal,
    receipt_no: str,
    on: date,
    by: str,
) -> str:
    amount = money(amount_eur)
    delivery_id = provision.deliver(
        delivered_on=delivered_on, amount_eur=amount, receipt_no=receipt_no, on=on, by=by
    )
    budget.spend(str(provision.id), amount, by=by)
    return delivery_id


def request(
    plan: ApprovedPlan,
    measure: MaterialMeasure,
    budget: Budget | None,
    pupil_cap: Decimal | None,
    *,
    by: str,
) -> Provision:
    """A new provision for a measure: committed against the budget, or rejected."""
    provision = Provision(
        plan_id=plan.plan_id,
        measure_id=measure.measure_id,
        pupil_id=plan.pupil_id,
        school_id=plan.school_id,
        semester=plan.semester,
        kind=measure.kind,
        planned_eur=measure.amount_eur,
        status=REQUESTED,
        by=by,
    )
    commit_or_reject(provision, budget, measure.amount_eur, pupil_cap, by=by)
    return provision


def adjust(
    provision: Provision,
    measure: MaterialMeasure,
    budget: Budget | None,
    pupil_cap: Decimal | None,
    *,
    by: str,
) -> None:
    """Bring a provision in line with its re-approved measure. A reduction releases the
    undelivered remainder; an increase (or a rejected request) is committed again with a
    budget check, and a refused increase leaves the provision as it was; delivered money
    never changes; a cancelled provision stays cancelled."""
    if provision.status == CANCELLED:
        return
    more = max(measure.amount_eur - provision.delivered_eur, ZERO) - provision.committed_eur
    reason = refusal(budget, provision.pupil_id, more, pupil_cap) if more > 0 else None
    if reason is not None and provision.holds_money():
        provision.replan(kind=measure.kind, planned_eur=provision.planned_eur, by=by)
        provision.reject(reason, more, by=by)
        return
    provision.replan(kind=measure.kind, planned_eur=measure.amount_eur, by=by)
    if more < 0:
        assert budget is not None, "a provision holding money has a budget"
        release(provision, budget, -more, MEASURE_REDUCED, by=by)
    elif more > 0:
        commit_or_reject(provision, budget, more, pupil_cap, by=by)


def reconcile(
    plan: ApprovedPlan,
    provisions: Iterable[Provision],
    budget: Budget | None,
    pupil_cap: Decimal | None,
    *,
    by: str,
) -> list[Provision]:
    """The provisions of a (re-)approved plan: new ones requested, changed ones adjusted,
    those of removed measures cancelled. Returns every provision touched."""
    existing = {p.measure_id: p for p in provisions}
    touched: list[Provision] = []
    for measure in plan.measures:
        provision = existing.pop(measure.measure_id, None)
        if provision is None:
            touched.append(request(plan, measure, budget, pupil_cap, by=by))
        else:
            adjust(provision, measure, budget, pupil_cap, by=by)
            touched.append(provision)
    for provision in existing.values():
        if provision.status in CANCELLABLE:
            cancel(provision, budget, MEASURE_REMOVED, None, by=by)
            touched.append(provision)
    return touched


def end(
    provisions: Sequence[Provision], budget: Budget | None, cause: str, *, by: str
) -> list[Provision]:
    """The plan ended (deactivated or closed): cancel what is open, releasing its money."""
    ended = [p for p in provisions if p.status in CANCELLABLE]
    for provision in ended:
        cancel(provision, budget, cause, None, by=by)
    return ended


def put_on_hold(provisions: Sequence[Provision], *, by: str) -> list[Provision]:
    held = [p for p in provisions if p.status in OPEN]
    for provision in held:
        provision.put_on_hold(by=by)
    return held


def resume(provisions: Sequence[Provision], *, by: str) -> list[Provision]:
    resumed = [p for p in provisions if p.status == ON_HOLD]
    for provision in resumed:
        provision.resume(by=by)
    return resumed
