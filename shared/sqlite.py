"""The SQLite store, with commits that do not stop the service while the disk syncs.

A commit in WAL mode with ``synchronous=FULL`` (SQLite's default, kept: an answered
command must survive a power cut) waits for the write-ahead log to reach the disk.
Under eventlet every request of the process shares one OS thread, so that wait stalled
all of them, including the relay and the inbox: on a busy disk it was the largest
share of a command's latency. The commit, and nothing else, now runs on one of
eventlet's native threads (``tpool``); the sqlite3 module releases the GIL while it
syncs, so the hub serves other requests meanwhile. The pool's writer lock is still held
by the committing green thread, so writes stay one at a time, in order, as before.
Outside a monkey-patched process (the CLI, application-level tests) commits run inline.
"""

from __future__ import annotations

from typing import Any

from eventsourcing import sqlite as es_sqlite
from eventsourcing.utils import Environment


def _patched() -> bool:
    from eventlet import patcher

    return bool(patcher.is_monkey_patched("thread"))


class OffHubConnection(es_sqlite.SQLiteConnection):
    def commit(self) -> None:
        if not _patched():
            super().commit()
            return
        from eventlet import tpool

        tpool.execute(self._sqlite_conn.commit)


class OffHubConnectionPool(es_sqlite.SQLiteConnectionPool):
    def _create_connection(self) -> es_sqlite.SQLiteConnection:
        conn = super()._create_connection()
        conn.__class__ = OffHubConnection  # same state, only commit() differs
        return conn


class SQLiteFactory(es_sqlite.SQLiteFactory):
    """eventsourcing's SQLite factory whose datastore hands out ``OffHubConnection``s."""

    def __init__(self, env: Environment | Any) -> None:
        super().__init__(env)
        pool = self.datastore.pool
        # Built before any connection was opened, so nothing is lost by the swap.
        self.datastore.pool = OffHubConnectionPool(
            db_name=pool.db_name,
            lock_timeout=pool.lock_timeout,
            pool_size=pool.pool_size,
            max_overflow=pool.max_overflow,
            pool_timeout=pool.pool_timeout,
            max_age=pool.max_age,
            pre_ping=pool.pre_ping,
        )
