"""The short load profile: a fixed rate of commands across the four services, fifteen seconds
(after a warm-up of one journey).

The same journeys as ``python -m chaos.load`` (register and flag a pupil, plan, approve at
every level, consult, order and deliver, resolve a sign), open loop, on the store under
test. What a user would notice is asserted: every command answered 2xx, the rate held
(answered within 3% of the schedule, so no backlog was left at the end), and afterwards
every consumer had applied every event its sources stored, reporting exactly once, and no
service logged an error.

The rate here is 20 commands/s on SQLite and 10 on PostgreSQL, not the issue's 100/s.
On the 2-core machine CI runs on, the whole system (four services, broker and this load)
used about 30 ms of CPU per command of the mix when it was measured (2026-11-28, other
sessions busy), and 100/s leaves 20 ms for all of it. 20/s held with no error on SQLite
while other sessions took 1.3 cores; on PostgreSQL under that load it reached 16/s, and
10/s held. The 100/s claim is checked by the five-minute run (``python -m chaos.load``),
which exits non-zero while it does not hold.

Memory is printed, not asserted. Over fifteen seconds a service's RSS still grows with what
it fills once and then keeps (planning's cache of up to 1,000 plans alone is about 4.6 MiB
of its 72), and 10% of 70 MiB is 7 MiB: a bound here would fail on filling caches rather
than on a leak, or be loosened until it could not fail. The growth
bound (< 10%) is asserted by the five-minute run. Latency is printed and never asserted
(timings belong in bench/ and the chaos output).
"""

from __future__ import annotations

from pathlib import Path

from chaos.load import MAX_LATE_SHARE, MIN_RATE_SHARE, default_warmup, drive, system, table
from shared.testing import Broker, Stores
from tests.conftest import STORE_KIND

# PostgreSQL's commits are round trips that cost the services' CPU: half the rate there.
RATE = {"sqlite": 20.0, "postgres": 10.0}[STORE_KIND]
SECONDS = 15.0


def test_a_sustained_rate_of_commands_across_the_services(
    broker: Broker, stores: Stores, keys_dir: Path, tmp_path: Path
) -> None:
    with system(broker, stores, keys_dir, tmp_path) as services:
        result = drive(services, stores, keys_dir, RATE, SECONDS, default_warmup(SECONDS, RATE))
    report = table(result)
    print(report)

    assert result.overall.errors == 0, report
    assert result.overall.count == int(RATE * SECONDS)
    assert result.overall.per_second >= MIN_RATE_SHARE * RATE, report
    assert result.late_starts <= MAX_LATE_SHARE * result.overall.count, report
    assert not any(result.lags.values()), report
    assert result.journalled_twice == 0, report
    assert not any(result.logged_errors.values()), report
