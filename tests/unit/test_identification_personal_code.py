"""Personal codes: both formats, a real date in the old one, agreement with the birth date."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.identification.personal_code import InvalidPersonalCodeError, check_personal_code

CENTURY_DIGIT = {18: "0", 19: "1", 20: "2"}


def old_code(born: date, serial: str = "2345") -> str:
    century = CENTURY_DIGIT[born.year // 100]
    return f"{born:%d%m}{born.year % 100:02d}-{century}{serial}"


@given(born=st.dates(min_value=date(1850, 1, 1), max_value=date(2099, 12, 31)))
def test_an_old_code_agreeing_with_the_birth_date_is_accepted(born: date) -> None:
    code = old_code(born)
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
    assert check_personal_code("010308-20000", date(2008, 3, 1)) == "010308-20000"
    with pytest.raises(InvalidPersonalCodeError, match="does not agree"):
        check_personal_code("010308-10000", date(2008, 3, 1))  # that is 1908
    assert check_personal_code("010308-10000", date(1908, 3, 1)) == "010308-10000"


@pytest.mark.parametrize("code", ["310208-20000", "290207-21234", "001208-20000", "011308-20000"])
def test_an_old_code_whose_date_is_not_real_is_refused(code: str) -> None:
    with pytest.raises(InvalidPersonalCodeError, match="not a real date"):
        check_personal_code(code, date(2008, 2, 29))


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
