"""A consumer whose store stops answering holds its messages instead of parking them."""

from __future__ import annotations

import time
from typing import Any

from shared.deadletters import list_dead_letters
from shared.testing import Client, running, wait_until
from tests.integration.test_slice import SCHOOL, at_risk_ids, register_flagged

DELIVERY_LIMIT = 1
# On SQLite each try waits a second for the lock, and the pupil brings three events:
# without holding, the delivery limit's tries would be used up in about six seconds.
# On PostgreSQL eventsourcing itself tries ten times before a call fails, so one try
# takes longer than the whole SQLite outage: there the test shows that real connection
# errors are recognised as an outage and the events arrive once the store is back.
OUTAGE_SECONDS = {"sqlite": 12.0, "postgres": 0.0}


def test_events_arriving_while_the_store_is_down_are_applied_once_it_answers(
    system: Any,
) -> None:
    identification = system.service("identification")
    planning = system.service(
        "planning",
        PUMPURS_DELIVERY_LIMIT=str(DELIVERY_LIMIT),
        SQLITE_LOCK_TIMEOUT="1",
        POSTGRES_CONNECT_TIMEOUT="1",
    )
    with running(identification, planning):
        teacher = system.token("teacher", school=SCHOOL)
        pupils, plans = Client(identification.url, teacher), Client(planning.url, teacher)
        first = register_flagged(pupils)
        wait_until(lambda: first in at_risk_ids(plans), timeout=10)

        with system.stores.outage("planning"):
            during = register_flagged(pupils)
            wait_until(
                lambda: (
                    planning.metric(
                        "pumpurs_events_consumed_total", source="identification", outcome="held"
                    )
                    >= 1
                ),
                timeout=60,
                interval=0.5,
            )
            time.sleep(OUTAGE_SECONDS[system.stores.kind])

        # Until PostgreSQL's pool has reconnected (within about a second) planning answers 503.
        wait_until(lambda: during in at_risk_once_answering(plans), timeout=60, interval=0.5)
        assert list_dead_letters(system.broker.uri, "planning") == []
        parked = planning.metric(
            "pumpurs_events_consumed_total", source="identification", outcome="dead_lettered"
        )
        assert parked == 0
        # Held, not failed: a warning line per try (shared.logs), never an error.
        logged = planning.log_path.read_text(errors="replace").splitlines()
        assert [line for line in logged if " ERROR " in line] == []


def at_risk_once_answering(plans: Client) -> set[str]:
    answer = plans.get("/pupils-at-risk", params={"school_id": SCHOOL})
    if answer.status_code == 503:
        return set()
    assert answer.status_code == 200, answer.text
    return {item["pupil_id"] for item in answer.json()["items"]}
