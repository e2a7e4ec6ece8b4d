"""Integration events published by identification.

No personal data beyond the pupil id (the aggregate id), school, grade and gender.
"""

from marshmallow import Schema, fields, validate

from shared.contracts.registry import registry

SOURCE = "identification"


class PupilRegisteredV1(Schema):
    school_id = fields.String(required=True)
    grade = fields.Integer(required=True, validate=validate.Range(min=1, max=12))
    gender = fields.String(required=True, validate=validate.OneOf(["F", "M"]))


class RiskSignRecordedV1(Schema):
    code = fields.String(required=True)
    observed_on = fields.Date(required=True)
    source = fields.String(required=True, validate=validate.OneOf(["assessment", "journal"]))


class PupilFlaggedAtRiskV1(Schema):
    school_id = fields.String(required=True)


registry.register(SOURCE, "pupil_registered", 1, PupilRegisteredV1, "Pupil.Registered")
registry.register(SOURCE, "risk_sign_recorded", 1, RiskSignRecordedV1, "Pupil.RiskSignRecorded")
registry.register(SOURCE, "pupil_flagged_at_risk", 1, PupilFlaggedAtRiskV1, "Pupil.FlaggedAtRisk")
