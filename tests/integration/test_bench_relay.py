"""`make bench` itself runs: its relay row, on a small backlog, against the test broker.

The figures are the benchmark's business and are not asserted here. What is asserted is
what someone running `make bench` would notice: the row completes, and every stored event
reached the sink queue, from the bare publisher and from the relay inside the service. From
the broker-users change until this test, the row failed at once on every fresh vhost and
nobody saw it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import relay

EVENTS = 300


@pytest.mark.store_free  # SQLite only, once per `make test`: the row is the same on both
def test_the_relay_benchmark_publishes_every_stored_event(
    tmp_path: Path, keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bench waits for an idle machine before each measurement; a test has no use for it.
    monkeypatch.setattr(relay, "settle", lambda: 0.0)

    result = relay.run("sqlite", EVENTS, 100, tmp_path, keys_dir)

    assert result["bare"]["queued"] == EVENTS
    assert result["relay"]["queued"] == EVENTS
    assert result["relay_in_service"]["queued"] == EVENTS
