"""The first slice across two services, with a real broker and the store under test."""

from __future__ import annotations

import itertools
import json
import threading
import time
from typing import Any

import amqp
import pytest
from kombu import Connection

from shared.deadletters import list_dead_letters, replay_dead_letters
from shared.testing import (
    Client,
    ServiceProcess,
    broker_script,
    restart_broker,
    running,
    wait_until,
)
from shared.topology import EVENTS_EXCHANGE

SCHOOL = "daugavpils-10-vsk"
OTHER_SCHOOL = "daugavpils-12-vsk"
_codes = itertools.count(1)  # new-format personal codes, one per pupil


def register_flagged(client: Client, school: str = SCHOOL) -> str:
    answer = client.post(
        "/pupils",
        {
            "school_id": school,
            "grade": 7,
            "gender": "F",
            "given_name": "Anna",
            "family_name": "Bērziņa",
            "personal_code": f"32{next(_codes):09d}",
            "birth_date": "2008-03-01",
        },
    )
    assert answer.status_code == 201, answer.text
    pupil_id = answer.json()["pupil_id"]
    flagged = client.post(
        f"/pupils/{pupil_id}/risk-signs",
        {
            "code": "learning.absences",
            "observed_on": "2019-10-01",
            "evidence": "25 unexcused lessons",
            "expected_version": 1,
        },
    )
    assert flagged.status_code == 201, flagged.text
    return str(pupil_id)


def at_risk_ids(client: Client) -> set[str]:
    answer = client.get("/pupils-at-risk", params={"school_id": SCHOOL})
    assert answer.status_code == 200, answer.text
    return {item["pupil_id"] for item in answer.json()["items"]}


def applied_events(system: Any) -> dict[str, int]:
    rows = system.stores.query("planning", "SELECT pupil_id, applied_events FROM planning_pupils")
    return {row["pupil_id"]: row["applied_events"] for row in rows}


@pytest.fixture
def slice_(system: Any) -> Any:
    identification = system.service("identification")
    planning = system.service("planning")
    with running(identification, planning):
        teacher = system.token("teacher", school=SCHOOL)
        yield (
            identification,
            planning,
            Client(identification.url, teacher),
            Client(planning.url, teacher),
        )


def test_a_flagged_pupil_shows_in_planning_within_two_seconds(slice_: Any) -> None:
    _, _, identification, planning = slice_
    pupil_id = register_flagged(identification)
    started = time.monotonic()
    wait_until(lambda: pupil_id in at_risk_ids(planning), timeout=2.0)
    assert time.monotonic() - started < 2.0


def test_planning_killed_while_200_pupils_are_flagged_gets_each_exactly_once(
    system: Any, slice_: Any
) -> None:
    _, planning_proc, identification, planning = slice_
    pupils: list[str] = []
    for i in range(200):
        if i == 60:
            planning_proc.kill()
        pupils.append(register_flagged(identification))
    planning_proc.start()
    wait_until(lambda: at_risk_ids(planning) >= set(pupils), timeout=60)
    # Each pupil had three events (registered, sign recorded, flagged): each applied once.
    counts = applied_events(system)
    assert {counts[p] for p in pupils} == {3}
    assert len(counts) == 200
    # Every message was acknowledged, none left hanging (the broker's figures lag by
    # its statistics interval, five seconds).
    wait_until(lambda: queue_settled(system, "planning.from.identification"), 30, interval=0.5)


def queue_settled(system: Any, queue: str) -> bool:
    figures = system.broker.queue(queue)
    return figures.get("messages") == 0 and figures.get("messages_unacknowledged") == 0


def test_broker_killed_and_restarted_halfway_loses_and_doubles_nothing(
    system: Any, slice_: Any
) -> None:
    import os

    _, _, identification, planning = slice_
    pupils = [register_flagged(identification) for _ in range(100)]
    outage = threading.Thread(target=restart_broker, args=(os.environ, 1.0))
    outage.start()
    # Commands keep being accepted while the broker is away: they only touch the store.
    pupils += [register_flagged(identification) for _ in range(100)]
    outage.join()
    wait_until(lambda: at_risk_ids(planning) >= set(pupils), timeout=90, interval=0.5)
    counts = applied_events(system)
    assert {counts[p] for p in pupils} == {3}
    assert len(counts) == 200


