"""Latvian personal codes (personas kods): the two formats and what must hold for each.

- Old format ``DDMMYY-CNNNN``: the birth date, then a century digit (0: 1800s, 1: 1900s,
  2: 2000s) and four more digits. The date part must be a real date and agree with
  the birth date.
- New format ``32NNNN-NNNNN`` (codes issued since 1 July 2017): no date in it.

Both are accepted with or without the hyphen and kept in the hyphenated form.
Messages never quote the code: it is personal data.
"""

from __future__ import annotations

import re
from datetime import date

from shared.errors import InvalidInputError

_OLD = re.compile(r"^(\d{2})(\d{2})(\d{2})-?([012])(\d{4})$")
_NEW = re.compile(r"^(32\d{4})-?(\d{5})$")
_CENTURY = {"0": 1800, "1": 1900, "2": 2000}


class InvalidPersonalCodeError(InvalidInputError):
    code = "invalid_personal_code"

    def __init__(self, message: str) -> None:
        super().__init__(message, {"fields": {"personal_code": [message]}})


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
    return f"{compact[:6]}-{compact[-5:]}"
