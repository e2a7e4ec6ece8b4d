"""Identification's request and answer schemas (../shared/api.md)."""

from marshmallow import Schema, fields, validate

from shared.schools import reference_schools


class RegisterPupilSchema(Schema):
    school_id = fields.String(required=True, validate=lambda v: v in reference_schools())
    grade = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=12))
    gender = fields.String(required=True, validate=validate.OneOf(["F", "M"]))
    birth_date = fields.Date(required=True)


class CreatedPupilSchema(Schema):
    pupil_id = fields.UUID(attribute="id")
    version = fields.Integer()


class RecordRiskSignSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(min=3, max=64))
    observed_on = fields.Date(required=True)
    evidence = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    expected_version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))


class RiskSignSchema(Schema):
    code = fields.String()
    observed_on = fields.Date()
    source = fields.String()
    evidence = fields.String()
    active = fields.Boolean()


class PupilSchema(Schema):
    pupil_id = fields.UUID(attribute="id")
    school_id = fields.String()
    grade = fields.Integer()
    gender = fields.String()
    birth_date = fields.Date()
    at_risk = fields.Boolean()
    risk_signs = fields.Method("_signs")
    version = fields.Integer()

    def _signs(self, pupil: object) -> list[dict[str, object]]:
        signs = getattr(pupil, "risk_signs", {}).values()
        return [RiskSignSchema().dump(sign) for sign in signs]


class VersionSchema(Schema):
    pupil_id = fields.UUID(attribute="id")
    version = fields.Integer()
