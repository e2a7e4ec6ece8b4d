"""A service's own transactions (``ServiceApplication.transaction``): exactly the values
given, all or nothing. On PostgreSQL the first statement of each transaction travels with
its BEGIN, bound on the client (``shared.pgtransaction``), so its values are quoted there."""

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
AWKWARD = [
    "it's",
    'say "hi"',
    "back\\slash \\x00",
    "50% off %s %(name)s",
    "? $1 :name",
    "line\nbreak\ttab",
    "Ķekava, Rēzekne — ūdens 🙂",
    "'; DROP TABLE planning_t_notes; --",
    "",
    None,
]


@pytest.fixture
def app(stores: Stores) -> Iterator[Any]:
    environ = {**os.environ, **stores.env(["planning"])}
    application = PlanningApplication(store_env("planning", environ["PUMPURS_DATA_DIR"], environ))
    blob = "BYTEA" if application.dialect == POSTGRES else "BLOB"
    with application.transaction() as sql:
        sql.execute(f"CREATE TABLE {TABLE} (n BIGINT PRIMARY KEY, body TEXT, raw {blob})")
    yield application
    application.close()


def notes(app: Any) -> list[tuple[int, str | None, bytes | None]]:
    rows = app.query(f"SELECT n, body, raw FROM {TABLE} ORDER BY n")
    return [(r["n"], r["body"], None if r["raw"] is None else bytes(r["raw"])) for r in rows]


def test_the_first_statement_of_a_transaction_stores_exactly_the_values_given(app: Any) -> None:
    expected = []
    for n, body in enumerate(AWKWARD):
        raw = None if body is None else body.encode() + bytes([0, 39, 92, 255])
        with app.transaction() as sql:  # each insert is its transaction's first statement
            sql.execute(f"INSERT INTO {TABLE} (n, body, raw) VALUES (?, ?, ?)", (n, body, raw))
        expected.append((n, body, raw))
    assert notes(app) == expected


def test_a_later_statement_failing_takes_back_the_first(app: Any) -> None:
    with app.transaction() as sql:
        sql.execute(f"INSERT INTO {TABLE} (n, body) VALUES (?, ?)", (1, "kept"))
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"), app.transaction() as sql:
        sql.execute(f"INSERT INTO {TABLE} (n, body) VALUES (?, ?)", (2, "taken back"))
        sql.execute(f"INSERT INTO {TABLE} (n, body) VALUES (?, ?)", (1, "a duplicate"))
    assert notes(app) == [(1, "kept", None)]
    with app.transaction() as sql:  # the connection is usable again
        sql.execute(f"INSERT INTO {TABLE} (n, body) VALUES (?, ?)", (2, "after"))
    assert [body for _, body, _ in notes(app)] == ["kept", "after"]


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
        assert notes(app) == [(1, "kept", None)]
    else:
        swallow_a_failed_statement()  # SQLite undoes only the failed statement
        assert [n for n, _, _ in notes(app)] == [1, 2]
