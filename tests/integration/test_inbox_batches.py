"""Messages that waited for a consumer are applied together, each exactly once.

Reporting's store is held (its write lock on SQLite, the journal's lock on PostgreSQL)
while identification publishes, so the messages pile up delivered and unacknowledged,
as they do when reporting falls behind; then it is let go.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from services.reporting.journal import APPEND_LOCK
from shared.testing import Client, Stores, postgres_conninfo, running, wait_until
from tests.integration.test_slice import SCHOOL, register_flagged

EVENTS_A_PUPIL = 3  # registered, risk sign recorded, flagged at risk


@contextlib.contextmanager
def reporting_held(stores: Stores, replica_applied: Sequence[int] = ()) -> Iterator[None]:
    """Reporting cannot commit while this holds, as if its store were slow. With
    ``replica_applied``: meanwhile another replica applied those notification ids of
    identification (their tracking records, committed when the hold ends)."""
    table = stores.tracking_table("reporting")
    rows = [("identification", n) for n in replica_applied]
    if stores.kind == "postgres":
        import psycopg

        conninfo = postgres_conninfo(os.environ, stores.database("reporting"))
        with psycopg.connect(conninfo) as conn:  # one transaction, committed when it ends
            conn.execute(APPEND_LOCK)
            conn.cursor().executemany(f"INSERT INTO {table} VALUES (%s, %s)", rows)
            yield
        return
    path = stores.data_dir / "reporting.sqlite"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(f"INSERT INTO {table} VALUES (?, ?)", rows)
        yield
        conn.execute("COMMIT")


def journalled(system: Any) -> list[int]:
    rows = system.stores.query(
        "reporting",
        "SELECT notification_id FROM reporting_journal WHERE source = ? ORDER BY seq",
        ("identification",),
    )
    return [row["notification_id"] for row in rows]


def waiting(system: Any) -> int:
    """Messages delivered to reporting's identification inbox and not yet acknowledged
    (the broker's statistics, refreshed every few seconds)."""
    figures = system.broker.queue("reporting.from.identification")
    return int(figures.get("messages_unacknowledged", 0))


def settled(
    reporting: Any, messages: int, outcomes: tuple[str, ...] = ("ok", "duplicate")
) -> dict[str, float]:
    """Reporting's consumed counts by outcome, once every message has one.

    A message applied in another's batch is counted when its own greenthread
    acknowledges it, a moment after the batch's commit: hence the wait."""

    def consumed() -> dict[str, float]:
        return {
            outcome: reporting.metric(
                "pumpurs_events_consumed_total", outcome=outcome, source="identification"
            )
            for outcome in outcomes
        }

    wait_until(lambda: sum(consumed().values()) >= messages, timeout=10)
    return consumed()


def piled_up_and_let_go(system: Any, identification: Any) -> int:
    """Five pupils flagged, four of them while reporting is held; how many events
    reporting journalled, once it has journalled them all."""
    teacher = Client(identification.url, system.token("teacher", school=SCHOOL))
    register_flagged(teacher)
    wait_until(lambda: len(journalled(system)) == EVENTS_A_PUPIL, timeout=10)
    with reporting_held(system.stores):
        for _ in range(4):
            register_flagged(teacher)
        wait_until(lambda: waiting(system) >= 4 * EVENTS_A_PUPIL, timeout=30, interval=0.5)
    total = 5 * EVENTS_A_PUPIL
    wait_until(lambda: len(journalled(system)) == total, timeout=20)
    assert journalled(system) == list(range(journalled(system)[0], total + 1))
    return total


def commits(reporting: Any, events: int) -> dict[str, float]:
    """Reporting's commits of identification's events: how many, how many held one
    event only, and how many events they held, once they held ``events`` (a commit is
    observed a moment after it is visible in the store)."""
    source = {"service": "reporting", "source": "identification"}

    def observed() -> dict[str, float]:
        return {
            "commits": reporting.metric("pumpurs_inbox_events_per_commit_count", **source),
            "alone": reporting.metric("pumpurs_inbox_events_per_commit_bucket", le="1.0", **source),
            "events": reporting.metric("pumpurs_inbox_events_per_commit_sum", **source),
        }

    wait_until(lambda: observed()["events"] >= events, timeout=10)
    return observed()


def test_messages_that_waited_for_reporting_are_applied_together_each_once(system: Any) -> None:
    identification, reporting = system.service("identification"), system.service("reporting")
    with running(identification, reporting):
        total = piled_up_and_let_go(system, identification)

        done = commits(reporting, total)
        assert done["events"] == total
        assert done["commits"] - done["alone"] >= 1, "no commit applied more than one event"
        stamps = [
            row["received_at"]
            for row in system.stores.query(
                "reporting", "SELECT received_at FROM reporting_journal ORDER BY seq"
            )
        ]
        assert stamps == sorted(set(stamps)), "received_at must rise with every entry"
        assert done["commits"] < total
        assert settled(reporting, total) == {"ok": total, "duplicate": 0}


def test_messages_arriving_one_after_another_wait_for_each_other(system: Any) -> None:
    """Nothing held: reporting lingers for the messages on their way (its readers can
    wait), so pupils registered one after another share its commits."""
    identification, reporting = system.service("identification"), system.service("reporting")
    with running(identification, reporting):
        teacher = Client(identification.url, system.token("teacher", school=SCHOOL))
        pupils = 4  # eight commands, each committed and published on its own
        for _ in range(pupils):
            register_flagged(teacher)
        total = pupils * EVENTS_A_PUPIL
        wait_until(lambda: len(journalled(system)) == total, timeout=10)

        assert journalled(system) == list(range(1, total + 1))
        assert commits(reporting, total)["commits"] <= pupils
        assert settled(reporting, total) == {"ok": total, "duplicate": 0}


def test_with_a_batch_of_one_each_waiting_message_is_committed_on_its_own(system: Any) -> None:
    identification = system.service("identification")
    reporting = system.service("reporting", PUMPURS_INBOX_BATCH="1")
    with running(identification, reporting):
        total = piled_up_and_let_go(system, identification)

        assert commits(reporting, total) == {"commits": total, "alone": total, "events": total}
        assert settled(reporting, total) == {"ok": total, "duplicate": 0}


def test_waiting_messages_another_replica_applied_first_are_duplicates_and_no_error(
    system: Any,
) -> None:
    """Another replica applied the first of the waiting messages meanwhile: their tracking
    records refuse the commit of any batch holding them, the messages are then applied one
    by one, those count as duplicates, and every later one is journalled once."""
    identification, reporting = system.service("identification"), system.service("reporting")
    with running(identification, reporting):
        teacher = Client(identification.url, system.token("teacher", school=SCHOOL))
        register_flagged(teacher)
        wait_until(lambda: len(journalled(system)) == EVENTS_A_PUPIL, timeout=10)
        first = journalled(system)
        taken = [first[-1] + n for n in (1, 2, 3)]
        with reporting_held(system.stores, replica_applied=taken):
            for _ in range(3):
                register_flagged(teacher)
            wait_until(lambda: waiting(system) >= 3 * EVENTS_A_PUPIL, timeout=30, interval=0.5)
        total = 4 * EVENTS_A_PUPIL
        ours = [n for n in range(1, total + 1) if n not in taken]
        wait_until(lambda: journalled(system) == ours, timeout=20)

        assert settled(reporting, total) == {"ok": len(ours), "duplicate": len(taken)}
        logged = reporting.log_path.read_text(errors="replace").splitlines()
        assert [line for line in logged if " ERROR " in line] == []


def test_a_consumer_started_later_pulls_what_it_missed_a_batch_a_commit(system: Any) -> None:
    """Reporting's queue did not exist yet while identification stored these events, so
    only its catch-up from identification's notification log can bring them."""
    identification, reporting = system.service("identification"), system.service("reporting")
    with running(identification):
        teacher = Client(identification.url, system.token("teacher", school=SCHOOL))
        for _ in range(5):
            register_flagged(teacher)
        total = 5 * EVENTS_A_PUPIL
        with running(reporting):
            wait_until(lambda: len(journalled(system)) == total, timeout=30)

            assert journalled(system) == list(range(journalled(system)[0], total + 1))
            done = commits(reporting, total)
            assert done["events"] == total
            assert done["commits"] < total
            assert settled(reporting, total, ("caught_up", "ok")) == {
                "caught_up": total,
                "ok": 0,
            }
