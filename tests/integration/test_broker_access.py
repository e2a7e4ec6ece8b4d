"""Each service's own broker user may do what the service does and nothing more.

Every other integration test runs the services under these users, which shows that what
they need is allowed; these show that what would let one service pose as another, or read
what is not its business, is refused by the broker itself."""

from __future__ import annotations

import uuid
from typing import Any

import amqp
import pytest
from kombu import Connection, Exchange, Queue

from shared.brokeraccess import SERVICES
from shared.rpc import caller_proxy
from shared.testing import Client, running, wait_until
from shared.topology import EVENTS_EXCHANGE, RPC_EXCHANGE, SHARED_EXCHANGES
from tests.integration.test_slice import SCHOOL, at_risk_ids, register_flagged

AUDITOR = {"sub": "someone", "role": "auditor"}


@pytest.fixture
def planning(system: Any) -> Any:
    with running(system.service("identification"), system.service("planning")) as procs:
        yield procs


def publish_event(uri: str, routing_key: str) -> None:
    with Connection(uri, connect_timeout=5) as conn:
        conn.connect()
        channel = conn.connection.channel()
        channel.confirm_select()
        message = amqp.Message(b"{}", content_type="application/json", delivery_mode=2)
        channel.basic_publish_confirm(message, EVENTS_EXCHANGE, routing_key)


def bind_to_events(uri: str, queue: str, binding_key: str) -> None:
    events = Exchange(EVENTS_EXCHANGE, "topic", durable=True)
    with Connection(uri, connect_timeout=5) as conn:
        Queue(queue, exchange=events, routing_key=binding_key, durable=True)(
            conn.channel()
        ).declare()


def plan_history(uri: str, caller: str) -> dict[str, Any]:
    with caller_proxy({"AMQP_URI": uri}, caller, timeout=10) as rpc:
        return dict(rpc.planning.audit_plan_history(str(uuid.uuid4()), AUDITOR))


def test_a_service_cannot_publish_events_in_another_services_name(system: Any) -> None:
    with Connection(system.broker.uri, connect_timeout=5) as conn:  # as a relay would
        Exchange(EVENTS_EXCHANGE, "topic", durable=True)(conn.channel()).declare()
    with pytest.raises(amqp.exceptions.AccessRefused):
        publish_event(system.broker.uri_for("planning"), "identification.pupil_flagged_at_risk")
    with pytest.raises(amqp.exceptions.AccessRefused):
        publish_event(system.broker.uri_for("reporting"), "planning.plan_fully_approved")


def test_a_service_cannot_subscribe_to_events_it_does_not_consume(system: Any) -> None:
    # Provisioning consumes identification's and planning's events; identification none.
    with pytest.raises(amqp.exceptions.AccessRefused):
        bind_to_events(
            system.broker.uri_for("provisioning"),
            "provisioning.from.provisioning",
            "provisioning.#",
        )
    with pytest.raises(amqp.exceptions.AccessRefused):
        bind_to_events(
            system.broker.uri_for("identification"), "identification.from.planning", "planning.#"
        )
    with pytest.raises(amqp.exceptions.AccessRefused):  # nor under another service's name
        bind_to_events(
            system.broker.uri_for("provisioning"), "planning.from.provisioning", "planning.#"
        )


def test_only_reporting_may_ask_planning_for_a_plans_history(system: Any, planning: Any) -> None:
    """The RPC answers for the principal the caller names, so the broker must keep the
    other services (and anyone holding their credentials) from calling it."""
    answer = plan_history(system.broker.uri_for("reporting"), "reporting")
    assert answer["status"] == 404  # asked and answered: no such plan
    for caller in ("identification", "provisioning"):
        with pytest.raises(amqp.exceptions.AccessRefused):
            plan_history(system.broker.uri_for(caller), caller)


def test_no_service_may_delete_or_redeclare_the_shared_exchanges(
    system: Any, planning: Any
) -> None:
    """A user that may declare an exchange may delete it, and every service's bindings with
    it. The services run under their users all the same (the fixture), and events flow."""
    for service in SERVICES:
        uri = system.broker.uri_for(service)
        for name in SHARED_EXCHANGES:
            with Connection(uri, connect_timeout=5) as conn:
                with pytest.raises(amqp.exceptions.AccessRefused):
                    conn.channel().exchange_delete(name)
                with pytest.raises(amqp.exceptions.AccessRefused):
                    conn.channel().exchange_declare(name, "topic", durable=True)
    teacher = system.token("teacher", school=SCHOOL)
    identification, planning_ = planning
    flagged = register_flagged(Client(identification.url, teacher))
    wait_until(lambda: flagged in at_risk_ids(Client(planning_.url, teacher)), timeout=30)


def test_a_service_without_its_exchanges_says_who_must_declare_them(system: Any) -> None:
    """A vhost the broker-users step never saw: a service's user cannot start there."""
    system.broker.uri_for("identification")  # its user, and the shared exchanges
    with Connection(system.broker.uri, connect_timeout=5) as conn:
        conn.channel().exchange_delete(RPC_EXCHANGE)
    identification = system.service("identification").start(wait=False)
    try:
        wait_until(lambda: identification.proc.poll() is not None, timeout=60)
    finally:
        identification.kill()
    assert "run `pumpurs broker-users apply`" in identification.log_tail(200)


def test_a_service_under_its_own_user_replaces_a_queue_of_the_old_topology(system: Any) -> None:
    """An upgrade from when the services shared one dead-letter exchange: a queue's
    arguments cannot change, so planning, as its own user, deletes the old consumer queue,
    declares its own and catches up from identification's log what the old one held."""
    old = Queue(
        "planning.from.identification",
        exchange=Exchange(EVENTS_EXCHANGE, "topic", durable=True),
        routing_key="identification.#",
        durable=True,
        queue_arguments={
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": "pumpurs.dead-letters",
        },
    )
    with Connection(system.broker.uri, connect_timeout=5) as conn:
        old(conn.channel()).declare()
    teacher = system.token("teacher", school=SCHOOL)
    identification, planning = system.service("identification"), system.service("planning")
    with running(identification):
        queued = register_flagged(Client(identification.url, teacher))
        with running(planning):
            wait_until(lambda: queued in at_risk_ids(Client(planning.url, teacher)), timeout=30)
    arguments = system.broker.queue("planning.from.identification")["arguments"]
    assert arguments["x-dead-letter-exchange"] == "pumpurs.dead-letters.planning"


def test_replaying_dead_letters_as_a_services_user_says_why_and_keeps_them_parked(
    system: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pod's own broker user may list its dead letters but not publish into queues."""
    from shared.cli import main
    from shared.deadletters import list_dead_letters
    from shared.topology import dead_letter_queue

    parked = amqp.Message(
        b'{"source": "identification", "notification_id": 7}',
        delivery_mode=2,
        application_headers={"x-death": [{"queue": "planning.from.identification"}]},
    )
    with Connection(system.broker.uri, connect_timeout=5) as conn:
        dead_letter_queue("planning")(conn.channel()).declare()
        conn.connect()
        channel = conn.connection.channel()
        channel.confirm_select()
        channel.basic_publish_confirm(parked, "", "planning.dead-letters")
    monkeypatch.setenv("AMQP_URI", system.broker.uri_for("planning"))
    assert main(["dead-letters", "replay", "--service", "planning"]) == 2
    error = capsys.readouterr().err
    assert "administrator's user" in error and "nothing was replayed" in error
    assert "amqp://" not in error  # the URI holds the password
    rows = list_dead_letters(system.broker.uri, "planning")
    assert [row["notification_id"] for row in rows] == [7]
