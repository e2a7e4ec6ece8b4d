"""The inbox: consume another service's integration events exactly once and in order.

Topology, declared at start-up: a durable quorum queue per (consumer, source)
bound to the events exchange, with a delivery limit and a dead-letter exchange
that parks failing messages in the consumer's dead-letter queue.

Processing, per source and one message at a time: a message already tracked is
a duplicate and changes nothing; a message whose previous id is not the last
one applied reveals a gap, which is filled first by pulling the missing range
from the source's notification log over RPC. The handler's effect (new events
and/or read-model rows) commits in one transaction with the tracking record. A
message that fails is requeued, and dead-lettered after the delivery limit; one
that fails because the store is not answering is held instead, unacknowledged,
and tried again until the store answers. An inbox declared with ``batch`` applies
the consecutive messages waiting for it together, in one transaction (see Inbox).
The same pull runs at start-up and periodically, so nothing published is ever
lost even when a message was.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from eventlet.event import Event as GreenEvent
from eventsourcing.persistence import IntegrityError, Tracking
from nameko.exceptions import RpcTimeout, UnknownService
from nameko.extensions import Entrypoint
from nameko.messaging import QueueConsumer

from shared.contracts import Envelope, InvalidMessageError, registry
from shared.eventstore import store_of
from shared.metrics import metrics_for
from shared.rpc import BROKER_ERRORS, KeptRpcProxy
from shared.store import ServiceApplication, store_not_answering
from shared.topology import (
    check_shared_exchanges,
    consumer_queue,
    dead_letter_queue,
    declare_replacing,
)

log = logging.getLogger(__name__)

DEFAULT_DELIVERY_LIMIT = 5
DEFAULT_BATCH = 20  # a batch's commit grows with it, and so does the wait of its first message
STORE_RETRY_SECONDS = 1.0  # between tries of a message held while the store is down
DEFAULT_CATCH_UP_TIMEOUT = 10.0  # seconds a source has to answer for its events
# A source that does not answer for a gap's events: down, restarting, or not there yet.
SOURCE_AWAY = (RpcTimeout, UnknownService, *BROKER_ERRORS)


def _chunks(events: list[IncomingEvent], size: int) -> Iterator[list[IncomingEvent]]:
    for start in range(0, len(events), size):
        yield events[start : start + size]


@dataclass(frozen=True)
class IncomingEvent:
    """What a handler receives: the envelope, its validated payload, and its tracking record."""

    envelope: Envelope
    payload: dict[str, Any]

    @property
    def tracking(self) -> Tracking:
        return Tracking(self.envelope.source, self.envelope.notification_id)

    @property
    def type(self) -> str:
        return self.envelope.event_type


class SourceNotAnsweringError(RuntimeError):
    """The source did not answer for the events of a gap: the message is held, as in a
    store outage, not retried until its deliveries run out."""


class GapNotFilledError(RuntimeError):
    """The source could not (yet) provide the events before this message."""


class InboxQueueConsumer(QueueConsumer):
    """nameko's queue consumer, but a body that cannot be decoded is dead-lettered, not fatal."""

    def get_consumers(self, consumer_cls: Any, channel: Any) -> Any:
        consumers = super().get_consumers(consumer_cls, channel)
        for provider, consumer in self._consumers.items():
            consumer.on_decode_error = partial(self._on_decode_error, provider)
        return consumers

    def _on_decode_error(self, provider: Inbox, message: Any, exc: Exception) -> None:
        log.warning("undecodable message dead-lettered (%s)", type(exc).__name__)
        _settle(message.reject, requeue=False)
        provider._count("dead_lettered")


def _not_answering(exc: BaseException) -> str | None:
    """Who is not answering, if that is why applying failed: then the message is held."""
    if store_not_answering(exc):
        return "store"
    if isinstance(exc, SourceNotAnsweringError):
        return "source"
    return None


