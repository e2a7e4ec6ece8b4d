"""Integration events published by identification.

No personal data beyond the pupil id (the aggregate id), school, grade and gender:
names, personal codes, birth dates and the free text of evidence and reasons stay
encrypted in identification's own store. Each schema names only the fields it
publishes; ``Contract.dump`` leaves every other attribute of the domain event out.
"""

from marshmallow import Schema, fields, validate

from shared.contracts.registry import registry

SOURCE = "identification"

RISK_SIGN_SOURCES = ("assessment", "journal")
DEPARTURE_REASONS = ("dropped_out", "moved_abroad", "transferred", "graduated")


class PupilRegisteredV1(Schema):
    school_id = fields.String(required=True)
    grade = fields.Integer(required=True, validate=validate.Range(min=1, max=12))
    gender = fields.String(required=True, validate=validate.OneOf(["F", "M"]))


class PupilReEnrolledV1(Schema):
    """A pupil who had left school is at a school again (the same or another), with the
    grade and gender given there. The pupil's earlier signs ended with the departure: a
    re-enrolled pupil has no active sign and is not at risk until a new one is recorded."""

    school_id = fields.String(required=True)
    grade = fields.Integer(required=True, validate=validate.Range(min=1, max=12))
    gender = fields.String(required=True, validate=validate.OneOf(["F", "M"]))


class RiskSignRecordedV1(Schema):
    code = fields.String(required=True)
    observed_on = fields.Date(required=True)
    source = fields.String(required=True, validate=validate.OneOf(RISK_SIGN_SOURCES))


class RiskSignResolvedV1(Schema):
    code = fields.String(required=True)


class PupilFlaggedAtRiskV1(Schema):
    school_id = fields.String(required=True)


class PupilRiskClearedV1(Schema):
    school_id = fields.String(required=True)


class PupilDepartedV1(Schema):
    reason = fields.String(required=True, validate=validate.OneOf(DEPARTURE_REASONS))
    on = fields.Date(required=True)
    to_school_id = fields.String(required=True, allow_none=True)


class PupilErasedV1(Schema):
    """The pupil's personal data is destroyed; the pupil id stays valid."""


class SchoolRegisteredV1(Schema):
    school_id = fields.String(required=True)
    name = fields.String(required=True)
    municipality = fields.String(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(["general", "vocational"]))
    owner = fields.String(required=True, validate=validate.OneOf(["municipal", "state"]))
    grade_from = fields.Integer(required=True, validate=validate.Range(min=1, max=12))
    grade_to = fields.Integer(required=True, validate=validate.Range(min=1, max=12))


registry.register(SOURCE, "pupil_registered", 1, PupilRegisteredV1, "Pupil.Registered")
registry.register(SOURCE, "risk_sign_recorded", 1, RiskSignRecordedV1, "Pupil.RiskSignRecorded")
registry.register(SOURCE, "risk_sign_resolved", 1, RiskSignResolvedV1, "Pupil.RiskSignResolved")
registry.register(SOURCE, "pupil_flagged_at_risk", 1, PupilFlaggedAtRiskV1, "Pupil.FlaggedAtRisk")
registry.register(SOURCE, "pupil_risk_cleared", 1, PupilRiskClearedV1, "Pupil.RiskCleared")
registry.register(SOURCE, "pupil_departed", 1, PupilDepartedV1, "Pupil.Departed")
registry.register(SOURCE, "pupil_re_enrolled", 1, PupilReEnrolledV1, "Pupil.ReEnrolled")
registry.register(SOURCE, "pupil_erased", 1, PupilErasedV1, "Pupil.Erased")
registry.register(SOURCE, "school_registered", 1, SchoolRegisteredV1, "School.Registered")
