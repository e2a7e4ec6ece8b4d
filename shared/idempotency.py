"""Idempotency-Key: a retried create returns the first answer instead of creating again."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from shared.errors import UnprocessableError
from shared.store import ServiceApplication, Sql


class IdempotencyKeyReusedError(UnprocessableError):
    code = "idempotency_key_reused"


@dataclass(frozen=True)
class StoredAnswer:
    status: int
    body: str


class IdempotencyStore:
    """Answers kept per (caller, route, key) in the service's own database."""

    def __init__(self, app: ServiceApplication) -> None:
        self.app = app
        self.table = f"{app.table_prefix}idempotency"
        with app.transaction() as sql:
            sql.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table} ("
                "key_hash TEXT PRIMARY KEY, request_hash TEXT NOT NULL, "
                "status INTEGER NOT NULL, body TEXT NOT NULL)"
            )

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
            f"SELECT request_hash, status, body FROM {self.table} WHERE key_hash = ?", (key_hash,)
        )
        if not rows:
            return None
        if rows[0]["request_hash"] != request_hash:
            raise IdempotencyKeyReusedError("this Idempotency-Key was used for a different request")
        return StoredAnswer(int(rows[0]["status"]), str(rows[0]["body"]))

    def keep(self, key_hash: str, request_hash: str, status: int, body: bytes) -> None:
        with self.app.transaction() as sql:
            sql.execute(
                f"INSERT INTO {self.table} (key_hash, request_hash, status, body) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (key_hash) DO NOTHING",
                (key_hash, request_hash, status, body.decode("utf-8")),
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
