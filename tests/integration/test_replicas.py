"""Two replicas of a service on one store: one relay publishes, consumers keep each source's order.

Identification and planning each run twice on the same database (and the same
vhost). Commands go to both identification replicas alternately. A plain probe
queue sees everything identification publishes.
"""

from __future__ import annotations

import json
import time
from typing import Any

from kombu import Connection, Exchange, Queue

from shared.testing import Client, ServiceProcess, running, wait_until
from shared.topology import EVENTS_EXCHANGE
from tests.integration.test_slice import SCHOOL, at_risk_ids, register_flagged

EVENTS_A_PUPIL = 3  # registered, risk sign recorded, flagged at risk


def declare_probe(uri: str) -> Queue:
    probe = Queue(
        "probe",
        exchange=Exchange(EVENTS_EXCHANGE, "topic", durable=True),
        routing_key="identification.#",
    )
    with Connection(uri, connect_timeout=5) as conn:
        probe(conn.channel()).declare()
    return probe


def published_ids(uri: str, at_least: int, timeout: float = 20.0) -> list[int]:
    """Notification ids in the order the probe received them (waits for ``at_least``)."""
    ids: list[int] = []
    deadline = time.monotonic() + timeout
    with Connection(uri, connect_timeout=5) as conn:
        channel = conn.channel()
        while time.monotonic() < deadline:
            message = channel.basic_get("probe", no_ack=True)
            if message is None:
                if len(ids) >= at_least:
                    break
                time.sleep(0.2)
                continue
            ids.append(json.loads(message.body)["notification_id"])
    return ids


def applied_per_pupil(system: Any) -> dict[str, int]:
    rows = system.stores.query("planning", "SELECT pupil_id, applied_events FROM planning_pupils")
    return {row["pupil_id"]: row["applied_events"] for row in rows}


def active_relays(replicas: tuple[ServiceProcess, ...]) -> list[int]:
    return [
        int(replica.metric("pumpurs_outbox_relay_active", service=replica.name))
        for replica in replicas
    ]


def test_two_replicas_publish_each_event_once_in_order_and_consumers_apply_it_once(
    system: Any,
) -> None:
    declare_probe(system.broker.uri)
    identification = (system.service("identification"), system.service("identification"))
    planning = (system.service("planning"), system.service("planning"))
    with running(*identification, *planning):
        teachers = [Client(r.url, system.token("teacher", school=SCHOOL)) for r in identification]
        reader = Client(planning[1].url, system.token("teacher", school=SCHOOL))
        pupils = {register_flagged(teachers[i % 2]) for i in range(20)}
        wait_until(lambda: at_risk_ids(reader) >= pupils, timeout=20)

        assert sorted(active_relays(identification)) == [0, 1], "exactly one relay publishes"
        stored = 20 * EVENTS_A_PUPIL
        assert published_ids(system.broker.uri, stored) == list(range(1, stored + 1))
        assert applied_per_pupil(system) == dict.fromkeys(pupils, EVENTS_A_PUPIL)

        # The publishing replica and a planning replica die; the others take over.
        active = identification[active_relays(identification).index(1)]
        survivor = identification[1 - identification.index(active)]
        active.kill()
        planning[0].kill()
        later_teacher = teachers[identification.index(survivor)]
        later = {register_flagged(later_teacher) for _ in range(5)}
        wait_until(lambda: at_risk_ids(reader) >= pupils | later, timeout=30)

        assert active_relays((survivor,)) == [1]
        total = 25 * EVENTS_A_PUPIL
        after_takeover = published_ids(system.broker.uri, total - stored)
        # The new relay starts from the last recorded position, so it may repeat what
        # the dead one had published after recording; nothing is skipped or reordered.
        assert sorted(set(after_takeover)) == list(range(after_takeover[0], total + 1))
        assert after_takeover[0] <= stored + 1
        assert after_takeover == sorted(after_takeover)
        assert applied_per_pupil(system) == dict.fromkeys(pupils | later, EVENTS_A_PUPIL)
