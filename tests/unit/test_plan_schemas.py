"""Planning's request schemas: what a request must carry before any plan is loaded."""

from __future__ import annotations

import pytest
from marshmallow import ValidationError

from services.planning.schemas import ReasonSchema


@pytest.mark.parametrize("reason", [" ", "   ", "\t\n "])
def test_a_reason_of_only_spaces_is_refused_naming_the_field(reason: str) -> None:
    # The body of return, revise, suspend and deactivate: refused as invalid input (400).
    with pytest.raises(ValidationError) as invalid:
        ReasonSchema().load({"reason": reason, "expected_version": 3})
    assert list(invalid.value.messages) == ["reason"]


def test_a_reason_is_kept_as_written() -> None:
    body = {"reason": " in hospital ", "expected_version": 3}
    assert ReasonSchema().load(body) == body
