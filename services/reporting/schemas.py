"""Reporting's request schemas (../shared/api.md, "reporting")."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from services.reporting.application import ReportRequest
from services.reporting.report import Period
from shared.errors import PumpursError
from shared.vocabulary import AGE_BANDS

FORMATS = ("json", "csv", "xlsx")


def check_as_of(data: dict[str, Any]) -> None:
    """No moment in the future: nothing is known of it yet (the ESF report, a plan's past
    state)."""
    if "as_of" in data and data["as_of"] > datetime.now(UTC):
        raise ValidationError("as_of is in the future", "as_of")


class EsfQuerySchema(Schema):
    semester = fields.String(validate=validate.Length(max=20))
    school_year = fields.String(validate=validate.Length(max=20))
    municipality = fields.String(validate=validate.Length(min=1, max=100))
    school_id = fields.String(validate=validate.Length(min=1, max=100))
    as_of = fields.AwareDateTime(default_timezone=UTC)
    format = fields.String(load_default="json", validate=validate.OneOf(FORMATS))
    explain = fields.String(validate=validate.Length(min=1, max=200))

    @validates_schema
    def check(self, data: dict[str, Any], **kwargs: Any) -> None:
        if ("semester" in data) == ("school_year" in data):
            raise ValidationError("give either semester or school_year", "semester")
        check_as_of(data)
        if "explain" in data and data["format"] != "json":
            raise ValidationError("an explanation is answered in JSON only", "format")

    @post_load
    def request(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        try:
            period = (
                Period.semester(data["semester"])
                if "semester" in data
                else Period.school_year(data["school_year"])
            )
        except PumpursError:
            field = "semester" if "semester" in data else "school_year"
            raise ValidationError(f"not a {field.replace('_', ' ')}", field) from None
        report = ReportRequest(
            period=period,
            municipality=data.get("municipality"),
            school_id=data.get("school_id"),
            as_of=data.get("as_of"),
            explain=data.get("explain"),
        )
        return {"request": report, "format": data["format"]}


class AgeBandAnswerSchema(Schema):
    """One of identification's answers to an age enquiry (``age_bands`` over RPC)."""

    pupil_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    on = fields.Date(required=True)
    band = fields.String(required=True, validate=validate.OneOf(AGE_BANDS))


class AgeBandAnswersSchema(Schema):
    answers = fields.List(fields.Nested(AgeBandAnswerSchema), required=True)
