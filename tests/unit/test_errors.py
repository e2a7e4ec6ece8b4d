"""The one table from errors to HTTP answers."""

from shared.errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    RateLimitedError,
    StaleVersionError,
    error_body,
    http_status,
)


def test_each_error_kind_has_its_status() -> None:
    assert http_status(InvalidInputError("x")) == 400
    assert http_status(AuthenticationError("x")) == 401
    assert http_status(NotFoundError("x")) == 404
    assert http_status(StaleVersionError(1, 2)) == 409
    assert http_status(ConflictError("x")) == 409
    assert http_status(RateLimitedError(3)) == 429


def test_the_body_names_code_message_and_details() -> None:
    assert error_body(StaleVersionError(1, 2)) == {
        "error": {
            "code": "stale_version",
            "message": "expected version 1 but the current version is 2",
            "details": {"expected_version": 1, "current_version": 2},
        }
    }
