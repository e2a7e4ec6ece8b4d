"""What every service exposes besides its own routes: health, metrics, OpenAPI, its event log."""

from __future__ import annotations

import threading
from typing import Any

from nameko.extensions import DependencyProvider
from werkzeug.wrappers import Response

from shared.container import Container
from shared.errors import NotReadyError
from shared.eventstore import AuditsChain, PublishesEvents, store_of
from shared.metrics import CONTENT_TYPE_LATEST, metrics_for
from shared.openapi import build_openapi
from shared.web import Call, json_response, route

READINESS_INTERVAL_SECONDS = 5.0


class Chassis(DependencyProvider):
    """Readiness, metrics and the OpenAPI document of the container.

    The ready gauge is kept by a watcher, not measured on scrape: while the store does
    not answer, a check waits for it, and a scrape that waited would time out just when
    the metrics matter most."""

    def setup(self) -> None:
        self._openapi: dict[str, Any] | None = None
        self._stopped = threading.Event()

    def start(self) -> None:
        self.container.spawn_managed_thread(self._watch_readiness, identifier="chassis.ready")

    def stop(self) -> None:
        self._stopped.set()

    kill = stop

    def _watch_readiness(self) -> None:
        if isinstance(self.container, Container):
            self.container.wait_for_start()  # else the gauge reads 0 for 5 s after each start
        while not self._stopped.is_set():
            self.readiness()
            self._stopped.wait(READINESS_INTERVAL_SECONDS)

    def readiness(self) -> dict[str, bool]:
        """Which of the parts the service needs work: its consumers (started), the store,
        the broker connection."""
        started = not isinstance(self.container, Container) or self.container.serving
        parts = {"consumers": started, **store_of(self.container).readiness()}
        metrics = metrics_for(self.container)
        metrics.ready.labels(metrics.service).set(1 if all(parts.values()) else 0)
        return parts

    def metrics_text(self) -> bytes:
        return metrics_for(self.container).exposition()

    def openapi(self) -> dict[str, Any]:
        if self._openapi is None:
            self._openapi = build_openapi(self.container)
        return self._openapi

    def get_dependency(self, worker_ctx: Any) -> Chassis:
        return self


class ServiceBase(PublishesEvents, AuditsChain):
    """Base class of the four services; ``app`` is each service's EventStore."""

    chassis = Chassis()

    @route("GET", "/health/live", public=True, pooled=False, summary="the process is alive")
    def health_live(self, call: Call) -> dict[str, str]:
        return {"status": "alive"}

    @route(
        "GET",
        "/health/ready",
        public=True,
        pooled=False,
        summary="started, and the store and the broker answer",
    )
    def health_ready(self, call: Call) -> Any:
        parts = self.chassis.readiness()
        if not all(parts.values()):
            raise NotReadyError(parts)  # 503 with the error body, naming what fails
        return {"status": "ready"}

    @route(
        "GET",
        "/metrics",
        public=True,
        pooled=False,
        answer_types=("text/plain",),
        summary="Prometheus metrics",
    )
    def metrics(self, call: Call) -> Response:
        return Response(
            self.chassis.metrics_text(),
            mimetype=CONTENT_TYPE_LATEST.split(";")[0],
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    @route("GET", "/openapi.json", public=True, summary="this API's OpenAPI document")
    def openapi(self, call: Call) -> Response:
        return json_response(200, self.chassis.openapi())