def _settle(action: Callable[..., Any], **kwargs: Any) -> None:
    """Ack, reject or requeue; if the channel died meanwhile the broker redelivers the
    message, and the inbox recognises it as a duplicate."""
    try:
        action(**kwargs)
    except BROKER_ERRORS as exc:
        log.info("could not settle a message (%s); it will be redelivered", type(exc).__name__)


class Inbox(Entrypoint):
    """``@inbox("identification")``: the decorated method receives each IncomingEvent once.

    ``@inbox("identification", batched=True)``: it receives a list of one or more
    consecutive IncomingEvents instead, to apply in one transaction with a tracking record
    for each (``ServiceApplication.save_tracked`` takes them all). Messages delivered while
    the one before them is being applied wait together and are applied together, up to
    ``INBOX_BATCH`` of the config (20 by default), so a consumer that falls behind does
    less work per message, not more. A batch that fails is applied again one message at a
    time: a failure stays the failing message's own. A store that does not answer fails
    any batch the same way: then the first message is held, as it would be on its own.

    ``linger`` (seconds, batched inboxes only): a message with none waiting behind it
    first waits that long for others to join its batch. For consumers whose readers can
    wait: it trades that much of their freshness for fewer transactions (on PostgreSQL a
    transaction is a round trip each for BEGIN and COMMIT, besides a tracking record).
    """

    queue_consumer = InboxQueueConsumer()

    def __init__(
        self,
        source: str,
        catch_up_interval: float = 5.0,
        batched: bool = False,
        linger: float = 0.0,
        **kwargs: Any,
    ) -> None:
        self.source = source
        self.linger = linger
        self.catch_up_interval = catch_up_interval
        self.batched = batched
        self.batch = 1
        # A commit refused by another replica's tracking record (see _apply) is a race
        # the inbox settles, not a fault: nameko logs it as a warning, not an error.
        kwargs.setdefault("expected_exceptions", (IntegrityError,))
        super().__init__(**kwargs)

    # -- lifecycle -----------------------------------------------------------
    def setup(self) -> None:
        config = self.container.config
        service = self.container.service_name
        self.delivery_limit = int(config.get("DELIVERY_LIMIT", DEFAULT_DELIVERY_LIMIT))
        self.catch_up_interval = float(config.get("CATCH_UP_INTERVAL", self.catch_up_interval))
        if self.batched:
            self.batch = max(1, int(config.get("INBOX_BATCH", DEFAULT_BATCH)))
        self.queue = consumer_queue(service, self.source, self.delivery_limit)
        self.metrics = metrics_for(self.container)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        timeout = float(config.get("CATCH_UP_TIMEOUT", DEFAULT_CATCH_UP_TIMEOUT))
        self._rpc = KeptRpcProxy(dict(config), service, timeout=timeout)
        self._dead_letters: Any = None  # (connection, dead-letter queue), kept between looks
        self._known_head = 0
        self._last: int | None = None  # last applied notification id, see _last_applied
        self._last_message_at = 0.0
        self._waiting: dict[int, IncomingEvent] = {}  # queue messages by previous id
        self._batched: set[int] = set()  # applied in an earlier message's batch
        self.declare_topology()
        self.queue_consumer.register_provider(self)

    def declare_topology(self) -> None:
        from kombu import Connection

        service = self.container.service_name
        with Connection(self.container.config["AMQP_URI"], connect_timeout=5) as conn:
            check_shared_exchanges(conn)
            dead_letter_queue(service)(conn.channel()).declare()
            if declare_replacing(conn, self.queue):
                log.warning(
                    "queue %s had other arguments (an earlier delivery limit or dead-letter"
                    " exchange): declared anew; what it held is caught up from %s",
                    self.queue.name,
                    self.source,
                )

    @property
    def app(self) -> ServiceApplication:
        return store_of(self.container).app

    def start(self) -> None:
        self.app.on_tracked(self._tracked)
        self.container.spawn_managed_thread(self._catch_up_loop, identifier="inbox.catch_up")

    def stop(self) -> None:
        self._stopping.set()
        self.queue_consumer.unregister_provider(self)
        self._close_rpc()

    def kill(self) -> None:
        self._stopping.set()
        self._close_rpc()

    # -- messages from the queue ------------------------------------------------
    def handle_message(self, body: Any, message: Any) -> None:
        outcome = "ok"
        self._last_message_at = time.monotonic()
        try:
            envelope = Envelope.from_message(body)
            if envelope.source != self.source:
                raise InvalidMessageError(f"message from {envelope.source} on {self.source} queue")
            event = IncomingEvent(envelope, registry.load(envelope))
        except InvalidMessageError as exc:
            log.warning("invalid message dead-lettered: %s", exc)
            self._count("dead_lettered")
            _settle(message.reject, requeue=False)
            return
        self._wait_in_line(event)
        try:
            outcome = self._apply_holding(event)
        except Exception as exc:
            deliveries = int((message.headers or {}).get("x-delivery-count", 0)) + 1
            final = deliveries > self.delivery_limit
            log.warning(
                "%s.%s #%s failed on delivery %s (%s)%s",
                envelope.source,
                envelope.event_type,
                envelope.notification_id,
                deliveries,
                type(exc).__name__,
                "; dead-lettered" if final else "",
            )
            self._count("dead_lettered" if final else "retried")
            _settle(message.requeue)
            return
        finally:
            self._leave_line(event)
        self._count(outcome)
        _settle(message.ack)

    def _apply_holding(self, event: IncomingEvent) -> str:
        """Apply, holding the message while the store does not answer.

        Requeueing would use up one of the message's deliveries per try, so a store
        outage longer than a few tries would park good messages as dead letters.
        Unacknowledged, the message stays ours until the store answers or we stop."""
        held = False
        while True:
            try:
                with self._lock:
                    return self._apply_in_order(event)
            except Exception as exc:
                away = _not_answering(exc)
                if away is None or self._stopping.is_set():
                    raise
                if not held:
                    held = True
                    self._count("held")
                    log.warning(
                        "%s not answering: holding %s #%s until it does",
                        away,
                        self.source,
                        event.envelope.notification_id,
                    )
                self._stopping.wait(STORE_RETRY_SECONDS)

    def _apply_in_order(self, event: IncomingEvent) -> str:
        envelope = event.envelope
        if envelope.notification_id <= self._last_applied():
            batched = envelope.notification_id in self._batched
            self._batched.discard(envelope.notification_id)
            return "ok" if batched else "duplicate"
        if envelope.previous_id is not None and envelope.previous_id > self._last_applied():
            self._fill_gap(until=envelope.previous_id)
            if self._last_applied() < envelope.previous_id:
                raise GapNotFilledError(
                    f"{self.source} did not provide events up to #{envelope.previous_id}"
                )
        # Only a message that follows on counts towards the head: a stray id (a malformed
        # or forged message that leaves a gap) would otherwise pin the lag metric high.
        self._known_head = max(self._known_head, envelope.notification_id)
        self._linger(event)
        return "ok" if self._apply(event, self._following(event)) else "duplicate"

    # -- messages waiting together -------------------------------------------------
    def _wait_in_line(self, event: IncomingEvent) -> None:
        previous = event.envelope.previous_id
        if self.batch > 1 and previous is not None:
            self._waiting[previous] = event

    def _leave_line(self, event: IncomingEvent) -> None:
        previous = event.envelope.previous_id
        if previous is not None and self._waiting.get(previous) is event:
            del self._waiting[previous]

    def _linger(self, event: IncomingEvent) -> None:
        """Give the messages on their way a moment to join ``event``'s batch, unless one
        is waiting already: a consumer behind needs no more than the batch it has."""
        if self.linger and self.batch > 1 and event.envelope.notification_id not in self._waiting:
            self._stopping.wait(self.linger)

    def _following(self, event: IncomingEvent) -> list[IncomingEvent]:
        """Queue messages waiting for the lock that follow ``event`` with no gap between."""
        following: list[IncomingEvent] = []
        last = event.envelope.notification_id
        while len(following) < self.batch - 1 and (later := self._waiting.get(last)):
            following.append(later)
            last = later.envelope.notification_id
        return following

    # -- where this consumer stands ----------------------------------------------
    def _last_applied(self) -> int:
        """Cached, because every message asks; kept current by ``_tracked`` after each
        commit and re-read from the store whenever a commit failed (another replica may
        have applied the event: its tracking record is what tells)."""
        if self._last is None:
            self._last = self.app.last_tracked(self.source)
        return self._last

    def _tracked(self, tracking: Tracking) -> None:
        if tracking.application_name == self.source and self._last is not None:
            self._last = max(self._last, tracking.notification_id)

    # -- catch-up from the source's notification log -------------------------------
    def _catch_up_loop(self) -> None:
        failing = False  # said once when catch-up stops working and once when it works again
        while not self._stopping.is_set():
            self._look_at_dead_letters()
            try:
                self._catch_up()
            except Exception as exc:
                level = logging.DEBUG if failing else logging.WARNING
                log.log(
                    level,
                    "catch-up from %s not possible (%s); trying every %ss",
                    self.source,
                    type(exc).__name__,
                    self.catch_up_interval,
                )
                failing = True
                self._close_rpc()
            else:
                if failing:
                    log.info("catch-up from %s works again", self.source)
                failing = False
            self._stopping.wait(self.catch_up_interval)
        self._close_dead_letters()

    def _catch_up(self) -> None:
        """Pull and apply everything the source has that this consumer has not.

        Skipped while the queue delivers: a message lost meanwhile shows as a gap in
        the next one. Pulling then would only do the queue's work twice."""
        while not self._stopping.is_set() and not self._queue_flowing():
            # Ask outside the lock, so a slow or absent source never holds up the queue.
            events = self._pull(after=self._last_applied(), until=None)
            if not events:
                return
            for chunk in _chunks(events, self.batch):
                with self._lock:  # a batch at a time, so queue messages interleave
                    if not self._apply_pulled(chunk):
                        break

    def _queue_flowing(self) -> bool:
        return time.monotonic() - self._last_message_at < self.catch_up_interval

    def _apply_pulled(self, events: list[IncomingEvent]) -> bool:
        """Apply pulled consecutive events if they follow on; False when the pull is out
        of date."""
        fresh = self._not_applied(events)
        if not fresh:
            return True  # the queue was quicker
        previous = fresh[0].envelope.previous_id
        if previous is not None and previous > self._last_applied():
            return False
        self._apply_caught_up(fresh)
        return True

    def _fill_gap(self, until: int) -> None:
        """Called with the lock held: apply the source's events up to ``until``."""
        while (last := self._last_applied()) < until:
            try:
                events = self._pull(after=last, until=until)
            except SOURCE_AWAY as exc:
                self._close_rpc()
                raise SourceNotAnsweringError(
                    f"{self.source} did not answer for its events after #{last}"
                ) from exc
            if not events:
                return
            for chunk in _chunks(events, self.batch):
                if fresh := self._not_applied(chunk):
                    self._apply_caught_up(fresh)

    def _not_applied(self, events: list[IncomingEvent]) -> list[IncomingEvent]:
        last = self._last_applied()
        return [event for event in events if event.envelope.notification_id > last]

    def _apply_caught_up(self, events: list[IncomingEvent]) -> None:
        """Apply consecutive pulled events: together, or else one by one."""
        if len(events) > 1 and self._applied_together(events, queued=False):
            self._count("caught_up", len(events))
            return
        for event in events:
            if event.envelope.notification_id > self._last_applied() and self._apply(event):
                self._count("caught_up")

    def _pull(self, after: int, until: int | None) -> list[IncomingEvent]:
        answer = self._rpc.call(self.source, "notifications", after=after, limit=200, stop=until)
        self._known_head = max(self._known_head, int(answer["head"]))
        self._observe_lag()
        events = []
        for body in answer["events"]:
            envelope = Envelope.from_message(body)
            events.append(IncomingEvent(envelope, registry.load(envelope)))
        return events

    def _close_rpc(self) -> None:
        self._rpc.close()

    # -- applying events through a worker ----------------------------------------------
    def _apply(self, event: IncomingEvent, following: list[IncomingEvent] | None = None) -> bool:
        """Apply through a worker (with the ``following`` events when there are any);
        False if another consumer had applied ``event`` already."""
        if following and self._applied_together([event, *following]):
            return True
        envelope = event.envelope
        try:
            self._run_worker([event] if self.batched else event)
            if self._last_applied() < envelope.notification_id:
                # The handler had nothing to do with this event: record that it was seen.
                self.app.save_tracked(tracking=event.tracking)
        except Exception:
            self._last = None
            if self._last_applied() < envelope.notification_id:
                raise
            return False  # a replica's commit won: its tracking record refused ours
        finally:
            self._observe_lag()
        self._observe_commit(1)
        return True

    def _applied_together(self, events: list[IncomingEvent], queued: bool = True) -> bool:
        """Apply consecutive events in one worker and transaction; False if that failed.
        ``queued``: the later ones' messages are waiting, to be acknowledged as applied."""
        try:
            self._run_worker(events)
            if self._last_applied() < events[-1].envelope.notification_id:
                self.app.save_tracked(tracking=[event.tracking for event in events])
        except Exception as exc:
            self._last = None
            if store_not_answering(exc):
                raise  # one by one would fail the same way: the first message is held
            log.debug("%d messages applied one by one (%s)", len(events), type(exc).__name__)
            return False
        finally:
            self._observe_lag()
        if queued:
            self._batched.update(event.envelope.notification_id for event in events[1:])
        self._observe_commit(len(events))
        return True

    def _run_worker(self, argument: Any) -> None:
        done = GreenEvent()

        def handle_result(worker_ctx: Any, result: Any = None, exc_info: Any = None) -> Any:
            if exc_info is not None:
                done.send_exception(exc_info[1])
            else:
                done.send(result)
            return result, exc_info

        self.container.spawn_worker(self, (argument,), {}, handle_result=handle_result)
        done.wait()

    # -- metrics -----------------------------------------------------------------
    def _count(self, outcome: str, events: int = 1) -> None:
        labels = (self.metrics.service, self.source, outcome)
        self.metrics.events_consumed.labels(*labels).inc(events)

    def _observe_commit(self, events: int) -> None:
        self.metrics.events_per_commit.labels(self.metrics.service, self.source).observe(events)

    def _observe_lag(self) -> None:
        lag = max(self._known_head - self._last_applied(), 0)
        self.metrics.consumer_lag.labels(self.metrics.service, self.source).set(lag)

    def _look_at_dead_letters(self) -> None:
        """On its own: the gauge must move while a source or the store is away too."""
        try:
            self._observe_dead_letters()
        except Exception as exc:
            log.debug("dead letters not counted (%s)", type(exc).__name__)
            self._close_dead_letters()

    def _observe_dead_letters(self) -> None:
        """Kept connected between looks: a connection opened every few seconds by each
        inbox filled the broker's log, two lines a connection. The service's inboxes share
        one dead-letter queue, so only the first of them (by source) looks."""
        from kombu import Connection

        inboxes = [e for e in self.container.entrypoints if isinstance(e, Inbox)]
        if min(inboxes, key=lambda inbox: inbox.source) is not self:
            return
        service = self.container.service_name
        if self._dead_letters is None:
            conn = Connection(self.container.config["AMQP_URI"], connect_timeout=5)
            self._dead_letters = (conn, dead_letter_queue(service)(conn.channel()))
        declared = self._dead_letters[1].queue_declare(passive=True)
        self.metrics.dead_letters.labels(service).set(declared.message_count)

    def _close_dead_letters(self) -> None:
        kept, self._dead_letters = self._dead_letters, None
        if kept is not None:
            try:
                kept[0].release()
            except Exception:
                log.debug("error while closing the dead-letter connection", exc_info=True)


inbox: Callable[..., Any] = Inbox.decorator
