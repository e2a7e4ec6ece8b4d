"""The event-store dependency provider: one Application and one outbox relay per container."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from eventsourcing.persistence import IntegrityError, ProgrammingError
from nameko.extensions import DependencyProvider

from shared.audit import adopt_unchained, verify_store
from shared.chain import Anchor
from shared.idempotency import IdempotencyStore
from shared.lease import lease_for
from shared.metrics import metrics_for
from shared.outbox import Relay, read_envelopes
from shared.rpc import rpc
from shared.store import ServiceApplication, guard_stored_events, store_env

log = logging.getLogger(__name__)

ApplicationFactory = Callable[[Mapping[str, str]], ServiceApplication]

# Under the readiness probe's 3 s (deploy/k8s/base/patches/server-pod.yaml): a store that
# does not answer makes /health/ready answer 503 naming it, not time out.
STORE_CHECK_SECONDS = 2.0


class EventStore(DependencyProvider):
    """Gives each worker the service's Application; runs the outbox relay beside it."""

    def __init__(self, application: ApplicationFactory) -> None:
        self.application = application
        self.app: ServiceApplication
        self.relay: Relay
        self._closed = False

    def setup(self) -> None:
        config = self.container.config
        service = self.container.service_name
        environ = {**os.environ, **{k: str(v) for k, v in config.items() if isinstance(v, str)}}
        env = store_env(service, environ.get("PUMPURS_DATA_DIR", "var/data"), environ)
        # Replicas starting together on a fresh PostgreSQL database race to create the
        # same tables: IF NOT EXISTS does not spare the loser a duplicate-type error, but
        # its second try finds them made.
        for attempt in range(1, 6):
            try:
                self._open(env)
                return
            except (IntegrityError, ProgrammingError):  # "already exists", in either guise
                if attempt == 5:
                    raise
                log.info("%s's tables are being created by another process; retrying", service)
                time.sleep(0.2 * attempt)

    def _open(self, env: Mapping[str, str]) -> None:
        config = self.container.config
        self.app = self.application(env)
        try:
            guard_stored_events(self.app)
            adopt_unchained(self.app)
            self.relay = Relay(
                self.app,
                config["AMQP_URI"],
                metrics=metrics_for(self.container),
                batch_size=int(config.get("RELAY_BATCH_SIZE", 500)),
                poll_interval=float(config.get("RELAY_POLL_INTERVAL", 0.2)),
                lease=lease_for(self.app),
            )
            self.relay.create_table()
            self.idempotency = IdempotencyStore(self.app)
            self._observe_group_commits()
        except Exception:
            self.app.close()
            raise
        self.app.on_saved(self.relay.wake)

    def _observe_group_commits(self) -> None:
        group_commit = getattr(self.app.recorder, "group_commit", None)
        if group_commit is not None:  # the recorders store_env names (both stores)
            histogram = metrics_for(self.container).saves_per_commit
            group_commit.observe = histogram.labels(self.container.service_name).observe

    def start(self) -> None:
        self.container.spawn_managed_thread(self.relay.run, identifier="outbox.relay")

    def stop(self) -> None:
        self.relay.stop()

    def kill(self) -> None:
        self.relay.stop()

    def close(self) -> None:
        """Close the store's connections (the container does, once nothing uses them)."""
        app = getattr(self, "app", None)  # None when setup failed
        if app is not None and not self._closed:
            self._closed = True
            app.close()

    def get_dependency(self, worker_ctx: Any) -> ServiceApplication:
        return self.app

    def readiness(self) -> dict[str, bool]:
        """Whether the store answers and whether the relay's broker connection works."""
        try:
            self.app.check_store(STORE_CHECK_SECONDS)
            store = True
        except Exception:
            store = False
        return {"store": store, "broker": self.relay.connected}


def store_of(container: Any) -> EventStore:
    """The EventStore provider of a container (entrypoints cannot have dependencies)."""
    for dependency in container.dependencies:
        if isinstance(dependency, EventStore):
            return dependency
    raise RuntimeError(f"{container.service_name} has no EventStore")


class PublishesEvents:
    """Mixin for a service that owns an EventStore named ``app``: its notification log over RPC.

    Consumers call it to fill a gap or catch up after a restart or an outage.
    """

    app: ServiceApplication

    @rpc
    def notifications(
        self, after: int, limit: int = 200, stop: int | None = None
    ) -> dict[str, Any]:
        limit = max(1, min(int(limit), 1000))
        envelopes = read_envelopes(self.app, int(after), limit, stop)
        return {
            "head": self.app.head(),
            "events": [envelope.to_message() for envelope in envelopes],
        }


class AuditsChain:
    """Mixin for every service: its audit chain's verification over RPC (reporting asks all
    four, passing what it knows of each chain as anchors)."""

    app: ServiceApplication

    @rpc
    def audit_verify(self, anchors: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        checked = [Anchor.from_dict(anchor) for anchor in anchors]
        return verify_store(self.app, checked).to_dict()
