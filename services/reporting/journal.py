"""The journal: every integration event reporting received, in the order it was applied.

Append-only: triggers in the database refuse UPDATE and DELETE (and TRUNCATE on
PostgreSQL), as for stored events. Each entry is appended in the same transaction as the
inbox's tracking record and the read-model rows it changes, so the journal holds exactly
the events the read models reflect, each once (a unique (source, notification_id) guards
that too).

``received_at`` is when the entry was appended, in UTC with microseconds, and strictly
increases with ``seq``: on PostgreSQL appends are serialised by an advisory lock held
until commit, on SQLite by the database's write lock, and each stamp is at least one
microsecond after the previous one. So the entries received at or before a time T are
exactly those a reader could see at T, which is what ``as_of`` replays rely on.

Reporting appends entries of its own too (source ``reporting``, numbered 1, 2, ... in
journal order): the answers identification gave to its age enquiries, so a rebuild or
an ``as_of`` replay counts an answer exactly from the moment it was journalled.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.contracts import Envelope
from shared.store import POSTGRES, Sql

Query = Callable[..., list[Any]]

# Serialises appends (and rebuilds) across the replicas of reporting on PostgreSQL.
APPEND_LOCK = "SELECT pg_advisory_xact_lock(hashtext('pumpurs-reporting-journal'))"
_STAMP = "%Y-%m-%dT%H:%M:%S.%fZ"
_COLUMNS = (
    "received_at",
    "source",
    "notification_id",
    "event_id",
    "event_type",
    "schema_version",
    "aggregate_id",
    "aggregate_version",
    "occurred_at",
    "actor",
    "payload",
)
# The stamp ``_next_stamp`` computes, computed by PostgreSQL (with its clock: one for all
# replicas), and a row's place in its statement in microseconds after that: the rows of one
# statement all see the entry before it as the newest. GREATEST ignores the NULL of an
# empty journal.
_PG_STAMP = (
    "to_char((greatest(clock_timestamp(), "
    "(SELECT received_at FROM {table} ORDER BY seq DESC LIMIT 1)::timestamptz "
    "+ interval '1 microsecond') + interval '{place} microsecond') AT TIME ZONE 'UTC', "
    '\'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\')'
)
# What a replay reads of each entry.
REPLAYED = "seq, source, event_type, aggregate_id, occurred_at, payload"


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_STAMP)


def _values(envelope: Envelope) -> tuple[Any, ...]:
    """An entry's columns after ``received_at``."""
    return (
        envelope.source,
        envelope.notification_id,
        envelope.event_id,
        envelope.event_type,
        envelope.schema_version,
        envelope.aggregate_id,
        envelope.aggregate_version,
        envelope.occurred_at.isoformat(),
        envelope.actor,
        _json(envelope.payload),
    )


