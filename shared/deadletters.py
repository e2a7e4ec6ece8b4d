"""Operators' view of parked messages: list them (metadata only) and replay them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import amqp
from kombu import Connection

from shared.topology import dead_letter_queue_name

_KEPT_PROPERTIES = ("content_type", "content_encoding", "message_id", "type", "timestamp")


def _describe(message: Any) -> dict[str, Any]:
    headers = message.headers or {}
    deaths = headers.get("x-death") or [{}]
    row: dict[str, Any] = {
        "queue": deaths[0].get("queue"),
        "reason": deaths[0].get("reason"),
        "count": deaths[0].get("count"),
        "message_id": message.properties.get("message_id"),
        "type": message.properties.get("type"),
    }
    try:
        body = json.loads(message.body)
        row.update(
            source=body.get("source"),
            notification_id=body.get("notification_id"),
            event_type=body.get("event_type"),
        )
    except (ValueError, TypeError, AttributeError):
        row["undecodable"] = True
    return row


def _drain(conn: Connection, service: str, limit: int | None) -> Iterator[Any]:
    channel = conn.channel()
    queue = dead_letter_queue_name(service)
    taken = 0
    while limit is None or taken < limit:
        message = channel.basic_get(queue, no_ack=False)
        if message is None:
            return
        taken += 1
        yield channel, message


def list_dead_letters(amqp_uri: str, service: str) -> list[dict[str, Any]]:
    """Every parked message of a service; they stay parked (never acked here)."""
    with Connection(amqp_uri, connect_timeout=5) as conn:
        conn.connect()
        rows = [_describe(message) for _channel, message in _drain(conn, service, None)]
        # Closing the connection returns every unacknowledged message to the queue.
    return rows


def replay_dead_letters(amqp_uri: str, service: str, limit: int | None = None) -> int:
    """Send parked messages back to the queue they died in, confirmed, then drop them here."""
    replayed = 0
    with Connection(amqp_uri, connect_timeout=5) as conn:
        conn.connect()
        publish_channel = conn.connection.channel()
        # Only what is parked now: a replayed message that fails again comes back here,
        # and must wait for the next replay instead of looping.
        parked = publish_channel.queue_declare(dead_letter_queue_name(service), passive=True)
        limit = parked.message_count if limit is None else min(limit, parked.message_count)
        publish_channel.confirm_select()
        for channel, message in _drain(conn, service, limit):
            deaths = (message.headers or {}).get("x-death") or [{}]
            queue = deaths[0].get("queue")
            if not queue:
                channel.basic_reject(message.delivery_tag, requeue=True)
                continue
            headers = {k: v for k, v in (message.headers or {}).items() if not k.startswith("x-")}
            properties = {
                key: value for key, value in message.properties.items() if key in _KEPT_PROPERTIES
            }
            outgoing = amqp.Message(
                message.body, delivery_mode=2, application_headers=headers, **properties
            )
            publish_channel.basic_publish_confirm(outgoing, "", queue)
            channel.basic_ack(message.delivery_tag)
            replayed += 1
    return replayed
