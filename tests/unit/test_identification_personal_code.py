"""Personal codes: both formats, a real date in the old one, agreement with the birth date,
and the old one's check digit."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import assume, given, reject
from hypothesis import strategies as st

from services.identification.personal_code import (
    InvalidPersonalCodeError,
    check_digit,
    check_personal_code,
)

CENTURY_DIGIT = {18: "0", 19: "1", 20: "2"}
CENTURY = {"0": 1800, "1": 1900, "2": 2000}
CHECK_DIGIT_MESSAGE = "the personal code's check digit does not match: a digit may be mistyped"


def old_code(born: date, serial: int = 234) -> str:
    """The old-format code of ``born``: the serial (or the next one that a check digit fits)
    and its check digit."""
    century = CENTURY_DIGIT[born.year // 100]
    while True:
        first_ten = f"{born:%d%m%y}{century}{serial:03d}"
        digit = check_digit(first_ten)
        if digit is not None:
            return f"{first_ten[:6]}-{first_ten[6:]}{digit}"
        serial = (serial + 1) % 1000


def refused(code: str, born: date) -> str:
    """The message ``code`` is refused with, checked never to quote it."""
    with pytest.raises(InvalidPersonalCodeError) as raised:
        check_personal_code(code, born)
    message = raised.value.message
    assert raised.value.details["fields"]["personal_code"] == [message]
    assert code not in message and code.replace("-", "") not in message
    return message


@given(
    born=st.dates(min_value=date(1850, 1, 1), max_value=date(2099, 12, 31)),
    serial=st.integers(min_value=0, max_value=999),
)
def test_an_old_code_agreeing_with_the_birth_date_is_accepted(born: date, serial: int) -> None:
    code = old_code(born, serial)
    assert check_personal_code(code, born) == code
    assert check_personal_code(code.replace("-", ""), born) == code


@given(
    born=st.dates(min_value=date(1900, 1, 1), max_value=date(2099, 12, 30)),
    days=st.integers(min_value=1, max_value=400),
)
def test_an_old_code_for_another_date_is_refused(born: date, days: int) -> None:
    with pytest.raises(InvalidPersonalCodeError, match="does not agree"):
        check_personal_code(old_code(born), born - timedelta(days=days))


def test_the_century_digit_decides_the_year() -> None:
    assert check_personal_code("010308-20005", date(2008, 3, 1)) == "010308-20005"
    with pytest.raises(InvalidPersonalCodeError, match="does not agree"):
        check_personal_code("010308-10018", date(2008, 3, 1))  # that is 1908
    assert check_personal_code("010308-10018", date(1908, 3, 1)) == "010308-10018"


@pytest.mark.parametrize("code", ["310208-20000", "290207-21234", "001208-20000", "011308-20000"])
def test_an_old_code_whose_date_is_not_real_is_refused(code: str) -> None:
    with pytest.raises(InvalidPersonalCodeError, match="not a real date"):
        check_personal_code(code, date(2008, 2, 29))


@pytest.mark.parametrize("digit", [d for d in "0123456789" if d != "5"])
@pytest.mark.parametrize("hyphen", ["-", ""])
def test_a_mistyped_check_digit_is_refused_without_quoting_the_code(
    digit: str, hyphen: str
) -> None:
    assert check_personal_code("010308-20005", date(2008, 3, 1)) == "010308-20005"
    assert refused(f"010308{hyphen}2000{digit}", date(2008, 3, 1)) == CHECK_DIGIT_MESSAGE


@given(
    born=st.dates(min_value=date(1800, 1, 1), max_value=date(2099, 12, 31)),
    serial=st.integers(min_value=0, max_value=999),
    position=st.integers(min_value=0, max_value=10),
    replacement=st.sampled_from("0123456789"),
)
def test_one_changed_digit_is_caught_by_the_check_digit(
    born: date, serial: int, position: int, replacement: str
) -> None:
    """Each weight and each one-digit change (-9 to 9, never 0) is non-zero mod 11, and 11
    is prime, so the weighted sum moves mod 11: the changed first ten digits have another
    check digit than the code's last one, or none; a changed last digit no longer matches
    the first ten. The birth date given is the one the changed code states (a real date), so
    only the check digit can catch the change."""
    digits = old_code(born, serial).replace("-", "")
    assume(digits[position] != replacement)
    changed = digits[:position] + replacement + digits[position + 1 :]
    stated = date_in(changed)
    if stated is None:
        reject()  # not a real date: refused before the check digit is looked at
    assert refused(changed, stated) == CHECK_DIGIT_MESSAGE
    assert refused(f"{changed[:6]}-{changed[6:]}", stated) == CHECK_DIGIT_MESSAGE


def date_in(digits: str) -> date | None:
    """The date an old-format code's eleven digits state, or None when there is none."""
    if digits[6] not in CENTURY:
        return None
    try:
        return date(CENTURY[digits[6]] + int(digits[4:6]), int(digits[2:4]), int(digits[:2]))
    except ValueError:
        return None


def test_a_serial_no_check_digit_fits_is_refused_whatever_its_last_digit() -> None:
    assert check_digit("0103082003") is None  # 1 March 2008, serial 003: never issued
    for digit in "0123456789":
        assert refused(f"010308-2003{digit}", date(2008, 3, 1)) == CHECK_DIGIT_MESSAGE


@pytest.mark.parametrize(
    ("code", "born", "message"),
    [
        ("010308-2000", date(2008, 3, 1), "must be DDMMYY-NNNNN"),
        ("300208-20006", date(2008, 3, 1), "not a real date"),
        ("010308-20006", date(2008, 3, 2), "does not agree with the birth date"),
    ],
)
def test_the_check_digit_is_checked_last(code: str, born: date, message: str) -> None:
    assert message in refused(code, born)


def test_a_new_code_carries_no_date_and_any_birth_date_goes() -> None:
    assert check_personal_code("321234-56789", date(2017, 8, 1)) == "321234-56789"
    assert check_personal_code(" 32123456789 ", date(2001, 1, 1)) == "321234-56789"


@pytest.mark.parametrize(
    "code",
    ["", "0103082000", "010308-200000", "010308-30000", "01030a-20000", "33123456789", "abc"],
)
def test_malformed_codes_are_refused_without_quoting_them(code: str) -> None:
    with pytest.raises(InvalidPersonalCodeError) as raised:
        check_personal_code(code, date(2008, 3, 1))
    assert raised.value.details["fields"]["personal_code"]
    if code.strip():
        assert code.strip() not in raised.value.message
