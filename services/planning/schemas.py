"""Planning's request and answer schemas."""

from marshmallow import Schema, fields


class PupilsQuerySchema(Schema):
    school_id = fields.String()


class PupilItemSchema(Schema):
    pupil_id = fields.String()
    school_id = fields.String()
    grade = fields.Integer()
    gender = fields.String()
    at_risk = fields.Boolean()


class PupilListSchema(Schema):
    items = fields.List(fields.Nested(PupilItemSchema))
