"""Latvian personal codes (personas kods): the two formats and what must hold for each.

- Old format ``DDMMYY-CNNNK``: the birth date, a century digit C (0: 1800s, 1: 1900s,
  2: 2000s), a three-digit serial and a check digit K. The date part must be a real date and
  agree with the birth date, and K must be the check digit of the first ten digits
  (``check_digit``), so a mistyped digit is caught.
- New format ``32NNNN-NNNNN`` (codes issued since 1 July 2017): no date and no check digit.

Both are accepted with or without the hyphen and kept in the hyphenated form. The checks run
in that order: format, real date, agreement with the birth date, check digit.
Messages never quote the code: it is personal data.
"""

from __future__ import annotations

import re
from datetime import date

from shared.errors import InvalidInputError

_OLD = re.compile(r"^(\d{2})(\d{2})(\d{2})-?([012])(\d{4})$")
_NEW = re.compile(r"^(32\d{4})-?(\d{5})$")
_CENTURY = {"0": 1800, "1": 1900, "2": 2000}
PATTERN = f"{_OLD.pattern}|{_NEW.pattern}"  # the form only: what the API documents
# Weights of the old format's first ten digits in its check digit.
_WEIGHTS = (1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


class InvalidPersonalCodeError(InvalidInputError):
    code = "invalid_personal_code"

    def __init__(self, message: str) -> None:
        super().__init__(message, {"fields": {"personal_code": [message]}})


def check_digit(first_ten: str) -> int | None:
    """The old format's check digit of its first ten digits (no hyphen), or None when no
    digit fits: (1101 - the weighted sum) mod 11 is 10, and such a serial is never issued."""
    digit = (1101 - sum(w * int(d) for w, d in zip(_WEIGHTS, first_ten, strict=True))) % 11
    return None if digit == 10 else digit


def _date_part(match: re.Match[str]) -> date:
    day, month, year, century = (match.group(i) for i in range(1, 5))
    try:
        return date(_CENTURY[century] + int(year), int(month), int(day))
    except ValueError:
        raise InvalidPersonalCodeError("the date in the personal code is not a real date") from None


def check_personal_code(code: str, birth_date: date) -> str:
    """The code in its canonical hyphenated form, or InvalidPersonalCodeError."""
    compact = code.strip()
    if new := _NEW.match(compact):
        return f"{new.group(1)}-{new.group(2)}"
    old = _OLD.match(compact)
    if old is None:
        raise InvalidPersonalCodeError(
            "the personal code must be DDMMYY-NNNNN or 32NNNN-NNNNN (digits, hyphen optional)"
        )
    if _date_part(old) != birth_date:
        raise InvalidPersonalCodeError("the personal code does not agree with the birth date")
    digits = compact.replace("-", "")
    if check_digit(digits[:10]) != int(digits[10]):
        raise InvalidPersonalCodeError(
            "the personal code's check digit does not match: a digit may be mistyped"
        )
    return f"{digits[:6]}-{digits[6:]}"
