"""Integration events published by planning: one per step of an individual support plan.

The aggregate id of every event is the plan id. No personal data and no free text:
justifications, reasons, topics, providers' names and subjects stay in planning's
store and in the plan's history. Money and hours are decimal strings ("12.50").
"""

from marshmallow import Schema, fields, validate

from shared import vocabulary
from shared.contracts.registry import registry
from shared.vocabulary import APPROVAL_LEVELS, PLAN_STATUSES

SOURCE = "planning"

LEVELS = list(APPROVAL_LEVELS)
STATUSES = list(PLAN_STATUSES)
OUTCOMES = list(vocabulary.OUTCOMES)
RISK_OUTCOMES = list(vocabulary.RISK_OUTCOMES)


def _money(**kwargs: object) -> fields.Decimal:
    return fields.Decimal(places=2, as_string=True, **kwargs)  # type: ignore[arg-type]


class PlanDraftedV1(Schema):
    pupil_id = fields.String(required=True)
    school_id = fields.String(required=True)
    semester = fields.String(required=True)
    levels = fields.List(fields.String(validate=validate.OneOf(LEVELS)), required=True)
    risk_codes = fields.List(fields.String(), required=True)
    previous_plan_id = fields.String(required=True, allow_none=True)


class MeasureV1(Schema):
    measure_id = fields.String(required=True)
    kind = fields.String(required=True)
    risk_code = fields.String(required=True)
    hours = fields.Decimal(places=2, as_string=True, required=True, allow_none=True)
    amount_eur = _money(required=True, allow_none=True)


class MeasureRemovedV1(Schema):
    measure_id = fields.String(required=True)


class PlanSubmittedV1(Schema):
    pending_level = fields.String(required=True, validate=validate.OneOf(LEVELS))


class PlanApprovedV1(Schema):
    level = fields.String(required=True, validate=validate.OneOf(LEVELS))
    by = fields.String(required=True)


class MaterialMeasureV1(Schema):
    measure_id = fields.String(required=True)
    kind = fields.String(required=True)
    amount_eur = _money(required=True)


class PlanFullyApprovedV1(Schema):
    """Provisioning creates (or reconciles) provision requests from the material measures."""

    plan_id = fields.String(required=True)
    pupil_id = fields.String(required=True)
    school_id = fields.String(required=True)
    semester = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(["approved", "in_progress"]))
    material_measures = fields.List(fields.Nested(MaterialMeasureV1), required=True)


class PlanReturnedV1(Schema):
    level = fields.String(required=True, validate=validate.OneOf(LEVELS))
    status = fields.String(required=True, validate=validate.OneOf(["draft", "under_revision"]))


class NoFieldsV1(Schema):
    """Events whose meaning is their type (the reason, if any, stays in planning)."""


class PlanResumedV1(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["approved", "in_progress"]))


class ConsultationLoggedV1(Schema):
    consultation_id = fields.String(required=True)
    measure_id = fields.String(required=True)
    kind = fields.String(required=True)
    date = fields.Date(required=True)
    hours = fields.Decimal(places=2, as_string=True, required=True)
    remote = fields.Boolean(required=True)
    rate_eur = _money(required=True)
    cost_eur = _money(required=True)


class ConsultationConfirmedV1(Schema):
    consultation_id = fields.String(required=True)
    confirmed_on = fields.Date(required=True)


class MaterialDeliveryRecordedV1(Schema):
    delivery_id = fields.String(required=True)
    measure_id = fields.String(required=True)
    amount_eur = _money(required=True)
    delivered_on = fields.Date(required=True)


class PlanEvaluatedV1(Schema):
    risk_outcomes = fields.Dict(
        keys=fields.String(), values=fields.String(validate=validate.OneOf(RISK_OUTCOMES))
    )
    outcome = fields.String(required=True, validate=validate.OneOf(OUTCOMES))


class PlanContinuedV1(Schema):
    next_plan_id = fields.String(required=True)
    semester = fields.String(required=True)


class PlanClosedV1(Schema):
    outcome = fields.String(required=True, validate=validate.OneOf(OUTCOMES))
    cause = fields.String(required=True, validate=validate.OneOf(["evaluated", "pupil_departed"]))


_CONTRACTS: tuple[tuple[str, type[Schema], str], ...] = (
    ("plan_drafted", PlanDraftedV1, "Plan.Drafted"),
    ("measure_added", MeasureV1, "Plan.MeasureAdded"),
    ("measure_changed", MeasureV1, "Plan.MeasureChanged"),
    ("measure_removed", MeasureRemovedV1, "Plan.MeasureRemoved"),
    ("plan_submitted", PlanSubmittedV1, "Plan.Submitted"),
    ("plan_approved", PlanApprovedV1, "Plan.Approved"),
    ("plan_fully_approved", PlanFullyApprovedV1, "Plan.FullyApproved"),
    ("plan_returned", PlanReturnedV1, "Plan.Returned"),
    ("plan_revision_started", NoFieldsV1, "Plan.RevisionStarted"),
    ("plan_suspended", NoFieldsV1, "Plan.Suspended"),
    ("plan_resumed", PlanResumedV1, "Plan.Resumed"),
    ("plan_deactivated", NoFieldsV1, "Plan.Deactivated"),
    ("plan_started", NoFieldsV1, "Plan.Started"),
    ("consultation_logged", ConsultationLoggedV1, "Plan.ConsultationLogged"),
    ("consultation_confirmed", ConsultationConfirmedV1, "Plan.ConsultationConfirmed"),
    ("material_delivery_recorded", MaterialDeliveryRecordedV1, "Plan.MaterialDeliveryRecorded"),
    ("plan_evaluated", PlanEvaluatedV1, "Plan.Evaluated"),
    ("plan_continued", PlanContinuedV1, "Plan.Continued"),
    ("plan_closed", PlanClosedV1, "Plan.Closed"),
)

for _event_type, _schema, _domain_event in _CONTRACTS:
    registry.register(SOURCE, _event_type, 1, _schema, _domain_event)
