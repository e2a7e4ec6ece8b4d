"""The fault suite's short profile on the test run's broker and store.

Clients drive pupils and plans while the proxy delays, black-holes and resets the
services' broker connections, the broker is killed and restarted, a consumer is
SIGKILLed mid-stream and (on PostgreSQL) the database is stopped for 10 s. Nothing
acknowledged may be lost, nothing delivered twice, and reporting's read models must
equal a rebuild from its journal.
"""

from __future__ import annotations

import os
from pathlib import Path

from chaos.faults import FaultRun
from shared.testing import Broker, Stores


def test_faults_lose_and_double_nothing(
    broker: Broker, stores: Stores, keys_dir: Path, tmp_path: Path
) -> None:
    report = FaultRun(os.environ, broker, stores, keys_dir, tmp_path, "short").run()
    print(report.table())

    expected_kinds = {"proxy_delay", "proxy_drop", "proxy_reset", "broker_restart", "consumer_kill"}
    if stores.kind == "postgres":
        expected_kinds.add("postgres_stop")
    assert set(report.injected) == expected_kinds
    assert all(count > 0 for count in report.injected.values())
    assert report.outcomes["ack"] > 0
    assert (report.verdict.lost, report.verdict.duplicated) == (0, 0), report.table()
    assert report.verdict.failures == [], report.table()
    assert report.settled_seconds is not None, report.table()
    assert report.rebuild_unchanged, report.table()
