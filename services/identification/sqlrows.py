"""Many rows into one table in one statement.

SQLite (in process, nothing to wait for) takes them through one prepared statement
(``executemany``). PostgreSQL takes them as one ``INSERT ... SELECT FROM unnest(...)`` of
one array a column: under eventlet psycopg waits on the socket once a statement, and a
pipelined ``executemany`` of 500 rows waited about 1500 times; a 500-row ``VALUES`` list
costs the server three times what the arrays do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shared.store import SQLITE, Sql


def insert_rows(
    sql: Sql,
    table: str,
    columns: Mapping[str, str],
    rows: Sequence[Sequence[Any]],
    tail: str = "",
) -> None:
    """Insert ``rows`` (values in ``columns`` order; ``columns`` maps each column to its
    PostgreSQL type); ``tail`` is e.g. an ``ON CONFLICT`` clause."""
    if not rows:
        return
    head = f"INSERT INTO {table} ({', '.join(columns)})"
    if sql.dialect == SQLITE:
        sql.executemany(f"{head} VALUES ({', '.join('?' * len(columns))}) {tail}", rows)
        return
    arrays = ", ".join(f"?::{kind}[]" for kind in columns.values())
    by_column = [list(column) for column in zip(*rows, strict=True)]
    sql.execute(f"{head} SELECT * FROM unnest({arrays}) {tail}", by_column)
