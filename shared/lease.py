"""Who may run a service's outbox relay: one replica at a time.

Two relays publishing the same log would not lose anything (consumers drop
duplicates), but they would double the traffic and interleave two copies of
the stream. So the relay first takes a lease and checks it before each batch:

- PostgreSQL: a session advisory lock on a connection of its own; if that
  connection dies the lock is gone, the check fails and the relay stands down,
  while another replica's relay takes the lock over;
- SQLite: an exclusive ``flock`` on a file beside the database, which only
  matters when someone starts a second process on the same file.

On PostgreSQL the holder also LISTENs on the service's channel, which a trigger on
the events table notifies at every commit (see ``Relay.create_table``): events
saved through any replica wake the one relay that publishes.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
import zlib
from pathlib import Path
from typing import IO, Any, Protocol

from shared.store import POSTGRES, ServiceApplication

log = logging.getLogger(__name__)


class Lease(Protocol):
    def acquire(self) -> bool:
        """Take the lease if it is free (never waits); True while this process holds it."""

    def held(self) -> bool:
        """Still held (checked before every batch)."""

    def release(self) -> None: ...

    def wait_for_saves(self, timeout: float) -> bool:
        """Block until a save is notified or ``timeout``; False if this lease cannot tell
        (the relay then waits for its own process's saves instead)."""


class AlwaysHeld:
    """An in-memory store belongs to one process."""

    def acquire(self) -> bool:
        return True

    def held(self) -> bool:
        return True

    def release(self) -> None:
        return None

    def wait_for_saves(self, timeout: float) -> bool:
        return False


class FileLease:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None

    def acquire(self) -> bool:
        if self._file is not None:
            return True
        handle = open(self.path, "ab")  # noqa: SIM115  (held open while the lease is ours)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    def held(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            handle.close()  # closing drops the flock

    def wait_for_saves(self, timeout: float) -> bool:
        return False


# A session that answered or was notified this recently still holds its lock. Under load
# a notification comes with every save, so the check before each batch costs no round
# trip. If the session died within the window the relay publishes one batch more than it
# should: events another replica may publish too, which consumers drop as duplicates.
PROOF_WINDOW = 0.2


class PostgresLease:
    def __init__(self, connect: Any, key: str, channel: str) -> None:
        self._connect = connect
        self._key = zlib.crc32(key.encode())  # advisory locks take a number
        self._channel = channel
        self._connection: Any = None  # kept while standing by, so retries are one query
        self._holding = False
        self._proven_at = -PROOF_WINDOW  # when the session last answered or was notified

    def acquire(self) -> bool:
        if self.held():
            return True
        try:
            if self._connection is None:
                self._connection = self._connect()
            row = self._connection.execute(
                "SELECT pg_try_advisory_lock(%s) AS granted", (self._key,)
            ).fetchone()
        except Exception:
            self.release()
            raise
        self._holding = bool(row and row["granted"])
        if self._holding:
            self._connection.execute(f"LISTEN {self._channel}")
        return self._holding

    def held(self) -> bool:
        if not self._holding:
            return False
        if time.monotonic() - self._proven_at < PROOF_WINDOW:
            return True
        try:
            self._connection.execute("SELECT 1")
        except Exception as exc:  # the session, and with it the lock, is gone
            log.warning("relay lease lost (%s)", type(exc).__name__)
            self.release()
            return False
        self._proven_at = time.monotonic()
        return True

    def release(self) -> None:
        connection, self._connection, self._holding = self._connection, None, False
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    def wait_for_saves(self, timeout: float) -> bool:
        if not self._holding:
            return False
        try:
            for _ in self._connection.notifies(timeout=timeout, stop_after=1):
                self._proven_at = time.monotonic()  # only a live session is notified
        except Exception as exc:  # the next held() finds out and stands down
            log.info("relay lease connection failed while waiting (%s)", type(exc).__name__)
        return True


def saved_channel(app: ServiceApplication) -> str:
    """The PostgreSQL notification channel a commit of new events signals on."""
    return f"{app.table_prefix}events_saved"


def lease_for(app: ServiceApplication) -> Lease:
    if app.dialect == POSTGRES:
        import psycopg

        kwargs = dict(app.recorder.datastore.pool.kwargs)  # type: ignore[attr-defined]

        def connect() -> Any:
            return psycopg.connect(**kwargs, autocommit=True)

        return PostgresLease(connect, f"pumpurs-relay:{app.name}", saved_channel(app))
    database = app.env.get("SQLITE_DBNAME", ":memory:")
    if database == ":memory:" or "mode=memory" in database:
        return AlwaysHeld()
    return FileLease(Path(os.fspath(database) + ".relay-lock"))
