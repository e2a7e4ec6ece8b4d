"""The fault suite's short profile on the test run's broker and store.

Clients drive pupils and plans while the proxy delays, black-holes and resets the
services' broker connections, the broker is killed and restarted, planning and
reporting are SIGKILLed while they hold delivered messages and (on PostgreSQL) the
database is stopped for 10 s. Nothing
acknowledged may be lost, nothing delivered twice, and reporting's read models must
equal a rebuild from its journal.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from chaos.faults import FaultRun
from chaos.history import (
    FULLY_APPROVED,
    SERVICES,
    Checker,
    Command,
    History,
    Verdict,
)
from chaos.proxy import Proxy
from shared.brokeraccess import SUBSCRIBES
from shared.testing import Broker, Stores


def test_faults_lose_and_double_nothing(
    broker: Broker, stores: Stores, keys_dir: Path, tmp_path: Path
) -> None:
    run = FaultRun(os.environ, broker, stores, keys_dir, tmp_path, "short")
    report = run.run()
    print(report.table())

    expected_kinds = {"proxy_delay", "proxy_drop", "proxy_reset", "broker_restart", "consumer_kill"}
    if stores.kind == "postgres":
        expected_kinds.add("postgres_stop")
    assert set(report.injected) == expected_kinds
    assert all(count > 0 for count in report.injected.values())
    done = run.history.by_name()
    # Pupils went through identification and plans through approval (provisioning's cue).
    assert done["resolve_risk_sign ack"] > 0 and done[f"{FULLY_APPROVED} ack"] > 0
    assert (report.verdict.lost, report.verdict.duplicated) == (0, 0), report.table()
    assert report.verdict.failures == [], report.table()
    assert report.settled_seconds is not None, report.table()
    assert report.rebuild_unchanged, report.table()


# -- the suite's own parts: the proxy does what it says, the checker can fail ----------------


@pytest.fixture
def echo() -> Iterator[Proxy]:
    """A proxy in front of a loopback echo server."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                threading.Thread(target=_echo, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    proxy = Proxy(server.getsockname()[:2]).start()
    yield proxy
    proxy.stop()
    server.close()


def _echo(conn: socket.socket) -> None:
    with contextlib.suppress(OSError), conn:
        while data := conn.recv(4096):
            conn.sendall(data)


def _client(proxy: Proxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=2)


def test_the_proxy_forwards_delays_black_holes_and_resets(echo: Proxy) -> None:
    with _client(echo) as client:
        client.sendall(b"ping")
        assert client.recv(16) == b"ping"
        echo.delay(0.05)
        client.sendall(b"slow")
        assert client.recv(16) == b"slow"  # late but whole

        echo.drop()
        client.sendall(b"lost")
        client.settimeout(0.5)
        with pytest.raises(TimeoutError):
            client.recv(16)
        echo.passthrough()  # a stream with a hole cannot go on: it is reset
        with pytest.raises(ConnectionResetError):
            client.recv(16)

    with _client(echo) as client:
        client.sendall(b"again")
        assert client.recv(16) == b"again"
        assert echo.reset() == 1
        with pytest.raises(ConnectionResetError):
            client.recv(16)


def _fake_system(tmp_path: Path) -> Stores:
    """SQLite stores with the tables the checker reads: every source holds two events."""
    stores = Stores("sqlite", tmp_path, {})
    tmp_path.mkdir(exist_ok=True)
    for service in SERVICES:
        with contextlib.closing(sqlite3.connect(tmp_path / f"{service}.sqlite")) as db, db:
            db.execute("CREATE TABLE stored_events (originator_id TEXT, originator_version INT)")
            db.execute("CREATE TABLE tracking (application_name TEXT, notification_id INT)")
            db.executemany(
                "INSERT INTO stored_events VALUES (?, ?)", [(PUPIL.hex, 1), (PUPIL.hex, 2)]
            )
            for source in SUBSCRIBES.get(service, ()):
                db.executemany("INSERT INTO tracking VALUES (?, ?)", [(source, 1), (source, 2)])
            db.execute("CREATE TABLE planning_pupils (pupil_id TEXT, applied_events INT)")
            db.execute("INSERT INTO planning_pupils VALUES (?, 2)", (str(PUPIL),))
            db.execute("CREATE TABLE provisioning_provisions (plan_id TEXT, measure_id TEXT)")
            db.execute("CREATE TABLE reporting_journal (source TEXT, notification_id INT)")
            for source in SUBSCRIBES["reporting"]:
                db.executemany(
                    "INSERT INTO reporting_journal VALUES (?, ?)", [(source, 1), (source, 2)]
                )
    return stores


PUPIL = uuid4()


def _verdict(stores: Stores, history: History) -> Verdict:
    verdict = Verdict()
    Checker(stores).check(history, verdict)
    return verdict


def test_the_checker_counts_a_lost_command_a_missed_delivery_and_a_double_effect(
    tmp_path: Path,
) -> None:
    stores = _fake_system(tmp_path / "data")
    history = History()
    history.record(Command("register_pupil", "identification", "ack", 201, str(PUPIL), 2))
    assert _verdict(stores, history).ok

    unstored = History()
    unstored.record(Command("resolve_risk_sign", "identification", "ack", 200, str(PUPIL), 3))
    verdict = _verdict(stores, unstored)
    assert (verdict.lost, verdict.duplicated) == (1, 0)

    def run(service: str, statement: str) -> None:
        with contextlib.closing(sqlite3.connect(tmp_path / "data" / f"{service}.sqlite")) as db:
            db.execute(statement)
            db.commit()

    run(
        "provisioning",
        "DELETE FROM tracking WHERE application_name = 'planning' AND notification_id = 2",
    )
    run("planning", "UPDATE planning_pupils SET applied_events = 3")
    verdict = _verdict(stores, history)
    # provisioning missed planning's #2; planning applied the pupil's 2 events as 3.
    assert (verdict.lost, verdict.duplicated) == (1, 1)
    assert len(verdict.failures) == 2
