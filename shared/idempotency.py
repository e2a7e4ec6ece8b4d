"""Idempotency-Key: a retried create returns the first answer instead of creating again.

An answer is kept for a day (``PUMPURS_IDEMPOTENCY_TTL_SECONDS``), long enough for any
client's retries: after that the key may be used again, and the request's hash (taken
over a body that may hold personal data: a pupil, a journal file) is gone.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from shared.errors import UnprocessableError
from shared.store import ServiceApplication, Sql, add_missing_columns

DEFAULT_TTL_SECONDS = 24 * 3600


class IdempotencyKeyReusedError(UnprocessableError):
    code = "idempotency_key_reused"


@dataclass(frozen=True)
class StoredAnswer:
    status: int
    body: str


class IdempotencyStore:
    """Answers kept per (caller, route, key) in the service's own database."""

    def __init__(self, app: ServiceApplication, clock: Callable[[], float] = time.time) -> None:
        self.app, self.clock = app, clock
        self.table = f"{app.table_prefix}idempotency"
        self.ttl = float(app.env.get("PUMPURS_IDEMPOTENCY_TTL_SECONDS", DEFAULT_TTL_SECONDS))
        with app.transaction() as sql:
            sql.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table} ("
                "key_hash TEXT PRIMARY KEY, request_hash TEXT NOT NULL, "
                "status INTEGER NOT NULL, body TEXT NOT NULL)"
            )
            if add_missing_columns(sql, self.table, {"kept_at": "DOUBLE PRECISION"}):
                # The earlier release's answers have no time: counted from the upgrade, so
                # a retry that spans it still gets its first answer, and they go a day later.
                sql.execute(
                    f"UPDATE {self.table} SET kept_at = ? WHERE kept_at IS NULL", (self.clock(),)
                )
            # Each keep lets the expired answers go: found by age, not by reading them all.
            sql.execute(
                f"CREATE INDEX IF NOT EXISTS {self.table}_kept_at ON {self.table} (kept_at)"
            )

    def _cutoff(self) -> float:
        return self.clock() - self.ttl

    @staticmethod
    def _hash(*parts: str) -> str:
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()

    def key_hash(self, caller: str, route: str, key: str) -> str:
        return self._hash(caller, route, key)

    @classmethod
    def request_hash(cls, body: bytes) -> str:
        return cls._hash(body.decode("utf-8", "replace"))

    def find(self, key_hash: str, request_hash: str) -> StoredAnswer | None:
        rows = self.app.query(
            f"SELECT request_hash, status, body FROM {self.table} "
            "WHERE key_hash = ? AND kept_at >= ?",
            (key_hash, self._cutoff()),
        )
        if not rows:
            return None
        if rows[0]["request_hash"] != request_hash:
            raise IdempotencyKeyReusedError("this Idempotency-Key was used for a different request")
        return StoredAnswer(int(rows[0]["status"]), str(rows[0]["body"]))

    def keep(self, key_hash: str, request_hash: str, status: int, body: bytes) -> None:
        """Keep the answer, and let the expired ones go (an expired key's row is replaced)."""
        cutoff = self._cutoff()
        with self.app.transaction() as sql:
            sql.execute(f"DELETE FROM {self.table} WHERE kept_at < ?", (cutoff,))
            sql.execute(
                f"INSERT INTO {self.table} (key_hash, request_hash, status, body, kept_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (key_hash) DO NOTHING",
                (key_hash, request_hash, status, body.decode("utf-8"), self.clock()),
            )

    def forget(self, sql: Sql, naming: str) -> None:
        """Drop kept answers whose body names ``naming`` (an erased subject's id): their
        request hash was taken over a body that may have held that subject's personal data."""
        sql.execute(f"DELETE FROM {self.table} WHERE body LIKE ?", (f"%{naming}%",))


def canonical(body: bytes) -> bytes:
    """The body as JSON with sorted keys, so a retry that reorders fields still matches."""
    try:
        return json.dumps(json.loads(body), sort_keys=True).encode()
    except ValueError:
        return body
