"""eventsourcing's SQLite store, with connections that keep their prepared statements.

eventsourcing (pinned 9.5) opens each connection with ``cached_statements=True``, which
sqlite3 reads as a cache of one statement: every statement but the last one run on the
connection is parsed and planned again. A command runs ten to fifteen different
statements (begin, read, events, chain links, read-model rows, commit), so each one was
prepared afresh, about 15 us apiece. Everything else (WAL, autocommit with explicit
BEGIN, row factory, lock timeout) is as eventsourcing does it.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from eventsourcing.persistence import InterfaceError
from eventsourcing.sqlite import (
    SQLITE3_DEFAULT_LOCK_TIMEOUT,
    SQLiteConnection,
    SQLiteConnectionPool,
)
from eventsourcing.sqlite import SQLiteFactory as _EventsourcingFactory

# More than the distinct statements one service runs, so none is evicted while it works.
STATEMENT_CACHE_SIZE = 256


class _PreparedStatementsPool(SQLiteConnectionPool):
    def _create_connection(self) -> SQLiteConnection:
        try:
            conn = sqlite3.connect(
                database=self.db_name,
                uri=True,
                check_same_thread=False,
                isolation_level=None,  # autocommit: eventsourcing issues BEGIN itself
                cached_statements=STATEMENT_CACHE_SIZE,
                timeout=self.lock_timeout or SQLITE3_DEFAULT_LOCK_TIMEOUT,
            )
        except (sqlite3.Error, TypeError) as e:
            raise InterfaceError(e) from e
        if not self.is_sqlite_memory_mode and not self.is_journal_mode_wal:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if mode.lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
                self.journal_mode_was_changed_to_wal = True
            self.is_journal_mode_wal = True
        # Every commit waits for the disk (SQLite's default, said here because the inbox
        # relaxes it for a transaction and puts it back: see SQLiteInboxRecorder).
        conn.execute("PRAGMA synchronous = FULL")
        conn.row_factory = sqlite3.Row
        return SQLiteConnection(sqlite_conn=conn, max_age=self.max_age)


class SQLiteFactory(_EventsourcingFactory):
    """The factory ``store_env`` names for SQLite (``PERSISTENCE_MODULE``)."""

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        eventsourcing_pool = self.datastore.pool
        self.datastore.pool = _PreparedStatementsPool(
            db_name=eventsourcing_pool.db_name, lock_timeout=eventsourcing_pool.lock_timeout
        )
        eventsourcing_pool.close()
