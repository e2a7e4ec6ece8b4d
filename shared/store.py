"""The event store every service keeps: an eventsourcing Application on SQLite or PostgreSQL.

SQLite is the embedded default (one file per service under ``PUMPURS_DATA_DIR``);
PostgreSQL is chosen with eventsourcing's own variables (``PERSISTENCE_MODULE``,
``POSTGRES_*``), optionally prefixed with the application name. Besides events
the same database holds the inbox (eventsourcing's multi-row tracking table),
the relay's position and the service's read models, so that an effect and its
tracking record always commit in one transaction.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any, TypeVar, cast
from uuid import UUID

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.domain import BaseAggregate
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    JSONTranscoder,
    OperationalError,
    ProcessRecorder,
    Recording,
    Tracking,
    Transcoding,
)
from eventsourcing.sqlite import SQLiteProcessRecorder

from shared.chain import Link, Record, extend
from shared.groupcommit import GroupCommit, Save

log = logging.getLogger(__name__)

SQLITE = "sqlite"
POSTGRES = "postgres"

A = TypeVar("A")


def project_events(aggregate: A | None, events: Iterable[Any]) -> A | None:
    """Each event mutates the aggregate in turn. eventsourcing's default projector also
    checks a runtime Protocol per event, which on Python 3.11 costs more than applying the
    event; every event of ours is an aggregate event, so the check can only pass."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


class _Collected(ProcessingEvent[Any]):
    """A save's new events. eventsourcing's collector tests each object against two
    runtime Protocols (about 10 µs a save on Python 3.11); our aggregates all derive from
    ``BaseAggregate`` and go straight in, anything else takes the library's way."""

    def collect_events(self, *objs: Any, **kwargs: Any) -> None:
        others = []
        for obj in objs:
            if isinstance(obj, BaseAggregate):
                self.events.extend(obj.collect_events())
                self.aggregates[obj.id] = obj
            elif obj is not None:
                others.append(obj)
        super().collect_events(*others, **kwargs)


def store_not_answering(exc: BaseException) -> bool:
    """Whether an error means the store is not answering now (try again) rather than a bug.

    PostgreSQL: psycopg's operational and interface errors are about the connection
    (refused, closed, the pool's wait ran out); a bad statement is a ProgrammingError.
    SQLite raises OperationalError for bad statements too, so only busy and locked count.
    """
    cause = exc.__cause__ or exc
    if type(cause).__module__.startswith("psycopg"):
        import psycopg  # only a PostgreSQL store gets here, so SQLite needs no psycopg

        return isinstance(cause, psycopg.OperationalError | psycopg.InterfaceError)
    if isinstance(exc, InterfaceError):
        return True
    if isinstance(cause, sqlite3.OperationalError | OperationalError):
        text = str(cause).lower()
        return "locked" in text or "busy" in text
    return False


class Sql:
    """A cursor that speaks one placeholder style (``?``) on both databases."""

    def __init__(self, cursor: Any, dialect: str) -> None:
        self._cursor = cursor
        self.dialect = dialect

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.dialect == POSTGRES else statement

    def execute(self, statement: str, params: Sequence[Any] = ()) -> Sql:
        # No parameters: psycopg gets None, so a literal % (e.g. in PL/pgSQL) is left alone.
        args = tuple(params) if params else (None if self.dialect == POSTGRES else ())
        self._cursor.execute(self._sql(statement), args)
        return self

    def executemany(self, statement: str, rows: Iterable[Sequence[Any]]) -> None:
        self._cursor.executemany(self._sql(statement), [tuple(r) for r in rows])

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return list(self._cursor.fetchall())


Effect = Callable[[Sql], None]


def table_columns(sql: Sql, table: str) -> set[str]:
    """The table's columns now (none if it does not exist)."""
    if sql.dialect == POSTGRES:
        rows = sql.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ?",
            (table,),
        ).fetchall()
        return {row["column_name"] for row in rows}
    return {row[1] for row in sql.execute(f"PRAGMA table_info({table})").fetchall()}


def add_missing_columns(sql: Sql, table: str, columns: Mapping[str, str]) -> list[str]:
    """Bring a table created by an earlier release up to date (additive only, rows kept),
    adding columns in the order given. Returns the columns added now, so a caller can fill
    in what the earlier release lacked."""
    present = table_columns(sql, table)
    missing = [name for name in columns if name not in present]
    # Replicas starting together may both find a column missing: the second must not fail.
    add = "ADD COLUMN IF NOT EXISTS" if sql.dialect == POSTGRES else "ADD COLUMN"
    for name in missing:
        sql.execute(f"ALTER TABLE {table} {add} {name} {columns[name]}")
    return missing


