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

from kombu import Connection

from shared.contracts import Envelope, registry
from shared.frames import Outgoing, publish_frames
from shared.lease import AlwaysHeld, Lease, saved_channel
from shared.metrics import Metrics
from shared.store import POSTGRES, ServiceApplication
from shared.topology import EVENTS_EXCHANGE, check_shared_exchanges

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


def outgoing(envelope: Envelope) -> Outgoing:
    return Outgoing(
        routing_key=routing_key(envelope),
        body=json.dumps(envelope.to_message(), separators=(",", ":")).encode(),
        message_id=envelope.event_id,
        type=envelope.event_type,
        timestamp=int(envelope.occurred_at.timestamp()),
        headers={"source": envelope.source, "notification_id": envelope.notification_id},
    )


class Confirms:
    """Which of a channel's messages the broker has confirmed. It may confirm them out of
    order (a message is confirmed once every queue it went to took it, an unroutable one at
    once), singly or as "all up to this tag": a later message's ack says nothing of an
    earlier one, and a refusal (nack) counts only for the messages it names."""

    def __init__(self) -> None:
        self.published = 0
        self.confirmed_up_to = 0  # every tag up to here is acked
        self._acked_above: set[int] = set()
        self.refused = 0

    def expect(self, count: int) -> None:
        self.published += count

    @property
    def settled(self) -> bool:
        return self.refused > 0 or self.confirmed_up_to >= self.published

    def ack(self, delivery_tag: int, multiple: bool) -> None:
        if multiple:
            self.confirmed_up_to = max(self.confirmed_up_to, delivery_tag)
            self._acked_above = {t for t in self._acked_above if t > delivery_tag}
        else:
            self._acked_above.add(delivery_tag)
        while self.confirmed_up_to + 1 in self._acked_above:
            self.confirmed_up_to += 1
            self._acked_above.discard(self.confirmed_up_to)

    def nack(self, delivery_tag: int, multiple: bool) -> None:
        self.refused += 1


class ConfirmingPublisher:
    """Publishes batches on one channel in confirm mode and waits for all confirms once."""

    def __init__(self, amqp_uri: str, confirm_timeout: float = 10.0) -> None:
        self._uri = amqp_uri
        self._timeout = confirm_timeout
        self._connection: Connection | None = None
        self._channel: Any = None
        self._confirms = Confirms()

    def connect(self) -> None:
        if self._channel is not None:
            return
        connection = Connection(self._uri, heartbeat=20, connect_timeout=5)
        connection.connect()
        check_shared_exchanges(connection)
        channel = connection.connection.channel()
        confirms = self._confirms = Confirms()  # delivery tags start again on a new channel
        channel.events["basic_ack"].add(confirms.ack)
        channel.events["basic_nack"].add(confirms.nack)
        channel.confirm_select()
        self._connection, self._channel = connection, channel

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
        """Write the whole batch to the socket at once, then wait for every confirm."""
        self.connect()
        assert self._connection is not None
        connection = self._connection.connection
        channel_id, frame_max = self._channel.channel_id, connection.frame_max
        frames = b"".join(
            publish_frames(channel_id, frame_max, EVENTS_EXCHANGE, outgoing(envelope))
            for envelope in envelopes
        )
        connection.transport.write(frames)
        connection.bytes_sent += 1  # py-amqp's heartbeat bookkeeping: we did send
        self._confirms.expect(len(envelopes))
        self._wait_for_confirms()

    def _wait_for_confirms(self) -> None:
        deadline = time.monotonic() + self._timeout
        assert self._connection is not None
        while not self._confirms.settled:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.close()
                raise PublishNotConfirmedError("broker did not confirm the batch in time")
            try:
                self._connection.connection.drain_events(timeout=min(remaining, 1.0))
            except TimeoutError:
                continue
        if self._confirms.refused:
            self.close()
            raise PublishNotConfirmedError("broker refused part of the batch")


# Delivered at commit, once per transaction and channel however many rows it inserted.
_PG_NOTIFY_FUNCTION = """
CREATE OR REPLACE FUNCTION {channel}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('{channel}', '');
  RETURN NULL;
END $$
"""


