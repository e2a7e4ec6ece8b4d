"""The relay's part in `/health/ready` while it drains a backlog.

Readiness reports the broker as working while the relay's connection is known to work. A
relay that comes back with a backlog (after a broker outage, or a replica taking over the
lease) publishes full batch after full batch, and its idle-time ping waits until the
backlog is gone: each batch the broker confirms must count, or Kubernetes takes the pod out
of service for as long as it catches up.
"""

from __future__ import annotations

import os

from services.identification.application import IdentificationApplication
from shared.outbox import Relay
from shared.store import store_env
from shared.testing import Broker, Stores
from tests.pupils import register


def test_a_relay_draining_a_backlog_counts_as_connected(broker: Broker, stores: Stores) -> None:
    environ = {**os.environ, **stores.env(["identification"])}
    app = IdentificationApplication(
        store_env("identification", environ["PUMPURS_DATA_DIR"], environ), master=os.urandom(32)
    )
    try:
        for n in range(3):  # three events: a backlog of three batches of one
            register(app, personal_code=f"320000-0000{n}")
        relay = Relay(app, broker.uri, batch_size=1)
        relay.create_table()
        relay.publisher.connect()
        try:
            assert relay.connected is False  # nothing proven yet, as after an outage
            assert relay.publish_pending() == 1  # a full batch: the backlog goes on
            assert relay.connected is True
        finally:
            relay.publisher.close()
    finally:
        app.close()
