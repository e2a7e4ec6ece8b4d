"""A service's own transactions (``ServiceApplication.transaction``): all or nothing."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import pytest

from services.planning.application import PlanningApplication
from shared.store import POSTGRES, store_env
from shared.testing import Stores

TABLE = "planning_t_notes"


@pytest.fixture
def app(stores: Stores) -> Iterator[Any]:
    environ = {**os.environ, **stores.env(["planning"])}
    application = PlanningApplication(store_env("planning", environ["PUMPURS_DATA_DIR"], environ))
    with application.transaction() as sql:
        sql.execute(f"CREATE TABLE {TABLE} (n BIGINT PRIMARY KEY, body TEXT)")
    yield application
    application.close()


def notes(app: Any) -> list[tuple[int, str]]:
    return [(r["n"], r["body"]) for r in app.query(f"SELECT n, body FROM {TABLE} ORDER BY n")]


def test_a_later_statement_failing_takes_back_the_first(app: Any) -> None:
    with app.transaction() as sql:
        sql.execute(f"INSERT INTO {TABLE} (n, body) VALUES (?, ?)", (1, "kept"))
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"), app.transaction() as sql:
        sql.execute(f"INSERT INTO {TABLE} (n, body) VALUES (?, ?)", (2, "taken back"))
        sql.execute(f"INSERT INTO {TABLE} (n, body) VALUES (?, ?)", (1, "a duplicate"))
    assert notes(app) == [(1, "kept")]
    with app.transaction() as sql:  # the connection is usable again
        sql.execute(f"INSERT INTO {TABLE} (n, body) VALUES (?, ?)", (2, "after"))
    assert [body for _, body in notes(app)] == ["kept", "after"]


def test_an_error_caught_inside_a_postgresql_transaction_stores_nothing(app: Any) -> None:
    with app.transaction() as sql:
        sql.execute(f"INSERT INTO {TABLE} (n, body) VALUES (?, ?)", (1, "kept"))

    def swallow_a_failed_statement() -> None:
        with app.transaction() as sql:
            sql.execute(f"INSERT INTO {TABLE} (n, body) VALUES (?, ?)", (2, "first"))
            with contextlib.suppress(Exception):
                sql.execute(f"INSERT INTO {TABLE} (n, body) VALUES (?, ?)", (1, "a duplicate"))

    if app.dialect == POSTGRES:
        # PostgreSQL answers the COMMIT of an aborted transaction with ROLLBACK, not an
        # error: the caller must not believe the first insert was stored.
        with pytest.raises(Exception, match="rolled back"):
            swallow_a_failed_statement()
        assert notes(app) == [(1, "kept")]
    else:
        swallow_a_failed_statement()  # SQLite undoes only the failed statement
        assert [n for n, _ in notes(app)] == [1, 2]
