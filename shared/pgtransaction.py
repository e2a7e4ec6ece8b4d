"""A PostgreSQL transaction that does not pass a failed statement off as stored.

PostgreSQL answers the COMMIT of a transaction in which a statement failed with
ROLLBACK, not with an error, and psycopg's ``conn.transaction()`` does not look at the
answer. A block that caught a statement's error and went on (or code it calls that does)
would return as if everything in it was stored; here it raises before the COMMIT.

Imported only once PostgreSQL is the store: psycopg must not load before
``PSYCOPG_WAIT_FUNC`` is set (``shared.eventstore``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from psycopg import Connection, Cursor
from psycopg.errors import InFailedSqlTransaction
from psycopg.pq import TransactionStatus


@contextlib.contextmanager
def transaction(conn: Connection[Any]) -> Iterator[Cursor[Any]]:
    """``conn.transaction()`` with a cursor, committed only if no statement failed."""
    with conn.transaction(), conn.cursor() as cursor:
        yield cursor
        if conn.info.transaction_status == TransactionStatus.INERROR:
            raise InFailedSqlTransaction("a statement failed: the transaction was rolled back")
