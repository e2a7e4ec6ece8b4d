"""The mutable table behind crypto-shredding: each pupil's wrapped key and code digest.

One row a pupil in identification's own database beside the (immutable) events, written
by an effect in the same transaction as the pupil's events: the pupil's data key,
wrapped by the master key, and the keyed digest of the personal code (unique: the code
index). Erasure deletes the row. On SQLite every write runs with ``secure_delete`` on,
so deleted or moved cells are overwritten in the file, and ``checkpoint`` folds the WAL
back and truncates it, so no old page image keeps a deleted key either.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from uuid import UUID

from services.identification.sqlrows import insert_rows
from shared.store import SQLITE, Sql

Query = Callable[..., list[Any]]


class Vault:
    def __init__(self, prefix: str) -> None:
        self.table = f"{prefix}pupil_keys"

    def create_tables(self, sql: Sql) -> None:
        sql.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} (pupil_id TEXT PRIMARY KEY, "
            "wrapped_key TEXT NOT NULL, code_digest TEXT NOT NULL UNIQUE)"
        )

    @staticmethod
    def _secure(sql: Sql) -> None:
        if sql.dialect == SQLITE:
            sql.execute("PRAGMA secure_delete = ON")

    # -- effects (run inside the transaction that stores the events) -------------------------
    def keep(self, sql: Sql, rows: Iterable[tuple[UUID, str, str]]) -> None:
        """Store (pupil id, wrapped key, code digest) rows; a digest already there fails."""
        self._secure(sql)
        insert_rows(
            sql,
            self.table,
            {"pupil_id": "text", "wrapped_key": "text", "code_digest": "text"},
            [(str(pupil_id), wrapped, digest) for pupil_id, wrapped, digest in rows],
        )

    def destroy(self, sql: Sql, pupil_id: UUID) -> None:
        self._secure(sql)
        sql.execute(f"DELETE FROM {self.table} WHERE pupil_id = ?", (str(pupil_id),))

    def rekey(self, sql: Sql, rows: Iterable[tuple[UUID, str, str]]) -> None:
        """Replace (pupil id, wrapped key, code digest) rows: a new master key's."""
        self._secure(sql)
        for pupil_id, wrapped, digest in rows:
            sql.execute(
                f"UPDATE {self.table} SET wrapped_key = ?, code_digest = ? WHERE pupil_id = ?",
                (wrapped, digest, str(pupil_id)),
            )

    # -- reads --------------------------------------------------------------------------------
    def all_wrapped(self, query: Query) -> list[tuple[UUID, str]]:
        rows = query(f"SELECT pupil_id, wrapped_key FROM {self.table} ORDER BY pupil_id")
        return [(UUID(row["pupil_id"]), str(row["wrapped_key"])) for row in rows]

    def wrapped_key(self, query: Query, pupil_id: UUID) -> str | None:
        rows = query(f"SELECT wrapped_key FROM {self.table} WHERE pupil_id = ?", (str(pupil_id),))
        return str(rows[0]["wrapped_key"]) if rows else None

    def pupils_by_digest(self, query: Query, digests: Sequence[str]) -> dict[str, UUID]:
        found: dict[str, UUID] = {}
        for start in range(0, len(digests), 500):
            chunk = digests[start : start + 500]
            rows = query(
                f"SELECT code_digest, pupil_id FROM {self.table} "
                f"WHERE code_digest IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            found.update((r["code_digest"], UUID(r["pupil_id"])) for r in rows)
        return found


def checkpoint(database: str, attempts: int = 50) -> bool:
    """Fold an SQLite WAL into the database file and truncate it; whether that happened.

    Waits briefly for readers each attempt and sleeps between attempts (under eventlet
    that lets the service's other green threads finish what they read)."""
    with contextlib.closing(sqlite3.connect(database, timeout=0.2)) as connection:
        for _ in range(attempts):
            busy, _log, _done = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return True
            time.sleep(0.05)
    return False
