"""The store check behind ``/health/ready`` (``ServiceApplication.check_store``) answers in
its time whatever the store is doing: the readiness probe gives up after 3 s, and an answer
that comes later tells the operator nothing."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from services.planning.application import PlanningApplication
from shared.store import POSTGRES, store_env
from shared.testing import Stores, postgres_conninfo, wait_until

CHECK_SECONDS = 1.0
CHECKS = 8  # more than the pool holds (eventsourcing's default is 5): it runs dry
HOLD_SECONDS = 20  # longer than the checks take, shorter than a hang


@pytest.fixture
def app(stores: Stores) -> Iterator[Any]:
    environ = {**os.environ, **stores.env(["planning"])}
    application = PlanningApplication(store_env("planning", environ["PUMPURS_DATA_DIR"], environ))
    yield application
    application.close()


def check(app: Any) -> tuple[bool, float]:
    """Whether the store answered, and how long the check took."""
    started = time.monotonic()
    try:
        app.check_store(CHECK_SECONDS)
    except Exception:
        return False, time.monotonic() - started
    return True, time.monotonic() - started


@contextlib.contextmanager
def events_table_locked(stores: Stores, app: Any) -> Iterator[None]:
    """As a migration would: nothing may even read the events table until it is done."""
    if app.dialect != POSTGRES:
        with stores.outage("planning"):  # SQLite: another writer's lock
            yield
        return
    import psycopg

    with psycopg.connect(postgres_conninfo(os.environ, stores.database("planning"))) as conn:
        # Held no longer than this, so that a check that waits for the lock fails the test
        # instead of hanging it.
        conn.execute(f"SET idle_in_transaction_session_timeout = '{HOLD_SECONDS}s'")
        conn.execute(f"LOCK TABLE {app.events_table} IN ACCESS EXCLUSIVE MODE")
        yield


def outage(stores: Stores, app: Any) -> contextlib.AbstractContextManager[None]:
    """PostgreSQL drops the service's connections and refuses new ones: the pool would
    wait POSTGRES_CONNECT_TIMEOUT (10 s) for one, and eventsourcing's reads try ten times."""
    return stores.outage("planning")


@pytest.mark.parametrize("holding", [outage, events_table_locked])
def test_a_store_that_does_not_answer_is_reported_within_the_check_time(
    app: Any, stores: Stores, holding: Callable[..., Any]
) -> None:
    assert check(app)[0]
    checks: list[tuple[bool, float]] = []
    with holding(stores, app):
        while len(checks) < CHECKS and not (checks and checks[-1][1] > CHECK_SECONDS + 1.0):
            checks.append(check(app))
    if app.dialect == POSTGRES:
        assert not any(answered for answered, _ in checks)
        assert max(took for _, took in checks) < CHECK_SECONDS + 1.0, checks
    else:
        # A writer holding SQLite's lock holds no reader up (WAL): still ready.
        assert all(answered for answered, _ in checks)
    wait_until(lambda: check(app)[0], timeout=15, interval=0.2)
