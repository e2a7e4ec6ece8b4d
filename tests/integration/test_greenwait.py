"""psycopg waiting through eventlet's hub with a trampoline (shared/greenwait.py), against
the test stack's PostgreSQL: what a service would notice if waiting went wrong."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import eventlet
import psycopg
import pytest
from psycopg import waiting

from shared.greenwait import green_wait, green_wait_conn
from shared.testing import postgres_conninfo

pytestmark = pytest.mark.store_free  # the stack's server, not a service's store


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setattr(waiting, "wait", green_wait())
    monkeypatch.setattr(waiting, "wait_conn", green_wait_conn())
    opened: list[psycopg.Connection[Any]] = []

    def connect() -> psycopg.Connection[Any]:
        conn = psycopg.connect(postgres_conninfo(os.environ, "postgres"), autocommit=True)
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        conn.close()


def test_other_greenthreads_run_while_a_query_waits(connect: Any) -> None:
    ticks: list[float] = []

    def tick() -> None:
        for _ in range(5):
            ticks.append(time.monotonic())
            eventlet.sleep(0.04)

    conn = connect()
    ticker = eventlet.spawn(tick)
    assert conn.execute("SELECT pg_sleep(0.4), 42").fetchone() == ("", 42)
    answered = time.monotonic()
    ticker.wait()
    assert len([t for t in ticks if t < answered]) == 5


def test_waiting_for_notifications_ends_at_the_timeout_or_the_notification(connect: Any) -> None:
    listener, sender = connect(), connect()
    listener.execute("LISTEN pumpurs_test")
    started = time.monotonic()
    assert list(listener.notifies(timeout=0.3, stop_after=1)) == []
    assert 0.25 < time.monotonic() - started < 2
    eventlet.spawn_after(0.1, sender.execute, "NOTIFY pumpurs_test, 'saved'")
    started = time.monotonic()
    got = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
    assert got == ["saved"] and time.monotonic() - started < 2


def test_a_session_ended_by_the_server_is_an_error_not_a_hang(connect: Any) -> None:
    victim, admin = connect(), connect()
    pid = victim.info.backend_pid
    eventlet.spawn_after(0.2, admin.execute, "SELECT pg_terminate_backend(%s)", (pid,))
    started = time.monotonic()
    # Bounded, so that a hang (once in six runs, before greenwait checked the socket
    # before each wait) fails the test instead of stalling the suite.
    with (
        eventlet.Timeout(5, TimeoutError("the wait hung")),
        pytest.raises(psycopg.OperationalError),
    ):
        victim.execute("SELECT pg_sleep(10)")
    assert time.monotonic() - started < 5


def test_a_connection_closed_under_its_waiter_leaves_its_socket_number_usable(
    connect: Any,
) -> None:
    # libpq closes and opens sockets where eventlet cannot see. A greenthread still waiting
    # on a closed connection's socket kept its number in the hub, and the next connection
    # given that number could not wait on it ("Second simultaneous read on fileno").
    listener = connect()
    listener.execute("LISTEN pumpurs_test")
    waiter = eventlet.spawn(lambda: list(listener.notifies(timeout=30, stop_after=1)))
    eventlet.sleep(0.1)  # it is waiting on the socket now
    number = listener.fileno()
    listener.close()
    successor = connect()
    assert successor.fileno() == number  # the lowest free number: the one just freed
    with eventlet.Timeout(5, TimeoutError("the query hung")):
        assert successor.execute("SELECT 42").fetchone() == (42,)
    with (
        eventlet.Timeout(5, TimeoutError("the old waiter hung")),
        pytest.raises(psycopg.OperationalError),
    ):
        waiter.wait()


def test_a_query_larger_than_the_socket_buffers_goes_through(connect: Any) -> None:
    text = "ā" * 3_000_000  # 6 MB: flushed in many writes, waiting to read and write at once
    assert connect().execute("SELECT length(%s)", (text,)).fetchone() == (3_000_000,)
