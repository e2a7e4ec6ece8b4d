"""Field checks that several services' request schemas share."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from marshmallow import ValidationError, fields, validate

from shared.semesters import InvalidSemesterError, Semester, SemesterOutOfRangeError

# Also the field's pattern in the OpenAPI documents; the years must follow each other.
SEMESTER_PATTERN = r"^\d{4}-\d{4}-[12]$"
SEMESTER_ERROR = "not a semester like 2019-2020-1"


def _consecutive_years(value: str) -> None:
    try:
        Semester.parse(value)
    except SemesterOutOfRangeError as exc:
        raise ValidationError(exc.message) from None
    except InvalidSemesterError:
        raise ValidationError(SEMESTER_ERROR) from None


def semester_field(**kwargs: object) -> fields.String:
    """A semester field: ``2019-2020-1`` (school year, then 1 or 2)."""
    pattern = validate.Regexp(SEMESTER_PATTERN, error=SEMESTER_ERROR)
    return fields.String(validate=[pattern, _consecutive_years], **kwargs)  # type: ignore[arg-type]


def cents(value: Decimal) -> None:
    """Euros (or hours) with at most two decimals: more are refused, never rounded."""
    try:
        exact = value == value.quantize(Decimal("0.01"))
    except InvalidOperation:
        return  # too many digits to count in cents (1e400): the range check refuses it
    if not exact:
        raise ValidationError("at most two decimals")