def test_a_service_without_its_broker_is_not_ready_and_says_why(slice_: Any) -> None:
    import os

    identification = Client(slice_[0].url, None)
    assert identification.get("/health/ready").status_code == 200
    broker_script(os.environ, "kill")
    try:
        wait_until(lambda: identification.get("/health/ready").status_code == 503, 10, 0.1)
        answer = identification.get("/health/ready").json()
    finally:
        broker_script(os.environ, "start")
    assert answer["error"]["code"] == "not_ready"
    assert answer["error"]["details"] == {
        "consumers": "works",
        "store": "works",
        "broker": "does not answer",
    }
    wait_until(lambda: identification.get("/health/ready").status_code == 200, 30, 0.2)


def test_a_changed_delivery_limit_takes_effect_and_what_was_queued_still_arrives(
    system: Any,
) -> None:
    queue = "planning.from.identification"
    identification, planning = system.service("identification"), system.service("planning")
    teacher = system.token("teacher", school=SCHOOL)
    pupils = Client(identification.url, teacher)
    with running(identification, planning):
        first = register_flagged(pupils)
        wait_until(lambda: first in at_risk_ids(Client(planning.url, teacher)), timeout=10)
        planning.stop()
        queued = register_flagged(pupils)
        wait_until(lambda: _messages_in(system.broker.uri, queue) == 3, timeout=10)
        raised = system.service("planning", PUMPURS_DELIVERY_LIMIT="7")
        with running(raised):
            later = register_flagged(pupils)
            plans = Client(raised.url, teacher)
            wait_until(lambda: at_risk_ids(plans) >= {first, queued, later}, timeout=30)
    assert system.broker.queue(queue)["arguments"]["x-delivery-limit"] == 7
    counts = applied_events(system)
    assert [counts[p] for p in (first, queued, later)] == [3, 3, 3]
    assert "queue planning.from.identification had other arguments" in raised.log_tail(200)


def _messages_in(uri: str, queue: str) -> int:
    with Connection(uri, connect_timeout=5) as conn:
        return int(conn.channel().queue_declare(queue, passive=True).message_count)


def test_planning_whose_last_commits_were_lost_catches_them_up_from_identification(
    system: Any, slice_: Any
) -> None:
    """A consumer's inbox commits do not wait for the disk, so a power cut may take the
    last of them back after their messages were acknowledged: the source still has them."""
    _, planning_proc, identification, planning = slice_
    before = [register_flagged(identification) for _ in range(10)]
    wait_until(lambda: at_risk_ids(planning) >= set(before), timeout=10)
    planning_proc.stop()
    restore = system.stores.copy("planning")
    planning_proc.start()
    lost = [register_flagged(identification) for _ in range(20)]
    wait_until(lambda: at_risk_ids(planning) >= set(lost), timeout=10)
    planning_proc.kill()
    restore()
    assert not set(lost) & set(applied_events(system))  # the commits are gone
    planning_proc.start()
    wait_until(lambda: at_risk_ids(planning) >= set(lost), timeout=30, interval=0.2)
    counts = applied_events(system)
    assert [counts[p] for p in before + lost] == [3] * 30


def _publish(uri: str, body: bytes, routing_key: str) -> None:
    with Connection(uri) as conn:
        conn.connect()
        channel = conn.connection.channel()
        channel.confirm_select()
        channel.basic_publish_confirm(
            amqp.Message(body, content_type="application/json", delivery_mode=2),
            EVENTS_EXCHANGE,
            routing_key,
        )


def _last_envelope(identification: ServiceProcess) -> dict[str, Any]:
    from nameko.standalone.rpc import ClusterRpcProxy

    with ClusterRpcProxy({"AMQP_URI": identification.operator_amqp_uri}, timeout=10) as rpc:
        answer = rpc.identification.notifications(after=0, limit=1000)
    return dict(answer["events"][-1])


def test_a_message_published_twice_by_hand_has_one_effect(system: Any, slice_: Any) -> None:
    identification_proc, planning_proc, identification, planning = slice_
    pupil_id = register_flagged(identification)
    wait_until(lambda: pupil_id in at_risk_ids(planning), timeout=5)
    envelope = _last_envelope(identification_proc)
    body = json.dumps(envelope).encode()
    routing_key = f"identification.{envelope['event_type']}"
    for _ in range(2):
        _publish(system.broker.uri, body, routing_key)
    wait_until(
        lambda: (
            planning_proc.metric(
                "pumpurs_events_consumed_total", source="identification", outcome="duplicate"
            )
            >= 2
        ),
        timeout=10,
    )
    assert applied_events(system)[pupil_id] == 3


