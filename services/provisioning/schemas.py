"""Provisioning's request and answer schemas (../shared/api.md).

Money is a decimal string in euros with two decimals ("12.50"); an amount with more
decimals is refused, never rounded.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from marshmallow import Schema, fields, validate

from services.provisioning.domain import STATUSES, Budget, Provision
from shared.history import HistoryEntrySchema as SharedHistoryEntrySchema
from shared.history import HistoryQuerySchema as HistoryQuerySchema
from shared.validators import cents, semester_field


def _money(minimum: str, maximum: int) -> fields.Decimal:
    return fields.Decimal(
        required=True, validate=[validate.Range(min=Decimal(minimum), max=Decimal(maximum)), cents]
    )


def _expected_version(required: bool = True) -> fields.Integer:
    return fields.Integer(required=required, strict=True, validate=validate.Range(min=1))


def _eur() -> fields.Decimal:
    return fields.Decimal(places=2, as_string=True)


# -- requests --------------------------------------------------------------------------------


class SetBudgetSchema(Schema):
    amount_eur = _money("0", 100_000_000)
    # Optional: when given, a budget changed meanwhile is refused (409).
    expected_version = _expected_version(required=False)


class OrderSchema(Schema):
    supplier = fields.String(required=True, validate=validate.Length(min=1, max=200))
    amount_eur = _money("0.01", 10_000_000)
    expected_version = _expected_version()


class DeliverSchema(Schema):
    delivered_on = fields.Date(required=True)
    amount_eur = _money("0.01", 10_000_000)
    receipt_no = fields.String(required=True, validate=validate.Length(min=1, max=64))
    expected_version = _expected_version()


class CancelSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    expected_version = _expected_version()


class ProvisionsQuerySchema(Schema):
    plan_id = fields.UUID()
    school_id = fields.String(validate=validate.Length(min=1, max=100))
    semester = semester_field()
    status = fields.String(validate=validate.OneOf(STATUSES))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))
    after = fields.UUID()


# -- answers ---------------------------------------------------------------------------------


class BudgetSchema(Schema):
    school_id = fields.String()
    semester = fields.String()
    allocated = _eur()
    committed = _eur()
    spent = _eur()
    available = _eur()
    version = fields.Integer()


class ProvisionItemSchema(Schema):
    provision_id = fields.String()
    plan_id = fields.String()
    measure_id = fields.String()
    school_id = fields.String()
    semester = fields.String()
    kind = fields.String()
    planned_eur = fields.String()
    committed_eur = fields.String()
    delivered_eur = fields.String()
    status = fields.String()
    version = fields.Integer()


class ProvisionListSchema(Schema):
    items = fields.List(fields.Nested(ProvisionItemSchema))
    next_after = fields.String(allow_none=True)


class OrderAnswerSchema(Schema):
    supplier = fields.String()
    amount_eur = _eur()
    by = fields.String()


class DeliveryAnswerSchema(Schema):
    delivery_id = fields.String()
    delivered_on = fields.Date()
    amount_eur = _eur()
    receipt_no = fields.String()
    by = fields.String()


class CancellationAnswerSchema(Schema):
    cause = fields.String()
    reason = fields.String(allow_none=True)
    by = fields.String()


class ProvisionSchema(Schema):
    provision_id = fields.String()
    plan_id = fields.String()
    measure_id = fields.String()
    school_id = fields.String()
    semester = fields.String()
    kind = fields.String()
    planned_eur = _eur()
    committed_eur = _eur()
    delivered_eur = _eur()
    status = fields.String()
    rejection_reason = fields.String(allow_none=True)
    order = fields.Nested(OrderAnswerSchema, allow_none=True)
    deliveries = fields.List(fields.Nested(DeliveryAnswerSchema))
    cancellation = fields.Nested(CancellationAnswerSchema, allow_none=True)
    created_on = fields.DateTime()
    modified_on = fields.DateTime()
    version = fields.Integer()


class DeliveredSchema(ProvisionSchema):
    delivery_id = fields.String()


def provision_view(provision: Provision) -> dict[str, Any]:
    """A provision as ``ProvisionSchema`` shows it."""
    return {
        **{k: v for k, v in vars(provision).items() if not k.startswith("_")},
        "provision_id": str(provision.id),
        "order": provision.purchase_order,
        "created_on": provision.created_on,
        "modified_on": provision.modified_on,
        "version": provision.version,
    }


def budget_view(budget: Budget) -> dict[str, Any]:
    return {
        "school_id": budget.school_id,
        "semester": budget.semester,
        "allocated": budget.allocated,
        "committed": budget.committed,
        "spent": budget.spent,
        "available": budget.available,
        "version": budget.version,
    }


class HistoryEntrySchema(SharedHistoryEntrySchema):
    source = "provisioning"


class HistorySchema(Schema):
    id = fields.String()
    items = fields.List(fields.Nested(HistoryEntrySchema))
    next_after = fields.Integer(allow_none=True)
