"""What a service's log shows when a worker raises."""

from __future__ import annotations

import logging
import sqlite3

import pytest
from eventsourcing.persistence import OperationalError

from shared.errors import NotFoundError
from shared.logs import WorkerErrorFilter


@pytest.fixture
def worker_log(caplog: pytest.LogCaptureFixture) -> logging.Logger:
    logger = logging.getLogger("test.nameko.containers")
    logger.addFilter(WorkerErrorFilter())
    caplog.set_level(logging.DEBUG, logger=logger.name)
    return logger


def _raise_and_log(logger: logging.Logger, exc: Exception) -> None:
    try:
        raise exc
    except Exception as caught:
        logger.exception("error handling worker %s: %s", "<worker planning.approve>", caught)


def test_a_refused_request_leaves_no_traceback(
    worker_log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    _raise_and_log(worker_log, NotFoundError("plan 7 not found"))
    assert caplog.records == []


def test_a_store_outage_is_one_warning_line(
    worker_log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    try:
        raise sqlite3.OperationalError("database is locked")
    except sqlite3.OperationalError as locked:
        _raise_and_log(worker_log, _chained(OperationalError(locked), locked))
    [record] = caplog.records
    assert record.levelname == "WARNING" and record.exc_info is None
    assert record.getMessage() == (
        "<worker planning.approve>: store not answering (OperationalError)"
    )


def test_a_bug_keeps_its_traceback(
    worker_log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    _raise_and_log(worker_log, KeyError("measure"))
    [record] = caplog.records
    assert record.levelname == "ERROR" and record.exc_info is not None


def _chained(exc: Exception, cause: Exception) -> Exception:
    exc.__cause__ = cause
    return exc
