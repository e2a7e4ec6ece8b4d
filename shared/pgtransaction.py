"""A PostgreSQL transaction whose BEGIN travels with its first statement.

psycopg sends BEGIN on its own and waits for the answer before the first statement, so
every transaction pays a round trip that does no work. Under load the round trips, not
the statements' execution, are what a service and PostgreSQL spend their CPU on: each is
a wake-up of a backend and a green select in the service, and one in six was a BEGIN.
Here the first statement is bound on the client (psycopg's ``ClientCursor.mogrify``,
which quotes as libpq does) and sent behind BEGIN in one simple-protocol message; the
statements after it are psycopg's as usual, prepared and bound on the server.

Imported only once PostgreSQL is the store: psycopg must not load before
``PSYCOPG_WAIT_FUNC`` is set (``shared.eventstore``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, cast

import psycopg
from psycopg import ClientCursor, Connection, Cursor


class FirstStatementBegins:
    """A cursor of an autocommit connection that opens the transaction with its first
    statement. Anything but ``execute``/``executemany`` is the wrapped cursor's."""

    def __init__(self, conn: Connection[Any]) -> None:
        self._conn = conn
        self._cursor: Cursor[Any] = conn.cursor()
        self.begun = False

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> FirstStatementBegins:
        if self.begun:
            self._cursor.execute(query, params, **kwargs)
            return self
        with ClientCursor(self._conn) as client:
            first = client.mogrify(query, params)
        self.begun = True
        self._cursor.execute("BEGIN; " + first)  # no parameters: one simple query
        self._cursor.nextset()  # past BEGIN's result, to the statement's
        return self

    def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
        if not self.begun:
            self._cursor.execute("BEGIN")
            self.begun = True
        self._cursor.executemany(query, params_seq, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cursor)

    def end(self, commit: bool) -> None:
        """COMMIT (or ROLLBACK) what the first statement began; nothing if none ran."""
        if not self.begun:
            return
        self.begun = False
        self._cursor.execute("COMMIT" if commit else "ROLLBACK")
        if commit and self._cursor.statusmessage != "COMMIT":
            # PostgreSQL answers COMMIT of a failed transaction with ROLLBACK, not an
            # error: a statement's error swallowed inside the block must not pass as stored.
            raise psycopg.errors.InFailedSqlTransaction("the transaction was rolled back")


@contextlib.contextmanager
def transaction(conn: Connection[Any], *, commit: bool = True) -> Iterator[Cursor[Any]]:
    """Like ``conn.transaction()`` and ``conn.cursor()`` on an autocommit connection, one
    round trip shorter. Without ``commit`` the transaction is rolled back at the end."""
    cursor = FirstStatementBegins(conn)
    try:
        yield cast("Cursor[Any]", cursor)  # a cursor to its callers (eventsourcing's too)
    except BaseException:
        with contextlib.suppress(psycopg.Error):  # a broken connection: the pool drops it
            cursor.end(commit=False)
        raise
    cursor.end(commit)
