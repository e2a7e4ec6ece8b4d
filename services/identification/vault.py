"""The mutable tables behind crypto-shredding: wrapped pupil keys and the code index.

Both live in identification's own database beside the (immutable) events and are
written by effects in the same transaction as the pupil's events. Erasure deletes a
pupil's rows here. On SQLite every write runs with ``secure_delete`` on, so deleted
or moved cells are overwritten in the file, and ``checkpoint`` folds the WAL back and
truncates it, so no old page image keeps a deleted key either.
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
        self.keys = f"{prefix}pupil_keys"
        self.codes = f"{prefix}personal_codes"

    def create_tables(self, sql: Sql) -> None:
        sql.execute(
            f"CREATE TABLE IF NOT EXISTS {self.keys} "
            "(pupil_id TEXT PRIMARY KEY, wrapped_key TEXT NOT NULL)"
        )
        sql.execute(
            f"CREATE TABLE IF NOT EXISTS {self.codes} "
            "(digest TEXT PRIMARY KEY, pupil_id TEXT NOT NULL)"
        )
        sql.execute(f"CREATE INDEX IF NOT EXISTS {self.codes}_pupil ON {self.codes} (pupil_id)")

    @staticmethod
    def _secure(sql: Sql) -> None:
        if sql.dialect == SQLITE:
            sql.execute("PRAGMA secure_delete = ON")

    # -- effects (run inside the transaction that stores the events) -------------------------
    def keep(self, sql: Sql, rows: Iterable[tuple[UUID, str, str]]) -> None:
        """Store (pupil id, wrapped key, code digest) rows; a digest already there fails."""
        rows = list(rows)
        self._secure(sql)
        ids = [str(pupil_id) for pupil_id, _, _ in rows]
        insert_rows(
            sql,
            self.keys,
            {"pupil_id": "text", "wrapped_key": "text"},
            [(pupil_id, wrapped) for pupil_id, (_, wrapped, _) in zip(ids, rows, strict=True)],
        )
        insert_rows(
            sql,
            self.codes,
            {"digest": "text", "pupil_id": "text"},
            [(digest, pupil_id) for pupil_id, (_, _, digest) in zip(ids, rows, strict=True)],
        )

    def destroy(self, sql: Sql, pupil_id: UUID) -> None:
        self._secure(sql)
        sql.execute(f"DELETE FROM {self.keys} WHERE pupil_id = ?", (str(pupil_id),))
        sql.execute(f"DELETE FROM {self.codes} WHERE pupil_id = ?", (str(pupil_id),))

    # -- reads --------------------------------------------------------------------------------
    def wrapped_key(self, query: Query, pupil_id: UUID) -> str | None:
        rows = query(f"SELECT wrapped_key FROM {self.keys} WHERE pupil_id = ?", (str(pupil_id),))
        return str(rows[0]["wrapped_key"]) if rows else None

    def pupils_by_digest(self, query: Query, digests: Sequence[str]) -> dict[str, UUID]:
        found: dict[str, UUID] = {}
        for start in range(0, len(digests), 500):
            chunk = digests[start : start + 500]
            rows = query(
                f"SELECT digest, pupil_id FROM {self.codes} "
                f"WHERE digest IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            found.update((r["digest"], UUID(r["pupil_id"])) for r in rows)
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
