"""The outbox relay: every stored event, published in notification order, exactly as stored.

A command only saves its events (events and notification log commit together);
this relay reads the notification log after its recorded position, maps each
domain event to its integration contract, publishes the batch persistent with
publisher confirms, and records the new position only once the broker has
confirmed every message of the batch. A crash between publish and record
publishes the batch again: consumers' inboxes make that harmless.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import NAMESPACE_URL, uuid5

import amqp
from kombu import Connection

from shared.contracts import Envelope, registry
from shared.metrics import Metrics
from shared.store import ServiceApplication
from shared.topology import EVENTS_EXCHANGE

log = logging.getLogger(__name__)

_EVENT_ID_NAMESPACE = uuid5(NAMESPACE_URL, "urn:pumpurs:integration-event")


class PublishNotConfirmedError(ConnectionError):
    """The broker refused (nacked) or did not confirm a batch in time."""


def to_envelope(app: ServiceApplication, notification: Any, previous_id: int | None) -> Envelope:
    event: Any = app.mapper.to_domain_event(notification)
    contract = registry.for_domain_event(app.name, type(event).__qualname__)
    return Envelope(
        event_id=str(uuid5(_EVENT_ID_NAMESPACE, f"{app.name}:{notification.id}")),
        event_type=contract.event_type,
        schema_version=contract.version,
        source=app.name,
        notification_id=notification.id,
        previous_id=previous_id,
        occurred_at=event.timestamp,
        aggregate_id=str(event.originator_id),
        aggregate_version=event.originator_version,
        actor=getattr(event, "by", None) or "system",
        payload=contract.dump(event),
    )


def read_envelopes(
    app: ServiceApplication, after: int, limit: int, stop: int | None = None
) -> list[Envelope]:
    """Integration events after a notification id; the first names ``after`` as its previous."""
    notifications = app.recorder.select_notifications(start=after + 1, limit=limit, stop=stop)
    envelopes = []
    previous: int | None = after or None
    for notification in notifications:
        envelopes.append(to_envelope(app, notification, previous))
        previous = notification.id
    return envelopes


def routing_key(envelope: Envelope) -> str:
    return f"{envelope.source}.{envelope.event_type}"


def declare_events_exchange(channel: Any) -> None:
    channel.exchange_declare(EVENTS_EXCHANGE, "topic", durable=True, auto_delete=False)


class ConfirmingPublisher:
    """Publishes batches on one channel in confirm mode and waits for all confirms once."""

    def __init__(self, amqp_uri: str, confirm_timeout: float = 10.0) -> None:
        self._uri = amqp_uri
        self._timeout = confirm_timeout
        self._connection: Connection | None = None
        self._channel: Any = None
        self._acked = 0
        self._nacked = 0
        self._published = 0

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self._acked = delivery_tag if multiple else max(self._acked, delivery_tag)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._nacked += 1

    def connect(self) -> None:
        if self._channel is not None:
            return
        connection = Connection(self._uri, heartbeat=20, connect_timeout=5)
        connection.connect()
        channel = connection.connection.channel()
        declare_events_exchange(channel)
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        channel.confirm_select()
        self._connection, self._channel = connection, channel
        self._acked = self._nacked = self._published = 0

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            try:
                connection.release()
            except Exception:  # the connection is being thrown away anyway
                log.debug("error while closing publisher connection", exc_info=True)

    def ping(self) -> None:
        """Connect if needed and prove the connection is alive (raises when it is not)."""
        self.connect()
        assert self._connection is not None
        connection = self._connection.connection
        connection.send_heartbeat()
        with contextlib.suppress(TimeoutError):
            connection.drain_events(timeout=0)

    def publish_batch(self, envelopes: Sequence[Envelope]) -> None:
        self.connect()
        channel = self._channel
        for envelope in envelopes:
            message = amqp.Message(
                json.dumps(envelope.to_message(), separators=(",", ":")),
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=2,
                message_id=envelope.event_id,
                type=envelope.event_type,
                timestamp=int(envelope.occurred_at.timestamp()),
                application_headers={
                    "source": envelope.source,
                    "notification_id": envelope.notification_id,
                },
            )
            channel.basic_publish(message, EVENTS_EXCHANGE, routing_key(envelope))
            self._published += 1
        self._wait_for_confirms()

    def _wait_for_confirms(self) -> None:
        deadline = time.monotonic() + self._timeout
        assert self._connection is not None
        while self._acked < self._published and not self._nacked:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.close()
                raise PublishNotConfirmedError("broker did not confirm the batch in time")
            try:
                self._connection.connection.drain_events(timeout=min(remaining, 1.0))
            except TimeoutError:
                continue
        if self._nacked:
            self.close()
            raise PublishNotConfirmedError("broker refused part of the batch")


class Relay:
    """One service's outbox relay; ``run`` is its loop, ``wake`` nudges it after a save."""

    def __init__(
        self,
        app: ServiceApplication,
        amqp_uri: str,
        metrics: Metrics | None = None,
        batch_size: int = 500,
        poll_interval: float = 1.0,
    ) -> None:
        self.app = app
        self.publisher = ConfirmingPublisher(amqp_uri)
        self.metrics = metrics
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._table = f"{app.table_prefix}relay_position"
        self.connected = False

    # -- position ------------------------------------------------------------
    def create_table(self) -> None:
        with self.app.transaction() as sql:
            sql.execute(
                f"CREATE TABLE IF NOT EXISTS {self._table} "
                "(relay TEXT PRIMARY KEY, position BIGINT NOT NULL)"
            )

    def position(self) -> int:
        rows = self.app.query(f"SELECT position FROM {self._table} WHERE relay = ?", ("events",))
        return int(rows[0]["position"]) if rows else 0

    def _record_position(self, position: int) -> None:
        with self.app.transaction() as sql:
            sql.execute(
                f"INSERT INTO {self._table} (relay, position) VALUES (?, ?) "
                "ON CONFLICT (relay) DO UPDATE SET position = excluded.position",
                ("events", position),
            )

    # -- the loop ----------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def publish_pending(self) -> int:
        """Publish one batch after the recorded position; the number published."""
        position = self.position()
        envelopes = read_envelopes(self.app, position, self.batch_size)
        if not envelopes:
            self._observe(position, None)
            return 0
        self._observe(position, envelopes[0].occurred_at)
        self.publisher.publish_batch(envelopes)
        self._record_position(envelopes[-1].notification_id)
        self._observe(envelopes[-1].notification_id, None)
        if self.metrics is not None:
            self.metrics.events_published.labels(self.metrics.service).inc(len(envelopes))
        return len(envelopes)

    def _observe(self, position: int, oldest: datetime | None) -> None:
        if self.metrics is None:
            return
        service = self.metrics.service
        self.metrics.outbox_backlog.labels(service).set(max(self.app.head() - position, 0))
        age = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
        self.metrics.outbox_oldest_age.labels(service).set(max(age, 0.0))

    def run(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                published = self.publish_pending()
                backoff = 0.5
            except Exception as exc:  # broker or database away: keep trying, never die
                self.connected = False
                self.publisher.close()
                log.warning(
                    "outbox relay of %s cannot publish (%s); retrying in %.1fs",
                    self.app.name,
                    type(exc).__name__,
                    backoff,
                )
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if published:
                time.sleep(0)  # let request handlers run between batches
                continue
            try:
                self.publisher.ping()
                self.connected = True
            except Exception:
                self.connected = False
                self.publisher.close()
            self._wake.wait(self.poll_interval)
        self.publisher.close()
