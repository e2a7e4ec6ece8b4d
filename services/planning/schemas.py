"""Planning's request and answer schemas (../shared/api.md)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from marshmallow import Schema, ValidationError, fields, post_dump, validate

from services.planning.domain import (
    MEASURE_KINDS,
    OUTCOMES,
    RISK_OUTCOMES,
    STATUSES,
    Plan,
    today,
)
from shared.history import HistoryEntrySchema as SharedHistoryEntrySchema
from shared.history import HistoryQuerySchema as HistoryQuerySchema
from shared.validators import cents, semester_field


def _amount(maximum: int) -> fields.Decimal:
    return fields.Decimal(
        allow_none=True,
        validate=[validate.Range(min=Decimal("0.01"), max=Decimal(maximum)), cents],
    )


def _not_blank(value: str) -> None:
    """Spaces alone say nothing: a reason must be written out."""
    if not value.strip():
        raise ValidationError("must not be blank")


class Hours(fields.Field):
    """Hours as a JSON number (1.5), never a float in the store."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if value is None:
            return None
        value = Decimal(value)
        return int(value) if value == value.to_integral_value() else float(value)


class Versioned(Schema):
    expected_version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))


class VersionQuerySchema(Schema):
    expected_version = fields.Integer(required=True, validate=validate.Range(min=1))


# -- requests ---------------------------------------------------------------------------


class ConsentSchema(Schema):
    given_by = fields.String(required=True, validate=validate.OneOf(["parent", "pupil"]))
    signed_on = fields.Date(required=True)


class DraftPlanSchema(Schema):
    pupil_id = fields.UUID(required=True)
    semester = semester_field(required=True)
    consent = fields.Nested(ConsentSchema, required=True)


class MeasureRequestSchema(Versioned):
    kind = fields.String(required=True, validate=validate.OneOf(MEASURE_KINDS))
    risk_code = fields.String(required=True, validate=validate.Length(min=3, max=64))
    justification = fields.String(required=True, validate=validate.Length(min=1, max=4000))
    hours = _amount(1000)
    amount_eur = _amount(100_000)
    subject = fields.String(allow_none=True, validate=validate.Length(min=1, max=100))


class ReasonSchema(Versioned):
    reason = fields.String(required=True, validate=[validate.Length(min=1, max=4000), _not_blank])


class EvaluateSchema(Versioned):
    risk_outcomes = fields.Dict(
        keys=fields.String(validate=validate.Length(min=3, max=64)),
        values=fields.String(validate=validate.OneOf(RISK_OUTCOMES)),
        required=True,
    )
    outcome = fields.String(required=True, validate=validate.OneOf(OUTCOMES))


class ContinueSchema(Versioned):
    semester = semester_field(required=True)


class ConsultationRequestSchema(Versioned):
    measure_id = fields.UUID(required=True)
    date = fields.Date(required=True)
    hours = fields.Decimal(
        required=True, validate=[validate.Range(min=Decimal("0.01"), max=Decimal(24)), cents]
    )
    provider = fields.String(required=True, validate=validate.Length(min=1, max=200))
    topic = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    remote = fields.Boolean(required=True)


class ConfirmSchema(Versioned):
    confirmed_on = fields.Date(required=True)


class PlansQuerySchema(Schema):
    school_id = fields.String(validate=validate.Length(min=1, max=100))
    semester = semester_field()
    status = fields.String(validate=validate.OneOf(STATUSES))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))
    after = fields.UUID()


# -- answers ---------------------------------------------------------------------------


class PlanVersionSchema(Schema):
    plan_id = fields.UUID(attribute="id")
    status = fields.String()
    version = fields.Integer()


class MeasureCreatedSchema(Schema):
    measure_id = fields.String()
    version = fields.Integer()


class ConsultationCreatedSchema(Schema):
    consultation_id = fields.String()
    version = fields.Integer()


class ContinuedSchema(Schema):
    plan_id = fields.String()
    version = fields.Integer()
    previous_plan_id = fields.String()
    previous_version = fields.Integer()


class ApprovalSchema(Schema):
    level = fields.String()
    by = fields.String()
    at = fields.DateTime()