def _run_effects(recorder: Any, cursor: Any, dialect: str, kwargs: Mapping[str, Any]) -> None:
    # Messages the inbox applied together keep a tracking record each, so a replica that
    # applies any one of them again is refused, as it would be for a message on its own.
    earlier: Sequence[Tracking] = kwargs.get("also_tracked") or ()
    if dialect == POSTGRES and len(earlier) > 1:
        _insert_trackings(cursor, recorder, earlier)  # one round trip, not one each
    else:
        for tracking in earlier:
            recorder._insert_tracking(cursor, tracking)
    for effect in kwargs.get("effects") or ():
        effect(Sql(cursor, dialect))


def _insert_trackings(cursor: Any, recorder: Any, trackings: Sequence[Tracking]) -> None:
    from psycopg.sql import SQL, Identifier

    table = Identifier(recorder.datastore.schema, recorder.tracking_table_name)
    cursor.execute(
        SQL("INSERT INTO {} SELECT * FROM unnest(%s::text[], %s::bigint[])").format(table),
        ([t.application_name for t in trackings], [t.notification_id for t in trackings]),
        prepare=True,
    )


# -- the audit chain: one link a stored event, written in the events' transaction ---------

_CHAIN_DDL = (
    "CREATE TABLE IF NOT EXISTS {t} (position {int} PRIMARY KEY, "
    "previous {int} NOT NULL, hash {bytes} NOT NULL)"
)


def chain_table_name(events_table: str) -> str:
    return f"{events_table}_chain"


def stored_originator_id(originator_id: Any, dialect: str) -> str:
    """The originator id as the events table holds it (SQLite: a UUID's hex; PostgreSQL: uuid)."""
    if isinstance(originator_id, UUID):
        return originator_id.hex if dialect == SQLITE else str(originator_id)
    return str(originator_id)


def _append_links(
    sql: Sql, table: str, positions: Sequence[int], stored_events: Any, head: Link | None
) -> Link:
    """Chain the records just inserted (the caller holds the events table's write lock);
    ``head`` is the last link this process committed, used when nothing came after it."""
    if head is None or head.position != positions[0] - 1:
        row = sql.execute(
            f"SELECT position, hash FROM {table} ORDER BY position DESC LIMIT 1"
        ).fetchone()
        head = Link(row["position"], 0, bytes(row["hash"])) if row else None
    records = [
        Record(
            p,
            stored_originator_id(e.originator_id, sql.dialect),
            e.originator_version,
            e.topic,
            e.state,
        )
        for p, e in zip(positions, stored_events, strict=True)
    ]
    links = extend(head, records)
    insert_links(sql, table, links)
    return links[-1]


class _ChainsEvents:
    """Recorder mixin: each insert of stored events appends their links to the chain table.

    The last link committed is remembered, which saves reading the chain's head back on the
    next insert. It is trusted only while the new records follow it directly: ids are handed
    out under the events table's write lock in commit order, so any record another process
    (or a rolled-back insert) took in between shows as a gap, and the head is read again.
    """

    events_table_name: str
    _chain_head: Link | None = None

    @property
    def chain_table(self) -> str:
        return chain_table_name(self.events_table_name)

    def insert_events(self, stored_events: Any, **kwargs: Any) -> Any:
        written: list[Link] = []
        ids = super().insert_events(stored_events, chain_written=written, **kwargs)  # type: ignore[misc]
        if written:  # committed: only now may the next insert build on it
            self._chain_head = written[-1]
        return ids

    def _chain(self, sql: Sql, positions: Sequence[int], stored_events: Any, kwargs: Any) -> None:
        # In a group commit the saves before this one are not committed yet: it builds on
        # the last link they wrote in this transaction.
        head = kwargs.get("chain_from", self._chain_head)
        last = _append_links(sql, self.chain_table, positions, stored_events, head)
        written = kwargs.get("chain_written")
        if written is not None:
            written[:] = [last]