def _json(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def parse_stamp(text: str) -> datetime:
    """A stamp this journal wrote (fromisoformat reads it; strptime took 40x as long)."""
    return datetime.fromisoformat(text)


class Journal:
    def __init__(self, prefix: str) -> None:
        self.table = f"{prefix}journal"

    def create_table(self, sql: Sql) -> None:
        seq = (
            "seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
            if sql.dialect == POSTGRES
            else "seq INTEGER PRIMARY KEY"
        )
        sql.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} ({seq}, received_at TEXT NOT NULL, "
            "source TEXT NOT NULL, notification_id BIGINT NOT NULL, event_id TEXT NOT NULL, "
            "event_type TEXT NOT NULL, schema_version INTEGER NOT NULL, "
            "aggregate_id TEXT NOT NULL, aggregate_version INTEGER NOT NULL, "
            "occurred_at TEXT NOT NULL, actor TEXT NOT NULL, payload TEXT NOT NULL, "
            "UNIQUE (source, notification_id))"
        )
        sql.execute(
            f"CREATE INDEX IF NOT EXISTS {self.table}_received ON {self.table} (received_at)"
        )

    def append_all(self, sql: Sql, envelopes: Sequence[Envelope]) -> None:
        """Append the entries, in order, each stamped when its transaction holds the lock
        (taken here)."""
        self.lock(sql)
        rows = [_values(envelope) for envelope in envelopes]
        if sql.dialect == POSTGRES:
            # One statement for all, not one round trip each: the journal's inserts were
            # a twelfth of all the statements the services sent under load. PostgreSQL
            # numbers the rows of a VALUES list in the order given.
            sql.execute(self._pg_insert(len(rows)), [v for values in rows for v in values])
            return
        for values in rows:
            self._insert(sql, values)

    def append_own(
        self, sql: Sql, source: str, event_type: str, aggregate_id: str, payload: Mapping[str, Any]
    ) -> None:
        """Append an entry of reporting's own, numbered after the source's last one."""
        self.lock(sql)
        row = sql.execute(
            f"SELECT MAX(notification_id) AS n FROM {self.table} WHERE source = ?", (source,)
        ).fetchone()
        number = int(row["n"] or 0) + 1
        now = datetime.now(UTC).isoformat()
        values = (source, number, str(uuid.uuid4()), event_type, 1, aggregate_id, 1, now)
        self._insert(sql, (*values, source, _json(payload)))

    @staticmethod
    def lock(sql: Sql) -> None:
        """Hold appends (PostgreSQL; SQLite's write lock does it) until this transaction ends:
        taken first by every transaction that appends, so none waits on another's rows."""
        if sql.dialect == POSTGRES:
            sql.execute(APPEND_LOCK)

    def _insert(self, sql: Sql, values: tuple[Any, ...]) -> None:
        """Insert an entry stamped now (the caller holds the append lock)."""
        if sql.dialect == POSTGRES:
            sql.execute(self._pg_insert(1), values)
            return
        others = ", ".join("?" * (len(_COLUMNS) - 1))
        sql.execute(f"{self._columns} (?, {others})", (self._next_stamp(sql), *values))

    @property
    def _columns(self) -> str:
        return f"INSERT INTO {self.table} ({', '.join(_COLUMNS)}) VALUES"

    def _pg_insert(self, rows: int) -> str:
        # Stamped by the insert itself, one round trip less: the statement's snapshot is
        # taken after the append lock was granted, so it sees the newest entry.
        others = ", ".join("?" * (len(_COLUMNS) - 1))
        return f"{self._columns} " + ", ".join(
            f"({_PG_STAMP.format(table=self.table, place=place)}, {others})"
            for place in range(rows)
        )

    def _next_stamp(self, sql: Sql) -> str:
        now = datetime.now(UTC)
        row = sql.execute(
            f"SELECT received_at FROM {self.table} ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if row is not None:
            now = max(now, parse_stamp(row["received_at"]) + timedelta(microseconds=1))
        return stamp(now)

    def latest(self, query: Query) -> str | None:
        """When the newest entry was received (None while the journal is empty)."""
        rows = query(f"SELECT received_at FROM {self.table} ORDER BY seq DESC LIMIT 1")
        return str(rows[0]["received_at"]) if rows else None

    def entries(
        self,
        query: Query,
        *,
        until: str | None = None,
        page: int = 20_000,
        pause: Callable[[], None] = lambda: None,
    ) -> Iterator[list[Any]]:
        """Pages of entries in journal order (those received at or before ``until``), each
        entry the ``REPLAYED`` columns in order."""
        after = 0
        where = "seq > ?" + (" AND received_at <= ?" if until is not None else "")
        while True:
            params = (after, until) if until is not None else (after,)
            rows = query(
                f"SELECT {REPLAYED} FROM {self.table} WHERE {where} ORDER BY seq LIMIT ?",
                (*params, page),
            )
            if not rows:
                return
            after = int(rows[-1]["seq"])
            # Rows unpack as tuples of the REPLAYED columns (PostgreSQL's are dictionaries).
            yield [tuple(row.values()) for row in rows] if isinstance(rows[0], dict) else rows
            pause()

    def count(self, query: Query) -> int:
        return int(query(f"SELECT COUNT(*) AS n FROM {self.table}")[0]["n"])
