"""Errors every service raises, and the one table that maps them to HTTP answers.

Domain modules subclass these (``PupilNotFoundError(NotFoundError)``); they are
plain Python, so a domain imports no framework by using them. Messages must
never carry personal data: name ids and codes, not people.
"""

from __future__ import annotations

from typing import Any


class PumpursError(Exception):
    code = "error"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class BadRequestError(PumpursError):
    code = "bad_request"


class InvalidInputError(BadRequestError):
    """The request body or query does not match its schema; details name the fields."""

    code = "invalid_input"


class AuthenticationError(PumpursError):
    code = "unauthenticated"


class ForbiddenError(PumpursError):
    code = "forbidden"


class NotFoundError(PumpursError):
    code = "not_found"


class ConflictError(PumpursError):
    code = "conflict"


class StaleVersionError(ConflictError):
    code = "stale_version"

    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(
            f"expected version {expected} but the current version is {actual}",
            {"expected_version": expected, "current_version": actual},
        )


class TransitionNotAllowedError(ConflictError):
    code = "transition_not_allowed"


class PayloadTooLargeError(PumpursError):
    code = "payload_too_large"


class UnprocessableError(PumpursError):
    code = "unprocessable"


class RateLimitedError(PumpursError):
    code = "rate_limited"

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many requests", {"retry_after_seconds": retry_after})
        self.retry_after = retry_after


class UnavailableError(PumpursError):
    code = "unavailable"


class NotReadyError(UnavailableError):
    """A part the service needs does not work; the details say which."""

    code = "not_ready"

    def __init__(self, parts: dict[str, bool]) -> None:
        failing = [part for part, works in parts.items() if not works]
        works = {part: "works" if ok else "does not answer" for part, ok in parts.items()}
        super().__init__(f"not ready: {', '.join(failing)} not answering", works)


class StoreUnavailableError(UnavailableError):
    """The store did not answer (down, restarting, its connections all busy): retry."""

    retry_after = 5

    def __init__(self) -> None:
        super().__init__("the store is not answering; try again shortly")


# The one table: error class -> HTTP status. Order matters: first match wins.
HTTP_STATUS: tuple[tuple[type[PumpursError], int], ...] = (
    (InvalidInputError, 400),
    (BadRequestError, 400),
    (AuthenticationError, 401),
    (ForbiddenError, 403),
    (NotFoundError, 404),
    (ConflictError, 409),
    (PayloadTooLargeError, 413),
    (UnprocessableError, 422),
    (RateLimitedError, 429),
    (UnavailableError, 503),
)


def http_status(error: PumpursError) -> int:
    for cls, status in HTTP_STATUS:
        if isinstance(error, cls):
            return status
    return 500


def error_body(error: PumpursError) -> dict[str, Any]:
    return {"error": {"code": error.code, "message": error.message, "details": error.details}}