class MeasureSchema(Schema):
    measure_id = fields.String()
    kind = fields.String()
    risk_code = fields.String()
    justification = fields.String()
    hours = Hours()
    amount_eur = fields.Decimal(places=2, as_string=True, allow_none=True)
    subject = fields.String(allow_none=True)
    provision_status = fields.String(allow_none=True)
    logged_hours = Hours()
    delivered_eur = fields.Decimal(places=2, as_string=True, allow_none=True)

    @post_dump
    def _only_what_applies(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {k: v for k, v in data.items() if v is not None}


class ConsultationSchema(Schema):
    consultation_id = fields.String()
    measure_id = fields.String()
    date = fields.Date()
    hours = Hours()
    provider = fields.String()
    topic = fields.String()
    remote = fields.Boolean()
    confirmed = fields.Boolean()
    confirmed_on = fields.Date(allow_none=True)
    flagged = fields.Boolean()
    cost_eur = fields.Decimal(places=2, as_string=True)


_MEASURES = MeasureSchema(many=True)
_CONSULTATIONS = ConsultationSchema(many=True)


class PlanSchema(Schema):
    plan_id = fields.UUID(attribute="id")
    pupil_id = fields.String()
    school_id = fields.String()
    semester = fields.String()
    status = fields.String()
    status_reason = fields.String(allow_none=True)
    author = fields.String()
    consent = fields.Method("_consent")
    approval_levels = fields.List(fields.String(), attribute="levels")
    pending_level = fields.String(allow_none=True)
    approvals = fields.List(fields.Nested(ApprovalSchema))
    risk_codes = fields.List(fields.String())
    measures = fields.Method("_measures")
    consultations = fields.Method("_consultations")
    flagged_consultations = fields.Method("_flagged")
    spent_eur = fields.Decimal(places=2, as_string=True)
    risk_outcomes = fields.Dict(keys=fields.String(), values=fields.String())
    outcome = fields.String(allow_none=True)
    previous_plan_id = fields.String(allow_none=True)
    next_plan_id = fields.String(allow_none=True)
    created_on = fields.DateTime()
    modified_on = fields.DateTime()
    version = fields.Integer()

    def _consent(self, plan: Plan) -> dict[str, Any]:
        return {"given_by": plan.consent_given_by, "signed_on": plan.consent_signed_on.isoformat()}

    def _measures(self, plan: Plan) -> list[dict[str, Any]]:
        rows = []
        statuses = getattr(plan, "provision_statuses", {})
        for m in plan.measures.values():
            consultation = m["hours"] is not None
            rows.append(
                {
                    **m,
                    "provision_status": statuses.get(m["measure_id"]),
                    "logged_hours": plan.logged_hours(m["measure_id"]) if consultation else None,
                    "delivered_eur": None if consultation else plan.delivered_eur(m["measure_id"]),
                }
            )
        return list(_MEASURES.dump(rows))

    def _consultations(self, plan: Plan) -> list[dict[str, Any]]:
        on = today()
        rows = [
            {
                **c,
                "confirmed": c["confirmed_on"] is not None,
                "flagged": plan.is_flagged(c, on),
            }
            for c in plan.consultations.values()
        ]
        return list(_CONSULTATIONS.dump(rows))

    def _flagged(self, plan: Plan) -> int:
        on = today()
        return sum(1 for c in plan.consultations.values() if plan.is_flagged(c, on))


class PlanItemSchema(Schema):
    plan_id = fields.String()
    pupil_id = fields.String()
    school_id = fields.String()
    semester = fields.String()
    status = fields.String()
    pending_level = fields.String(allow_none=True)
    previous_plan_id = fields.String(allow_none=True)
    next_plan_id = fields.String(allow_none=True)
    outcome = fields.String(allow_none=True)
    spent_eur = fields.String()
    version = fields.Integer()


class PlanListSchema(Schema):
    items = fields.List(fields.Nested(PlanItemSchema))
    next_after = fields.String(allow_none=True)


class HistoryEntrySchema(SharedHistoryEntrySchema):
    source = "planning"


class HistorySchema(Schema):
    plan_id = fields.String()
    items = fields.List(fields.Nested(HistoryEntrySchema))
    next_after = fields.Integer(allow_none=True)


class PupilsQuerySchema(Schema):
    school_id = fields.String()


class PupilItemSchema(Schema):
    pupil_id = fields.String()
    school_id = fields.String()
    grade = fields.Integer()
    gender = fields.String()
    at_risk = fields.Boolean()
    risk_codes = fields.List(fields.String())


class PupilListSchema(Schema):
    items = fields.List(fields.Nested(PupilItemSchema))
