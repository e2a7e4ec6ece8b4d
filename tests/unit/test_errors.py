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


def test_the_access_log_keeps_the_path_and_drops_the_query() -> None:
    import logging

    from shared.web import PathOnlyAccessLog

    line = '127.0.0.1 - - [28/Nov/2026 09:00:00] "GET /pupils?school_id=010308-20001 HTTP/1.1" 403'
    record = logging.LogRecord("nameko.web.server", logging.INFO, "", 0, line, None, None)
    assert PathOnlyAccessLog().filter(record)
    assert record.getMessage() == '127.0.0.1 - - [28/Nov/2026 09:00:00] "GET /pupils HTTP/1.1" 403'
