"""1. Outbox relay against a bare confirming kombu publisher, from a stored backlog.

Both publish the same N envelopes, persistent, to the events exchange of a fresh
vhost in which a durable quorum queue (the shape of a real consumer queue) is bound
to every identification event, so the broker routes, stores and confirms every
message in both cases.

- relay: shared.outbox.Relay, in this process, on a fresh IdentificationApplication
  over the stored backlog: read the notification log, map to integration events,
  publish batch, wait for the batch's confirms, record the position; repeated until
  the position reaches the head. Everything it does is timed.
- bare: kombu Producer on a connection with ``confirm_publish=True`` (what nameko's
  EventDispatcher uses): one publish, then wait for its confirm, N times. The
  envelopes are read and serialised beforehand and not timed.
- relay in the service (extra row): ``pumpurs serve identification`` started on the
  same store with its relay position reset to 0; the rate is taken from the relay
  position in the store, from the first recorded batch to the head.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from kombu import Connection, Exchange, Producer

from bench import load
from bench.stack import log, meter, settle, vhost
from shared.outbox import Relay, read_envelopes, routing_key
from shared.testing import Broker, ServiceProcess, Stores, wait_until
from shared.topology import EVENTS_EXCHANGE, check_shared_exchanges, consumer_queue

SCHOOL = "daugavpils-10-vsk"
SINK = "bench"  # the sink queue is "bench.from.identification"


def declare_sink(broker: Broker) -> str:
    queue = consumer_queue(SINK, "identification", 5)
    with Connection(broker.uri, connect_timeout=5) as conn:
        # A fresh vhost has no pumpurs.events yet: the services never declare it (the
        # broker-users Job does), and the sink binds to it before anyone publishes.
        check_shared_exchanges(conn)
        channel = conn.channel()
        queue(channel).declare()
    return str(queue.name)


def queue_depth(broker: Broker, name: str) -> int:
    with Connection(broker.uri, connect_timeout=5) as conn:
        declared = conn.channel().queue_declare(name, passive=True)
    return int(declared.message_count)


def seed(app: Any, events: int) -> float:
    """Store ``events`` events through the application, about a thousand per commit:
    pupils registered (personal data sealed, keys kept in the vault) and given a risk
    sign, which flags them: three events a pupil (the last pupils may get only one).
    Uses the application's own batch path (``new_pupil`` + ``save_pupils``, i.e.
    ``app.save(*pupils)``), as the journal import does."""
    from services.identification.domain import PersonalData
    from services.identification.views import EVIDENCE

    started = time.perf_counter()
    stored = 0
    while stored < events:
        pupils, news = [], []
        batch_events = 0
        while batch_events < 999 and stored + batch_events < events:
            data = PersonalData.checked("Anna", "Bērziņa", load.personal_code(), date(2008, 3, 1))
            new = app.new_pupil(SCHOOL, 7, "F", data, "bench")
            batch_events += 1
            if stored + batch_events + 2 <= events:
                sealed = new.key.seal(EVIDENCE, "25 unexcused lessons")
                new.pupil.record_risk_sign(
                    "learning.absences", date(2019, 10, 1), sealed, "assessment", "bench"
                )
                batch_events += 2
            pupils.append(new.pupil)
            news.append(new)
        app.save_pupils(pupils, news)
        stored += batch_events
    if app.head() != events:
        raise RuntimeError(f"seeding stored {app.head()} events, expected {events}")
    return time.perf_counter() - started


def _app(env: dict[str, str]) -> Any:
    from services.identification.application import IdentificationApplication
    from shared.store import store_env

    return IdentificationApplication(store_env("identification", env["PUMPURS_DATA_DIR"], env))


def run_relay_inprocess(app_env: dict[str, str], events: int, batch_size: int) -> dict[str, Any]:
    app = _app(app_env)
    with vhost("relay") as broker:
        sink = declare_sink(broker)
        relay = Relay(app, broker.uri, batch_size=batch_size)
        relay.create_table()
        relay.publisher.connect()
        cpu_meter = meter()
        started = time.perf_counter()
        batches = 0
        while relay.publish_pending():
            batches += 1
        relay.record_position()
        seconds = time.perf_counter() - started
        cpu = cpu_meter.read()
        relay.publisher.close()
        assert relay.position() == app.head() == events, (relay.position(), app.head())
        depth = queue_depth(broker, sink)
    if depth != events:
        raise RuntimeError(f"relay: {depth} messages in the sink queue, expected {events}")
    return {
        "events": events,
        "seconds": round(seconds, 3),
        "per_second": round(events / seconds, 1),
        "batch_size": batch_size,
        "batches": batches,
        "queued": depth,
        "cpu": cpu,
    }


def run_bare(app_env: dict[str, str], events: int) -> dict[str, Any]:
    app = _app(app_env)
    envelopes = read_envelopes(app, 0, events)
    messages = [
        (
            json.dumps(e.to_message(), separators=(",", ":")).encode(),
            routing_key(e),
            {
                "message_id": e.event_id,
                "type": e.event_type,
                "timestamp": int(e.occurred_at.timestamp()),
            },
            {"source": e.source, "notification_id": e.notification_id},
        )
        for e in envelopes
    ]
    exchange = Exchange(EVENTS_EXCHANGE, "topic", durable=True)
    with vhost("bare") as broker:
        sink = declare_sink(broker)
        with Connection(
            broker.uri, transport_options={"confirm_publish": True}, connect_timeout=5
        ) as conn:
            producer = Producer(conn, exchange=exchange, auto_declare=True)
            cpu_meter = meter()
            started = time.perf_counter()
            for body, key, props, headers in messages:
                producer.publish(
                    body,
                    routing_key=key,
                    content_type="application/json",
                    content_encoding="utf-8",
                    delivery_mode=2,
                    headers=headers,
                    retry=False,
                    mandatory=False,
                    **props,
                )
            seconds = time.perf_counter() - started
            cpu = cpu_meter.read()
        depth = queue_depth(broker, sink)
    if depth != events:
        raise RuntimeError(f"bare: {depth} messages in the sink queue, expected {events}")
    return {
        "events": events,
        "seconds": round(seconds, 3),
        "per_second": round(events / seconds, 1),
        "queued": depth,
        "cpu": cpu,
    }


def run_relay_in_service(
    app_env: dict[str, str], events: int, keys_dir: Path, log_dir: Path
) -> dict[str, Any]:
    """The relay as it runs in production: inside the eventlet service process."""
    app = _app(app_env)
    table = "identification_relay_position"
    with app.transaction() as sql:
        sql.execute(f"UPDATE {table} SET position = 0")

    def position() -> int:
        rows = app.query(f"SELECT position FROM {table}")
        return int(rows[0]["position"]) if rows else 0

    with vhost("relay-svc") as broker:
        sink = declare_sink(broker)
        proc = ServiceProcess(
            "identification",
            {
                **app_env,
                "AMQP_URI": broker.uri,
                "PUMPURS_KEYS_DIR": str(keys_dir),
                "PUMPURS_LOG_LEVEL": "WARNING",
            },
            log_dir,
        )
        proc.start(wait=False)
        try:
            first = wait_until(
                lambda: (p := position()) > 0 and (p, time.perf_counter()), 90, 0.002
            )
            wait_until(lambda: position() >= events, 300, 0.005)
            finished = time.perf_counter()
            start_pos, started = first
            depth = queue_depth(broker, sink)
        finally:
            proc.stop()
    measured = events - start_pos
    seconds = finished - started
    return {
        "events": events,
        "measured_events": measured,
        "seconds": round(seconds, 3),
        "per_second": round(measured / seconds, 1) if seconds > 0 else None,
        "queued": depth,
    }


def run(store: str, events: int, batch_size: int, workdir: Path, keys_dir: Path) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"relay-{store}-", dir=workdir))
    stores = Stores(store, data_dir / "data", os.environ)
    try:
        service_env = stores.env(["identification"])
        # The application reads POSTGRES_* from os.environ as well.
        os.environ.update({k: v for k, v in service_env.items() if k.startswith("POSTGRES_")})
        app_env = {**os.environ, **service_env}
        log(f"relay/{store}: storing {events} events through IdentificationApplication.save")
        seed_seconds = seed(_app(app_env), events)
        log(f"relay/{store}: stored in {seed_seconds:.1f}s; bare confirming publisher")
        settle()
        bare = run_bare(app_env, events)
        log(f"relay/{store}: bare {bare['per_second']:.0f}/s; relay in process")
        settle()
        relay = run_relay_inprocess(app_env, events, batch_size)
        log(f"relay/{store}: relay {relay['per_second']:.0f}/s; relay inside the service")
        settle()
        in_service = run_relay_in_service(app_env, events, keys_dir, data_dir)
        log(f"relay/{store}: relay in service {in_service['per_second']}/s")
    finally:
        stores.drop()
    return {
        "store": store,
        "seed_seconds": round(seed_seconds, 2),
        "bare": bare,
        "relay": relay,
        "relay_in_service": in_service,
        "ratio": round(relay["per_second"] / bare["per_second"], 2),
        "ratio_in_service": (
            round(in_service["per_second"] / bare["per_second"], 2)
            if in_service.get("per_second")
            else None
        ),
    }