def test_a_message_another_replica_applied_first_is_a_duplicate_and_no_error(
    system: Any, slice_: Any
) -> None:
    """Replicas on one store race for a message: one pulls it to fill a gap while the queue
    hands it to the other, or a commit went through but a database restart lost its answer.
    The loser's commit is refused by the winner's tracking record. That is the inbox doing
    its work: a duplicate in the metrics and a warning in the log, not an error."""
    identification_proc, planning_proc, identification, planning = slice_
    first = register_flagged(identification)
    wait_until(lambda: first in at_risk_ids(planning), timeout=5)
    applied_first = _last_envelope(identification_proc)["notification_id"]
    table = system.stores.tracking_table("planning")
    # What the other replica's commit of the next event leaves behind.
    system.stores.write(
        "planning", f"INSERT INTO {table} VALUES (?, ?)", ("identification", applied_first + 1)
    )
    register_flagged(identification)  # its first event is the one raced for
    after = register_flagged(identification)
    wait_until(lambda: after in at_risk_ids(planning), timeout=10)
    duplicates = planning_proc.metric(
        "pumpurs_events_consumed_total", source="identification", outcome="duplicate"
    )
    assert duplicates == 1
    logged = planning_proc.log_path.read_text(errors="replace").splitlines()
    assert [line for line in logged if " ERROR " in line] == []
    assert any("(expected) error handling worker" in line for line in logged)


def test_malformed_messages_are_parked_and_later_ones_keep_flowing(
    system: Any, slice_: Any
) -> None:
    _, planning_proc, identification, planning = slice_
    envelope = {
        "event_id": "00000000-0000-0000-0000-000000000001",
        "event_type": "pupil_flagged_at_risk",
        "schema_version": 1,
        "source": "identification",
        "notification_id": 999_999,
        "previous_id": 999_998,  # a gap the source can never fill
        "occurred_at": "2019-10-01T08:00:00+00:00",
        "aggregate_id": "00000000-0000-0000-0000-000000000002",
        "aggregate_version": 1,
        "actor": "tester",
        "payload": {"school_id": SCHOOL},
    }
    _publish(system.broker.uri, b"{not json", "identification.garbage")
    _publish(
        system.broker.uri,
        json.dumps({**envelope, "schema_version": 7}).encode(),
        "identification.pupil_flagged_at_risk",
    )
    _publish(
        system.broker.uri, json.dumps(envelope).encode(), "identification.pupil_flagged_at_risk"
    )
    pupil_id = register_flagged(identification)
    wait_until(lambda: pupil_id in at_risk_ids(planning), timeout=10)
    wait_until(
        lambda: len(list_dead_letters(system.broker.uri, "planning")) == 3, timeout=60, interval=0.5
    )
    parked = list_dead_letters(system.broker.uri, "planning")
    assert sorted(str(row.get("reason")) for row in parked) == [
        "delivery_limit",
        "rejected",
        "rejected",
    ]
    # Listing leaves them parked, for an operator to replay.
    assert len(list_dead_letters(system.broker.uri, "planning")) == 3
    dead = planning_proc.metric(
        "pumpurs_events_consumed_total", source="identification", outcome="dead_lettered"
    )
    assert dead == 3
    retried = planning_proc.metric(
        "pumpurs_events_consumed_total", source="identification", outcome="retried"
    )
    assert retried >= 1  # the unfillable gap was retried up to the delivery limit first
    # The forged id (999,999) never counted towards the source's head: the lag an operator
    # watches is back to nothing once the real events are applied, not pinned near a million.
    wait_until(
        lambda: planning_proc.metric("pumpurs_consumer_lag_events", source="identification") == 0,
        timeout=10,
    )

    # An operator replays them: they go back to their queue and, still bad, are parked again.
    assert replay_dead_letters(system.broker.uri, "planning") == 3
    wait_until(
        lambda: (
            planning_proc.metric(
                "pumpurs_events_consumed_total", source="identification", outcome="dead_lettered"
            )
            == 6
        ),
        timeout=60,
        interval=0.5,
    )
    wait_until(
        lambda: len(list_dead_letters(system.broker.uri, "planning")) == 3, timeout=30, interval=0.5
    )
