"""The one table from errors to HTTP answers."""

import sqlite3

from shared.errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    RateLimitedError,
    StaleVersionError,
    StoreUnavailableError,
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

    line = '127.0.0.1 - - [28/Nov/2026 09:00:00] "GET /pupils?school_id=010308-20013 HTTP/1.1" 403'
    record = logging.LogRecord("nameko.web.server", logging.INFO, "", 0, line, None, None)
    assert PathOnlyAccessLog().filter(record)
    assert record.getMessage() == '127.0.0.1 - - [28/Nov/2026 09:00:00] "GET /pupils HTTP/1.1" 403'


def _raised_from(cause: Exception, wrapper: type[Exception]) -> Exception:
    """The error the event store raises for ``cause``, as eventsourcing wraps it."""
    try:
        raise wrapper(str(cause)) from cause
    except wrapper as exc:
        return exc


def test_a_store_that_does_not_answer_gets_503_with_retry_after() -> None:
    import psycopg
    import psycopg_pool
    from eventsourcing.persistence import OperationalError

    from shared.store import store_not_answering
    from shared.web import error_response

    down = psycopg.OperationalError("connection refused")
    assert store_not_answering(_raised_from(down, OperationalError))
    waited = psycopg_pool.PoolTimeout("couldn't get a connection after 10 sec")
    assert store_not_answering(_raised_from(waited, OperationalError))
    locked = sqlite3.OperationalError("database is locked")
    assert store_not_answering(_raised_from(locked, OperationalError))

    response = error_response(StoreUnavailableError())
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"


def test_a_statement_the_store_refuses_is_not_called_unavailable() -> None:
    from eventsourcing.persistence import OperationalError

    from shared.store import store_not_answering

    bug = sqlite3.OperationalError("no such table: pupils")
    assert not store_not_answering(_raised_from(bug, OperationalError))
