"""A consumer that finds a gap while the source is away holds the message, not parks it,
and its operators still see what is parked meanwhile."""

from __future__ import annotations

import time
from typing import Any

from kombu import Connection

from shared.deadletters import list_dead_letters
from shared.testing import Client, running, wait_until
from shared.topology import consumer_queue
from tests.integration.test_slice import SCHOOL, _publish, at_risk_ids, register_flagged

DELIVERY_LIMIT = 1
CATCH_UP_TIMEOUT = 1
# With the source away, each delivery's call for the missing events times out after a
# second: without holding, the delivery limit's tries would be used up in a few seconds.
AWAY_SECONDS = 10.0


def test_a_gap_found_while_the_source_is_down_is_filled_once_it_is_back(system: Any) -> None:
    identification = system.service("identification")
    planning = system.service(
        "planning",
        PUMPURS_DELIVERY_LIMIT=str(DELIVERY_LIMIT),
        PUMPURS_CATCH_UP_TIMEOUT=str(CATCH_UP_TIMEOUT),
    )
    teacher = system.token("teacher", school=SCHOOL)
    pupils, plans = Client(identification.url, teacher), Client(planning.url, teacher)
    with running(identification, planning):
        first = register_flagged(pupils)
        wait_until(lambda: first in at_risk_ids(plans), timeout=10)
        planning.stop()
        lost = register_flagged(pupils)  # its messages never reach planning
        purge(system.broker.uri, consumer_queue("planning", "identification", DELIVERY_LIMIT))
        after = register_flagged(pupils)  # its first message shows the gap
        identification.stop()

        planning.start()
        wait_until(
            lambda: (
                planning.metric(
                    "pumpurs_events_consumed_total", source="identification", outcome="held"
                )
                >= 1
            ),
            timeout=30,
            interval=0.5,
        )
        # Something else is parked meanwhile: the gauge must show it, though the inbox
        # that looks at the dead letters (identification's) cannot catch up.
        _publish(system.broker.uri, b"{not json", "provisioning.garbage")
        wait_until(lambda: planning.metric("pumpurs_dead_letters_messages") == 1, timeout=15)
        time.sleep(AWAY_SECONDS)
        assert parked_from_identification(system) == []

        identification.start()
        wait_until(lambda: {lost, after} <= at_risk_ids(plans), timeout=30, interval=0.5)
        assert parked_from_identification(system) == []
        parked = planning.metric(
            "pumpurs_events_consumed_total", source="identification", outcome="dead_lettered"
        )
        assert parked == 0


def parked_from_identification(system: Any) -> list[Any]:
    parked = list_dead_letters(system.broker.uri, "planning")
    return [row for row in parked if row["queue"] == "planning.from.identification"]


def purge(uri: str, queue: Any) -> None:
    with Connection(uri, connect_timeout=5) as conn:
        queue(conn.channel()).purge()
