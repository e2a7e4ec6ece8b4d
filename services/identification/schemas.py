"""Identification's request and answer schemas (../shared/api.md).

Validation messages are marshmallow's own or fixed texts: none quotes the input, so
no personal data comes back in an error.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from services.identification.domain import DEPARTURE_REASONS, ENROLLED, NAME_MAX
from services.identification.personal_code import PATTERN as PERSONAL_CODE_PATTERN

_SLUG = validate.Regexp(r"^[a-z0-9][a-z0-9-]{1,63}$", error="lowercase letters, digits and -")


def _version() -> fields.Integer:
    return fields.Integer(required=True, strict=True, validate=validate.Range(min=1))


# -- requests ---------------------------------------------------------------------------------


class RegisterPupilSchema(Schema):
    school_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    grade = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=12))
    given_name = fields.String(required=True, validate=validate.Length(min=1, max=NAME_MAX))
    family_name = fields.String(required=True, validate=validate.Length(min=1, max=NAME_MAX))
    personal_code = fields.String(
        required=True,
        validate=validate.Length(min=11, max=12),
        # Documented only: the service's own check names what is wrong (date, check digit).
        metadata={
            "pattern": PERSONAL_CODE_PATTERN,
            "description": "DDMMYY-CNNNK (birth date, century, serial, check digit) or "
            "32NNNN-NNNNN; the hyphen is optional",
        },
    )
    birth_date = fields.Date(required=True)
    gender = fields.String(required=True, validate=validate.OneOf(["F", "M"]))


class RecordRiskSignSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(min=3, max=64))
    observed_on = fields.Date(required=True)
    evidence = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    expected_version = _version()


class ResolveRiskSignSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    expected_version = _version()


class DepartureSchema(Schema):
    reason = fields.String(required=True, validate=validate.OneOf(DEPARTURE_REASONS))
    on = fields.Date(required=True)
    to_school_id = fields.String(load_default=None, allow_none=True)
    expected_version = _version()


class ErasureSchema(Schema):
    expected_version = fields.Integer(strict=True, validate=validate.Range(min=1))


class PupilsQuerySchema(Schema):
    school_id = fields.String()
    at_risk = fields.Boolean()
    status = fields.String(validate=validate.OneOf([ENROLLED, "departed"]))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))
    after = fields.UUID()


class ImportQuerySchema(Schema):
    school_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    semester = fields.String(required=True, validate=validate.Length(min=1, max=20))


class RegisterSchoolSchema(Schema):
    school_id = fields.String(required=True, validate=_SLUG)
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    municipality = fields.String(required=True, validate=_SLUG)
    kind = fields.String(required=True, validate=validate.OneOf(["general", "vocational"]))
    owner = fields.String(required=True, validate=validate.OneOf(["municipal", "state"]))
    grade_from = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=12))
    grade_to = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=12))


# -- answers ----------------------------------------------------------------------------------


class CreatedPupilSchema(Schema):
    pupil_id = fields.UUID(attribute="id")
    version = fields.Integer()


VersionSchema = CreatedPupilSchema


class RiskSignSchema(Schema):
    code = fields.String()
    observed_on = fields.Date()
    source = fields.String()
    evidence = fields.String(allow_none=True)
    active = fields.Boolean()
    reason = fields.String(allow_none=True)


class DepartureAnswerSchema(Schema):
    reason = fields.String()
    on = fields.Date()
    to_school_id = fields.String(allow_none=True)


class PupilSchema(Schema):
    pupil_id = fields.UUID()
    school_id = fields.String()
    grade = fields.Integer()
    gender = fields.String()
    birth_date = fields.Date(allow_none=True)
    given_name = fields.String(allow_none=True)
    family_name = fields.String(allow_none=True)
    personal_code = fields.String(allow_none=True)
    at_risk = fields.Boolean()
    risk_signs = fields.List(fields.Nested(RiskSignSchema))
    status = fields.String()
    departure = fields.Nested(DepartureAnswerSchema, allow_none=True)
    erased = fields.Boolean()
    version = fields.Integer()


class PupilItemSchema(Schema):
    pupil_id = fields.String()
    school_id = fields.String()
    grade = fields.Integer()
    gender = fields.String()
    at_risk = fields.Boolean()
    status = fields.String()
    erased = fields.Boolean()
    version = fields.Integer()


class PupilListSchema(Schema):
    items = fields.List(fields.Nested(PupilItemSchema))
    next = fields.String(allow_none=True)


class ReadSchema(Schema):
    by = fields.String()
    role = fields.String()
    at = fields.String()
    purpose = fields.String(allow_none=True)


class ReadListSchema(Schema):
    items = fields.List(fields.Nested(ReadSchema))


class SchoolSchema(Schema):
    school_id = fields.String()
    name = fields.String()
    municipality = fields.String()
    kind = fields.String()
    owner = fields.String()
    grade_from = fields.Function(lambda school: school.grades[0])
    grade_to = fields.Function(lambda school: school.grades[1])


class SchoolListSchema(Schema):
    items = fields.List(fields.Nested(SchoolSchema))


class CreatedSchoolSchema(Schema):
    school_id = fields.String()
    version = fields.Integer()


class RiskFactorSchema(Schema):
    code = fields.String()
    group = fields.Function(lambda factor: factor.group.group)
    label = fields.Function(lambda factor: {"lv": factor.label_lv, "en": factor.label_en})
    group_label = fields.Function(
        lambda factor: {"lv": factor.group.label_lv, "en": factor.group.label_en}
    )


class RiskFactorListSchema(Schema):
    items = fields.List(fields.Nested(RiskFactorSchema))


class ImportErrorSchema(Schema):
    line = fields.Integer()
    reason = fields.String()


class ImportReportSchema(Schema):
    rows = fields.Integer()
    imported = fields.Integer()
    registered = fields.Integer()
    signs_recorded = fields.Integer()
    errors = fields.List(fields.Nested(ImportErrorSchema))


def page(items: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """A page of a list, and the ``after`` value of the next one (null on the last)."""
    return {"items": items, "next": items[-1]["pupil_id"] if len(items) == limit else None}


# -- reporting's age enquiry (RPC) ----------------------------------------------------------

MAX_AGE_ENQUIRIES = 200


class AgeEnquirySchema(Schema):
    pupil_id = fields.UUID(required=True)
    on = fields.Date(required=True)


class AgeEnquiriesSchema(Schema):
    """What reporting sends: up to ``MAX_AGE_ENQUIRIES`` (pupil, day) pairs."""

    enquiries = fields.List(
        fields.Nested(AgeEnquirySchema),
        required=True,
        validate=validate.Length(min=1, max=MAX_AGE_ENQUIRIES),
    )


class AgeBandSchema(Schema):
    pupil_id = fields.String()
    on = fields.Date()
    band = fields.String()


class AgeBandsSchema(Schema):
    answers = fields.List(fields.Nested(AgeBandSchema))
