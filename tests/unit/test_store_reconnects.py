"""A PostgreSQL service is back within about a second of its database."""

from __future__ import annotations

import shared.store


def test_reconnection_attempts_stay_a_second_apart_however_long_the_outage() -> None:
    from psycopg_pool.base import AttemptWithBackoff

    assert shared.store.PostgresInboxRecorder  # choosing PostgreSQL sets the pool up
    attempt, now, waits = AttemptWithBackoff(timeout=300.0), 0.0, []
    while now < 120.0:  # two minutes of a database that does not answer
        attempt.update_delay(now)
        waits.append(attempt.delay)
        now += attempt.delay
    assert max(waits) <= 1.1  # the pool's jitter is 10%
    assert len(waits) >= 100
