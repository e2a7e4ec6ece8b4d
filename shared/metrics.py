"""Prometheus metrics of one service process.

Each nameko container gets its own registry, so several containers in one
process (tests) never collide on the global registry. Labels are bounded:
service, route template, command, outcome, source; never an id or a name.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "metrics_for"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "pumpurs_http_requests_total",
            "HTTP requests answered, by route template and status code.",
            ["service", "method", "route", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "pumpurs_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template.",
            ["service", "method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.commands = Counter(
            "pumpurs_commands_total",
            "Commands handled, by command and outcome (ok, rejected, conflict, error).",
            ["service", "command", "outcome"],
            registry=r,
        )
        self.events_published = Counter(
            "pumpurs_events_published_total",
            "Integration events published by the outbox relay and confirmed by the broker.",
            ["service"],
            registry=r,
        )
        self.events_consumed = Counter(
            "pumpurs_events_consumed_total",
            "Integration events consumed, by source and outcome "
            "(ok, duplicate, retried, dead_lettered, caught_up, held).",
            ["service", "source", "outcome"],
            registry=r,
        )
        self.events_per_commit = Histogram(
            "pumpurs_inbox_events_per_commit",
            "Integration events an inbox applied at a time, by source: more than one when "
            "messages waited for the consumer (it was behind) and it applied them together "
            "(in one commit; provisioning commits once per event it acts on).",
            ["service", "source"],
            buckets=(1, 2, 5, 10, 20, 50),
            registry=r,
        )
        self.saves_per_commit = Histogram(
            "pumpurs_store_saves_per_commit",
            "Saves of new events each commit to the store held: more than one when saves "
            "arriving together shared one transaction (group commit).",
            ["service"],
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.outbox_backlog = Gauge(
            "pumpurs_outbox_backlog_events",
            "Stored events not yet published by the outbox relay.",
            ["service"],
            registry=r,
        )
        self.outbox_oldest_age = Gauge(
            "pumpurs_outbox_oldest_unpublished_age_seconds",
            "Age of the oldest stored event not yet published (0 when none).",
            ["service"],
            registry=r,
        )
        self.relay_active = Gauge(
            "pumpurs_outbox_relay_active",
            "1 while this replica's outbox relay holds the lease and publishes, else 0.",
            ["service"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "pumpurs_consumer_lag_events",
            "Events the source has stored that this consumer has not yet applied.",
            ["service", "source"],
            registry=r,
        )
        self.dead_letters = Gauge(
            "pumpurs_dead_letters_messages",
            "Messages parked in this service's dead-letter queue.",
            ["service"],
            registry=r,
        )
        self.ready = Gauge(
            "pumpurs_ready",
            "1 while the service's store and broker connection work, else 0.",
            ["service"],
            registry=r,
        )
        # Export every series at zero from the start, so rules and dashboards
        # see a metric before the first event.
        self.events_published.labels(service)
        self.outbox_backlog.labels(service)
        self.outbox_oldest_age.labels(service)
        self.relay_active.labels(service)
        self.dead_letters.labels(service)
        self.ready.labels(service)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def metrics_for(container: Any) -> Metrics:
    """The metrics of a nameko container, created on first use."""
    metrics = getattr(container, "pumpurs_metrics", None)
    if metrics is None:
        metrics = Metrics(container.service_name)
        container.pumpurs_metrics = metrics
    return metrics
