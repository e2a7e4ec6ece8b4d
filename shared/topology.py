"""The broker topology: the events exchange, consumer queues and dead letters."""

from __future__ import annotations

from typing import Any

from amqp.exceptions import PreconditionFailed
from kombu import Exchange, Queue

EVENTS_EXCHANGE = "pumpurs.events"


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
        exchange=Exchange(EVENTS_EXCHANGE, "topic", durable=True),
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