def insert_links(sql: Sql, table: str, links: Sequence[Link]) -> None:
    if not links:
        return
    rows = [(link.position, link.previous, link.hash) for link in links]
    statement = f"INSERT INTO {table} (position, previous, hash)"
    if sql.dialect == SQLITE:
        sql.executemany(f"{statement} VALUES (?, ?, ?)", rows)
    elif len(rows) == 1:  # most saves: the cheapest statement for one row
        sql.execute(f"{statement} VALUES (?, ?, ?)", rows[0])
    else:
        columns = [list(column) for column in zip(*rows, strict=True)]
        sql.execute(
            f"{statement} SELECT * FROM unnest(?::bigint[], ?::bigint[], ?::bytea[])", columns
        )


class SQLiteInboxRecorder(_ChainsEvents, SQLiteProcessRecorder):
    """Process recorder whose transaction also chains the new events and runs read-model
    effects; saves of events that arrive together commit together (``shared.groupcommit``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.group_commit: GroupCommit[Any] = GroupCommit(
            self._commit_together, self._commit_alone, wait_for_ready=True
        )

    def construct_create_table_statements(self) -> list[str]:
        chain = _CHAIN_DDL.format(t=self.chain_table, int="INTEGER", bytes="BLOB")
        return [*super().construct_create_table_statements(), chain]

    def insert_events(self, stored_events: Any, **kwargs: Any) -> Any:
        if stored_events:
            return self.group_commit.save(stored_events, kwargs)
        if kwargs.get("tracking") is None:
            return super().insert_events(stored_events, **kwargs)
        # Only an inbox record and read-model rows: all of it derives from the source's
        # log, so it need not wait for the disk. A power cut may take it back (never part
        # of it: the WAL keeps transactions whole); the consumer then sees the gap and
        # pulls the range from the source again. The next commit that stores events
        # waits for the disk, and with it everything before it in the WAL. A process
        # crash loses nothing either way.
        with self.datastore.get_connection(commit=True) as conn:
            cursor = conn.cursor()
            cursor.execute("PRAGMA synchronous = NORMAL")
            try:
                with conn.transaction(commit=True) as c:
                    return self._insert_events(c, stored_events, **kwargs)
            finally:
                cursor.execute("PRAGMA synchronous = FULL")

    def _commit_alone(self, save: Save[Any]) -> Any:
        return super().insert_events(save.stored_events, **save.kwargs)

    def _commit_together(self, group: Sequence[Save[Any]]) -> None:
        """One transaction for the group; a save the database refuses (a unique key: a
        concurrent version, a tracking record, a read-model row) is rolled back to its
        savepoint and left to commit on its own."""
        head = self._chain_head
        with self.datastore.transaction(commit=True) as c:
            for save in group:
                written: list[Link] = []
                c.execute("SAVEPOINT grouped")
                try:
                    ids = self._insert_events(
                        c, save.stored_events, chain_from=head, chain_written=written, **save.kwargs
                    )
                except (sqlite3.IntegrityError, IntegrityError):
                    c.execute("ROLLBACK TO grouped")
                else:
                    save.done(ids)
                    head = written[-1] if written else head
                c.execute("RELEASE grouped")
        self._chain_head = head  # committed: the next save may build on it

    def _insert_events(self, c: Any, stored_events: Any, **kwargs: Any) -> Any:
        returning = super()._insert_events(c, stored_events, **kwargs)
        if stored_events:
            self._chain(Sql(c, SQLITE), returning or (), stored_events, kwargs)
        _run_effects(self, c, SQLITE, kwargs)
        return returning


def _steady_reconnects() -> None:
    """Try to reconnect to PostgreSQL every second (with the pool's jitter), for as long
    as the pool tries (five minutes), not at doubling intervals.

    psycopg_pool (pinned, 3.3) doubles the wait between attempts without a cap: after
    40 s down a service stayed unavailable for another 19 s, and the gap grows with the
    outage. An attempt against a server that is down costs next to nothing."""
    from psycopg_pool.base import AttemptWithBackoff

    AttemptWithBackoff.DELAY_BACKOFF = 1.0


def _postgres_inbox_recorder() -> type:
    # Imported lazily: psycopg must not load before PSYCOPG_WAIT_FUNC is set.
    from eventsourcing.postgres import (
        PostgresAggregateRecorder,
        PostgresDatastore,
        PostgresProcessRecorder,
    )
    from eventsourcing.utils import retry
    from psycopg.sql import SQL

    from shared.pgtransaction import transaction

    _steady_reconnects()

    class _OneRoundTripAtATime(PostgresProcessRecorder):
        """eventsourcing's insert without psycopg's pipeline mode.

        An effect reads before it writes (a read-model row, the journal's last stamp), so
        in a pipeline each of its statements costs a sync, and entering and leaving the
        pipeline cost two more; under eventlet each of those is a green select. The
        statements, their order and the transaction are eventsourcing's."""

        @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
        def insert_events(self, stored_events: Any, **kwargs: Any) -> Any:
            with self.datastore.get_connection() as conn, transaction(conn) as curs:
                self._insert_events(curs, stored_events, **kwargs)
                if not stored_events:
                    return None
                self._insert_stored_events(curs, stored_events, **kwargs)
                return self._fetch_ids_after_insert_events(curs, stored_events, **kwargs)

        def _insert_stored_events(self, curs: Any, stored_events: Any, **kwargs: Any) -> None:
            if not kwargs.get("locked"):  # a group's later saves: its first took the lock
                self._lock_table(curs)
            PostgresAggregateRecorder._insert_stored_events(self, curs, stored_events, **kwargs)

        def _lock_table(self, curs: Any) -> None:
            # eventsourcing's two statements (the lock's timeout, then the lock), sent
            # together: without parameters psycopg uses the simple protocol, one round trip.
            curs.execute(SQL("; ").join(self.lock_table_statements))

        def _notify_channel(self, curs: Any) -> None:
            """Nothing: nobody listens on eventsourcing's channel. The relay's lease listens
            on the one the events table's trigger signals (``Relay.create_table``)."""

    class PostgresInboxRecorder(_ChainsEvents, _OneRoundTripAtATime):
        def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
            super().__init__(datastore, **kwargs)
            if datastore.enable_db_functions:
                raise ValueError("the audit chain needs POSTGRES_ENABLE_DB_FUNCTIONS off")
            ddl = _CHAIN_DDL.format(t=self.chain_table, int="bigint", bytes="bytea")
            self.sql_create_statements.append(SQL(ddl))  # type: ignore[arg-type]
            self.group_commit: GroupCommit[Any] = GroupCommit(
                self._commit_together, self._commit_alone, wait_for_ready=False
            )

        def insert_events(self, stored_events: Any, **kwargs: Any) -> Any:
            if stored_events:
                return self.group_commit.save(stored_events, kwargs)
            return super().insert_events(stored_events, **kwargs)

        def _commit_alone(self, save: Save[Any]) -> Any:
            return super().insert_events(save.stored_events, **save.kwargs)

        def _commit_together(self, group: Sequence[Save[Any]]) -> None:
            """One transaction and one lock of the events table for the group. Without
            savepoints (two more round trips a save): a save the database refuses aborts
            the transaction, and the others are written again together without it."""
            saves = list(group)
            while len(saves) > 1:
                refused = self._try_together(saves)
                if refused is None:
                    return
                saves.remove(refused)  # it commits on its own, and gets its own error

        def _try_together(self, saves: Sequence[Save[Any]]) -> Save[Any] | None:
            import psycopg

            head = self._chain_head
            current: Save[Any] | None = None
            try:
                with self.datastore.get_connection() as conn, transaction(conn) as curs:
                    for i, current in enumerate(saves):
                        head = self._write(curs, current, head, locked=i > 0)
                    current = None
            except (IntegrityError, psycopg.IntegrityError):
                for save in saves:  # rolled back: none of them is stored
                    save.stored = False
                if current is None:  # at the commit: nobody in particular
                    raise
                return current
            self._chain_head = head  # committed: the next save may build on it
            return None

        def _write(self, curs: Any, save: Save[Any], head: Link | None, locked: bool) -> Any:
            written: list[Link] = []
            kwargs = {**save.kwargs, "chain_from": head, "chain_written": written}
            self._insert_events(curs, save.stored_events, **kwargs)
            self._insert_stored_events(curs, save.stored_events, locked=locked, **kwargs)
            save.done(self._fetch_ids_after_insert_events(curs, save.stored_events, **kwargs))
            return written[-1] if written else head

        def _insert_events(self, curs: Any, stored_events: Any, **kwargs: Any) -> None:
            super()._insert_events(curs, stored_events, **kwargs)
            _run_effects(self, curs, POSTGRES, kwargs)

        def _fetch_ids_after_insert_events(
            self, curs: Any, stored_events: Any, **kwargs: Any
        ) -> Any:
            # Runs after the insert, under eventsourcing's EXCLUSIVE lock on the events table,
            # so links are appended in notification order by one transaction at a time.
            ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
            if ids:
                self._chain(Sql(curs, POSTGRES), ids, stored_events, kwargs)
            return ids

    return PostgresInboxRecorder


class DateAsISO(Transcoding):
    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


class ServiceApplication(Application[Any]):
    """Base of each service's application: process recorder, hooks after save."""

    env = {"SINGLE_ROW_TRACKING": "n"}

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._saved_listeners: list[Callable[[], None]] = []
        self._tracked_listeners: list[Callable[[Tracking], None]] = []
        super().__init__(env=dict(env) if env is not None else None)
        module = self.env.get("PERSISTENCE_MODULE") or "eventsourcing.sqlite"
        self.dialect = POSTGRES if "postgres" in module else SQLITE

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(DateAsISO())

    # -- the notification log, database and hooks --------------------------
    def construct_recorder(self) -> ProcessRecorder:
        return self.factory.process_recorder()

    def on_saved(self, listener: Callable[[], None]) -> None:
        self._saved_listeners.append(listener)

    def on_tracked(self, listener: Callable[[Tracking], None]) -> None:
        """Called after every commit that recorded an inbox tracking record."""
        self._tracked_listeners.append(listener)

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[Any]]:
        """As eventsourcing saves, with the aggregates collected by ``_Collected`` (and
        without its deprecated ``notify`` hook, which nothing of ours overrides)."""
        processing = _Collected()
        processing.collect_events(*objs, **kwargs)
        recordings = self._record(processing)
        self._take_snapshots(processing)
        self._notify(recordings)
        return recordings

    def _notify(self, recordings: Any) -> None:
        if not recordings:  # an inbox save that only tracked: nothing for the relay
            return
        for listener in self._saved_listeners:
            listener()

    @property
    def events_table(self) -> str:
        return str(self.recorder.events_table_name)  # type: ignore[attr-defined]

    @property
    def chain_table(self) -> str:
        return chain_table_name(self.events_table)

    @property
    def table_prefix(self) -> str:
        """Prefix of the service's own tables, so services can share a PostgreSQL schema."""
        return f"{self.name.lower()}_"

    @contextmanager
    def transaction(self) -> Iterator[Sql]:
        datastore = self.recorder.datastore  # type: ignore[attr-defined]
        if self.dialect == POSTGRES:
            from shared.pgtransaction import transaction

            with datastore.get_connection() as conn, transaction(conn) as cursor:
                yield Sql(cursor, self.dialect)
            return
        with datastore.transaction(commit=True) as cursor:
            yield Sql(cursor, self.dialect)

    def check_store(self, seconds: float) -> None:
        """Raise unless the store answers a read of the events table within ``seconds``.

        On PostgreSQL the wait for a pooled connection counts (while the server is down the
        pool waits up to POSTGRES_CONNECT_TIMEOUT for one), and the server gives up on the
        read then too (a lock on the table would keep it, and the connection, waiting). On
        SQLite, in WAL mode, a read waits for no writer."""
        if self.dialect != POSTGRES:
            self.head()
            return
        from shared.pgtransaction import transaction

        pool = self.recorder.datastore.pool  # type: ignore[attr-defined]
        with pool.connection(timeout=seconds) as conn, transaction(conn) as cursor:
            cursor.execute(f"SET LOCAL statement_timeout = {max(1, round(seconds * 1000))}")
            cursor.execute(f"SELECT max(notification_id) FROM {self.events_table}")

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[Any]:
        """One statement, which sees one snapshot however it is run."""
        # Pooled connections are in autocommit on both databases, where a statement on its
        # own reads one snapshot. A BEGIN and ROLLBACK around it would cost two more
        # statements (on PostgreSQL two more round trips, and psycopg answers a ROLLBACK
        # by dropping every statement the connection had prepared: DEALLOCATE ALL).
        datastore = self.recorder.datastore  # type: ignore[attr-defined]
        if self.dialect == POSTGRES:
            connection = datastore.get_connection()
        else:
            connection = datastore.get_connection(commit=False)
        with connection as conn, conn.cursor() as cursor:
            return Sql(cursor, self.dialect).execute(statement, params).fetchall()

    def save_tracked(
        self,
        *aggregates: Any,
        tracking: Tracking | Sequence[Tracking],
        effects: Sequence[Effect] = (),
    ) -> None:
        """Commit new events, read-model effects and the inbox record together: of the
        message applied, or of each of the consecutive messages applied together."""
        *earlier, last = [tracking] if isinstance(tracking, Tracking) else tracking
        processing = _Collected(last)
        processing.collect_events(*aggregates, effects=list(effects), also_tracked=earlier)
        recordings = self._record(processing)
        for listener in self._tracked_listeners:
            listener(last)
        self._take_snapshots(processing)
        self._notify(recordings)

    def last_tracked(self, source: str) -> int:
        return cast(ProcessRecorder, self.recorder).max_tracking_id(source) or 0

    def head(self) -> int:
        return self.recorder.max_notification_id() or 0


def store_env(
    service: str, data_dir: str | os.PathLike[str], environ: Mapping[str, str]
) -> dict[str, str]:
    """The eventsourcing environment of one service, from the process environment.

    Variables may be prefixed with the service name (``PLANNING_POSTGRES_DBNAME``),
    as eventsourcing itself allows; unprefixed ones apply to every service.
    """
    prefix = f"{service.upper()}_"

    def get(key: str, default: str = "") -> str:
        return environ.get(prefix + key) or environ.get(key) or default

    module = get("PERSISTENCE_MODULE", "eventsourcing.sqlite")
    if module == "eventsourcing.sqlite":
        module = "shared.sqlitestore:SQLiteFactory"  # the same store, statements kept prepared
    env = {"PERSISTENCE_MODULE": module, "SINGLE_ROW_TRACKING": "n"}
    if "postgres" in module:
        env["PROCESS_RECORDER_TOPIC"] = "shared.store:PostgresInboxRecorder"
        env.setdefault("POSTGRES_DBNAME", get("POSTGRES_DBNAME", service))
        # How long a request waits for a connection (eventsourcing's default is 30 s): while
        # PostgreSQL is down a command answers 503 after this, not after half a minute.
        env["POSTGRES_CONNECT_TIMEOUT"] = get("POSTGRES_CONNECT_TIMEOUT", "10")
    else:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        env["PROCESS_RECORDER_TOPIC"] = "shared.store:SQLiteInboxRecorder"
        env["SQLITE_DBNAME"] = get("SQLITE_DBNAME", str(Path(data_dir) / f"{service}.sqlite"))
        env["SQLITE_LOCK_TIMEOUT"] = get("SQLITE_LOCK_TIMEOUT", "10")
    return env


def __getattr__(name: str) -> Any:
    # eventsourcing resolves PROCESS_RECORDER_TOPIC by attribute; build the
    # PostgreSQL class only when it is asked for.
    if name == "PostgresInboxRecorder":
        cls = _postgres_inbox_recorder()
        globals()[name] = cls
        return cls
    raise AttributeError(name)


# -- immutability of stored events ---------------------------------------------

_SQLITE_GUARDS = (
    "CREATE TRIGGER IF NOT EXISTS {t}_no_update BEFORE UPDATE ON {t} "
    "BEGIN SELECT RAISE(ABORT, 'stored events are immutable'); END",
    "CREATE TRIGGER IF NOT EXISTS {t}_no_delete BEFORE DELETE ON {t} "
    "BEGIN SELECT RAISE(ABORT, 'stored events are immutable'); END",
)

_PG_GUARD_FUNCTION = """
CREATE OR REPLACE FUNCTION pumpurs_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'stored events are immutable (% on %)', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege';
END $$
"""

_PG_GUARDS = (
    "CREATE OR REPLACE TRIGGER {t}_immutable BEFORE UPDATE OR DELETE ON {t} "
    "FOR EACH ROW EXECUTE FUNCTION pumpurs_refuse_change()",
    "CREATE OR REPLACE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t} "
    "FOR EACH STATEMENT EXECUTE FUNCTION pumpurs_refuse_change()",
)

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def guard_stored_events(app: ServiceApplication) -> None:
    """Refuse UPDATE, DELETE (and TRUNCATE) on the events table and its audit chain."""
    guard_append_only(app, app.events_table, app.chain_table)


def guard_append_only(app: ServiceApplication, *tables: str) -> None:
    """Refuse UPDATE, DELETE (and TRUNCATE) on these tables, in the database itself."""
    for table in tables:
        if not _IDENTIFIER.match(table):
            raise ValueError(f"unexpected table name {table!r}")
    with app.transaction() as sql:
        if app.dialect == SQLITE:
            for table in tables:
                for statement in _SQLITE_GUARDS:
                    sql.execute(statement.format(t=table))
        else:
            # Serialise concurrent start-ups of replicas on the same database.
            sql.execute("SELECT pg_advisory_xact_lock(hashtext('pumpurs-ddl'))")
            sql.execute(_PG_GUARD_FUNCTION)
            for table in tables:
                for statement in _PG_GUARDS:
                    sql.execute(statement.format(t=table))
