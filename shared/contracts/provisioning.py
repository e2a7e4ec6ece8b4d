"""Integration events published by provisioning: school budgets and the material support
provided against them.

Budget events have the budget as their aggregate; provision events the provision, and
each names the plan and the measure it serves, and the provision's status after it, so
planning can show a measure's provision status and count delivered money as spent.
No personal data and no free text: supplier names, receipt numbers and the reasons
users give stay in provisioning's store. Money is a decimal string ("12.50").

Amounts on a provision: ``planned`` is what the measure plans; ``committed`` what is
reserved in the budget and not yet delivered; ``delivered`` what was spent.
"""

from marshmallow import Schema, fields, validate

from shared.contracts.registry import registry

SOURCE = "provisioning"

STATUSES = [
    "requested",
    "rejected",
    "ordered",
    "partially_delivered",
    "delivered",
    "on_hold",
    "cancelled",
]
# Why a commitment was refused.
REJECTION_REASONS = ["over_budget", "over_pupil_cap", "no_budget"]
# Why money went back to the budget, or a provision was cancelled.
CAUSES = ["cancelled", "measure_reduced", "measure_removed", "plan_deactivated", "plan_closed"]


def _money(**kwargs: object) -> fields.Decimal:
    return fields.Decimal(places=2, as_string=True, **kwargs)  # type: ignore[arg-type]


# -- budgets -----------------------------------------------------------------------------------


class BudgetOpenedV1(Schema):
    school_id = fields.String(required=True)
    semester = fields.String(required=True)


class BudgetSetV1(Schema):
    """The allocation of a school's semester budget was set (``previous_eur`` before)."""

    school_id = fields.String(required=True)
    semester = fields.String(required=True)
    amount_eur = _money(required=True)
    previous_eur = _money(required=True)


class BudgetMovementV1(Schema):
    """Money reserved for, given back by, or spent on one provision."""

    school_id = fields.String(required=True)
    semester = fields.String(required=True)
    provision_id = fields.String(required=True)
    amount_eur = _money(required=True)


# -- provisions --------------------------------------------------------------------------------


def _aggregate_id(event: dict[str, object]) -> str:
    return str(event["originator_id"])


class ProvisionV1(Schema):
    # The provision's id is the aggregate id of its events, repeated here for consumers.
    provision_id = fields.Function(
        serialize=_aggregate_id, deserialize=str, required=True, validate=validate.Length(min=1)
    )
    plan_id = fields.String(required=True)
    measure_id = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))


class ProvisionRequestedV1(ProvisionV1):
    school_id = fields.String(required=True)
    semester = fields.String(required=True)
    kind = fields.String(required=True)
    planned_eur = _money(required=True)


class ProvisionCommittedV1(ProvisionV1):
    """``amount_eur`` more is reserved in the budget for this provision."""

    amount_eur = _money(required=True)


class ProvisionRejectedV1(ProvisionV1):
    """Reserving ``amount_eur`` was refused. The status is ``rejected`` unless the provision
    already held money (a refused increase leaves it as it was)."""

    reason = fields.String(required=True, validate=validate.OneOf(REJECTION_REASONS))
    amount_eur = _money(required=True)


class ProvisionReplannedV1(ProvisionV1):
    """A re-approved revision changed the measure's amount or kind."""

    kind = fields.String(required=True)
    planned_eur = _money(required=True)


class ProvisionOrderedV1(ProvisionV1):
    amount_eur = _money(required=True)


class ProvisionDeliveredV1(ProvisionV1):
    delivery_id = fields.String(required=True)
    amount_eur = _money(required=True)
    delivered_on = fields.Date(required=True)


class ProvisionReleasedV1(ProvisionV1):
    """``amount_eur`` reserved and not delivered went back to the budget."""

    amount_eur = _money(required=True)
    cause = fields.String(required=True, validate=validate.OneOf(CAUSES))


class ProvisionCancelledV1(ProvisionV1):
    cause = fields.String(required=True, validate=validate.OneOf(CAUSES))


_CONTRACTS: tuple[tuple[str, type[Schema], str], ...] = (
    ("budget_opened", BudgetOpenedV1, "Budget.Opened"),
    ("budget_set", BudgetSetV1, "Budget.Set"),
    ("budget_committed", BudgetMovementV1, "Budget.Committed"),
    ("budget_released", BudgetMovementV1, "Budget.Released"),
    ("budget_spent", BudgetMovementV1, "Budget.Spent"),
    ("provision_requested", ProvisionRequestedV1, "Provision.Requested"),
    ("provision_committed", ProvisionCommittedV1, "Provision.Committed"),
    ("provision_rejected", ProvisionRejectedV1, "Provision.Rejected"),
    ("provision_replanned", ProvisionReplannedV1, "Provision.Replanned"),
    ("provision_ordered", ProvisionOrderedV1, "Provision.Ordered"),
    ("provision_delivered", ProvisionDeliveredV1, "Provision.Delivered"),
    ("provision_released", ProvisionReleasedV1, "Provision.Released"),
    ("provision_cancelled", ProvisionCancelledV1, "Provision.Cancelled"),
    ("provision_put_on_hold", ProvisionV1, "Provision.PutOnHold"),
    ("provision_resumed", ProvisionV1, "Provision.Resumed"),
)

for _event_type, _schema, _domain_event in _CONTRACTS:
    registry.register(SOURCE, _event_type, 1, _schema, _domain_event)