class Relay:
    """One service's outbox relay; ``run`` is its loop, ``wake`` nudges it after a save.

    The published position lives in memory while this relay holds the lease and is
    recorded at most every ``record_interval`` seconds (the loop comes round at least
    every ``poll_interval`` when idle): always after the broker confirmed it, so a
    crash can only publish some confirmed events again, which consumers drop as
    duplicates.
    """

    def __init__(
        self,
        app: ServiceApplication,
        amqp_uri: str,
        metrics: Metrics | None = None,
        batch_size: int = 500,
        poll_interval: float = 0.2,
        lease: Lease | None = None,
        record_interval: float = 0.25,
    ) -> None:
        self.app = app
        self.publisher = ConfirmingPublisher(amqp_uri)
        self.metrics = metrics
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.lease: Lease = lease or AlwaysHeld()
        self.record_interval = record_interval
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._table = f"{app.table_prefix}relay_position"
        self._published: int | None = None  # confirmed by the broker, maybe not recorded
        self._recorded = -1
        self._recorded_at = 0.0
        self._proven_at = -1.0  # when the broker connection last proved to work
        self.connected = False

    # -- position ------------------------------------------------------------
    def create_table(self) -> None:
        """The position table; on PostgreSQL also the trigger that tells the relay of saves."""
        postgres = self.app.dialect == POSTGRES
        with self.app.transaction() as sql:
            if postgres:  # replicas starting together would race for the same DDL
                sql.execute("SELECT pg_advisory_xact_lock(hashtext('pumpurs-ddl'))")
            sql.execute(
                f"CREATE TABLE IF NOT EXISTS {self._table} "
                "(relay TEXT PRIMARY KEY, position BIGINT NOT NULL)"
            )
            if postgres:
                channel, events = saved_channel(self.app), self.app.events_table
                sql.execute(_PG_NOTIFY_FUNCTION.format(channel=channel))
                sql.execute(
                    f"CREATE OR REPLACE TRIGGER {events}_saved AFTER INSERT ON {events} "
                    f"FOR EACH STATEMENT EXECUTE FUNCTION {channel}()"
                )

    def position(self) -> int:
        """The recorded position (what a restarted relay continues from)."""
        rows = self.app.query(f"SELECT position FROM {self._table} WHERE relay = ?", ("events",))
        return int(rows[0]["position"]) if rows else 0

    def _record_position(self, position: int) -> None:
        with self.app.transaction() as sql:
            sql.execute(
                f"INSERT INTO {self._table} (relay, position) VALUES (?, ?) "
                "ON CONFLICT (relay) DO UPDATE SET position = excluded.position",
                ("events", position),
            )
        self._recorded, self._recorded_at = position, time.monotonic()

    def _record_if_due(self, force: bool = False) -> None:
        due = force or time.monotonic() - self._recorded_at >= self.record_interval
        if due and self._published is not None and self._published != self._recorded:
            self._record_position(self._published)

    def record_position(self) -> None:
        """Record the published position now (it is otherwise recorded when due)."""
        self._record_if_due(force=True)

    # -- the loop ----------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def publish_pending(self) -> int:
        """Publish one batch after the published position; the number published."""
        if self._published is None:
            self._published = self.position()
        envelopes = read_envelopes(self.app, self._published, self.batch_size)
        if not envelopes:
            # Only when due: a relay woken by every save runs dry after nearly every
            # batch, and a write (with its fsync) each time cost identification a
            # fifteenth of its time under load.
            self._record_if_due()
            self._observe(backlog=0, oldest=None)
            return 0
        full = len(envelopes) == self.batch_size
        backlog = self.app.head() - self._published if full else len(envelopes)
        self._observe(backlog, envelopes[0].occurred_at)
        self.publisher.publish_batch(envelopes)
        self._published = envelopes[-1].notification_id
        self._proven_at = time.monotonic()  # the broker confirmed: the connection works
        self.connected = True  # so readiness holds while a backlog is drained
        self._record_if_due()
        if not full:
            self._observe(backlog=0, oldest=None)
        if self.metrics is not None:
            self.metrics.events_published.labels(self.metrics.service).inc(len(envelopes))
        return len(envelopes)

    def _observe(self, backlog: int, oldest: datetime | None) -> None:
        if self.metrics is None:
            return
        service = self.metrics.service
        self.metrics.outbox_backlog.labels(service).set(max(backlog, 0))
        age = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
        self.metrics.outbox_oldest_age.labels(service).set(max(age, 0.0))

    def _lead(self) -> bool:
        """Hold the lease (taking it when free); a new holder starts from the recorded position."""
        if self.lease.held():
            return True
        self._published = None
        active = self.lease.acquire()
        if active:
            log.info("outbox relay of %s is active in this process", self.app.name)
        if self.metrics is not None:
            self.metrics.relay_active.labels(self.metrics.service).set(int(active))
        return active

    def run(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                if not self._lead():
                    self._stand_by()
                    continue
                published = self.publish_pending()
                backoff = 0.5
            except Exception as exc:  # broker or database away: keep trying, never die
                self.connected = False
                self.publisher.close()
                self._published = None  # continue from what is recorded
                log.warning(
                    "outbox relay of %s cannot publish (%s); retrying in %.1fs",
                    self.app.name,
                    type(exc).__name__,
                    backoff,
                )
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if published == self.batch_size:  # a backlog: straight on to the next batch
                time.sleep(0)  # let request handlers run between batches
                continue
            # Everything saved before that read is published; a save since has set the
            # wake, so the wait below returns at once (one read fewer for every save).
            self._check_broker()
            if not self.lease.wait_for_saves(self.poll_interval):
                self._wake.wait(self.poll_interval)
        self.publisher.close()
        self.lease.release()

    def _stand_by(self) -> None:
        """Another replica relays; keep proving the broker connection for readiness."""
        self._check_broker()
        self._stopping.wait(self.poll_interval)

    def _check_broker(self) -> None:
        """Prove the connection, unless a confirm did within the last poll interval
        (a ping per batch was a heartbeat frame and a read for every save)."""
        if self.connected and time.monotonic() - self._proven_at < self.poll_interval:
            return
        try:
            self.publisher.ping()
            self._proven_at = time.monotonic()
            self.connected = True
        except Exception:
            self.connected = False
            self.publisher.close()
