"""The broker topology: the events exchange, consumer queues and dead letters."""

from __future__ import annotations

from typing import Any

from amqp.exceptions import AccessRefused, NotFound, PreconditionFailed
from kombu import Exchange, Queue

EVENTS_EXCHANGE = "pumpurs.events"
RPC_EXCHANGE = "nameko-rpc"  # nameko's default, which the services keep
# Declared by an administrator (``pumpurs broker-users apply``), never by a service: a
# user that may declare an exchange may also delete it (RabbitMQ's configure right), and
# deleting one of these would cut every service off.
SHARED_EXCHANGES = (EVENTS_EXCHANGE, RPC_EXCHANGE)


def shared_exchange(name: str) -> Exchange:
    """A shared exchange as the services bind to it and publish on it, never declaring it."""
    return Exchange(name, "topic", durable=True, no_declare=True)


def check_shared_exchanges(connection: Any) -> None:
    """Make sure the shared exchanges exist, with passive declares (which need no right).

    Where nobody declared them (a broker used with an administrator's user, as the
    benchmarks use theirs), declare them: that user may. A service's own user may not,
    and is told what to run instead."""
    for name in SHARED_EXCHANGES:
        try:
            with connection.channel() as channel:
                channel.exchange_declare(name, "topic", passive=True)
        except NotFound:  # the broker closed that channel
            try:
                with connection.channel() as channel:
                    channel.exchange_declare(name, "topic", durable=True, auto_delete=False)
            except AccessRefused:
                raise RuntimeError(
                    f"the broker has no exchange {name}, and this service's user may not"
                    " declare it: run `pumpurs broker-users apply` as the broker's"
                    " administrator"
                ) from None


def dead_letter_queue_name(service: str) -> str:
    return f"{service}.dead-letters"


def dead_letter_exchange_name(service: str) -> str:
    """Each service's own: declaring a queue that dead-letters to an exchange takes the
    right to publish there, and one shared exchange would let a service park messages in
    another's dead letters, which an operator may then replay into its inbox."""
    return f"pumpurs.dead-letters.{service}"


def consumer_queue(service: str, source: str, delivery_limit: int) -> Queue:
    return Queue(
        f"{service}.from.{source}",
        exchange=shared_exchange(EVENTS_EXCHANGE),
        routing_key=f"{source}.#",
        durable=True,
        auto_delete=False,
        queue_arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": delivery_limit,
            "x-dead-letter-exchange": dead_letter_exchange_name(service),
            "x-dead-letter-routing-key": service,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
            # Replicas all subscribe; the broker delivers to one at a time and fails
            # over to the next, so a source's events are applied in order without
            # replicas racing each other into gap fills.
            "x-single-active-consumer": True,
        },
    )


def dead_letter_queue(service: str) -> Queue:
    return Queue(
        dead_letter_queue_name(service),
        exchange=Exchange(dead_letter_exchange_name(service), "direct", durable=True),
        routing_key=service,
        durable=True,
        auto_delete=False,
        queue_arguments={"x-queue-type": "quorum"},
    )


def declare_replacing(connection: Any, queue: Queue) -> bool:
    """Declare ``queue``; one left with other arguments is deleted and declared anew.

    A queue's arguments cannot change, so without this a changed setting (say
    ``PUMPURS_DELIVERY_LIMIT``) failed every start with PRECONDITION_FAILED. Only for
    consumer queues: what they held is in the source's notification log, and the inbox
    catches it up from there. True when the queue was replaced."""
    try:
        queue(connection.channel()).declare()
        return False
    except PreconditionFailed:
        pass  # the broker closed that channel
    queue(connection.channel()).delete()
    queue(connection.channel()).declare()
    return True
