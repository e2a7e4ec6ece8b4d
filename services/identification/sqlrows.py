"""Many rows in one statement on PostgreSQL: ``INSERT ... VALUES (...), (...)``.

One statement a chunk instead of ``executemany``: under eventlet, psycopg waits for the
socket once per statement, and a pipelined ``executemany`` of 500 rows waits 1500 times.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shared.store import SQLITE, Sql

CHUNK = 500  # rows a statement; 500 x 8 columns stays far below either database's limits


def insert_rows(sql: Sql, head: str, rows: Sequence[Sequence[Any]], tail: str = "") -> None:
    """``head`` is ``INSERT INTO t (a, b)``; ``tail`` e.g. an ``ON CONFLICT`` clause.

    SQLite (in process, no waiting) is a little faster with one prepared statement."""
    if sql.dialect == SQLITE and rows:
        sql.executemany(f"{head} VALUES ({', '.join('?' * len(rows[0]))}) {tail}", rows)
        return
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        row = f"({', '.join('?' * len(chunk[0]))})"
        values = ", ".join([row] * len(chunk))
        sql.execute(f"{head} VALUES {values} {tail}", [v for r in chunk for v in r])
