"""nameko's service container, except that a stop waits for the start to be over.

nameko stops a container that is still starting its extensions as if it had started,
and two things go wrong when SIGTERM comes during those first seconds:

- an entrypoint that leaves the queue consumer before its connection is ready is
  forgotten (nameko's ``QueueConsumer.unregister_provider``). If the connection becomes
  ready before the queue consumer itself is stopped, the consumer thread waits for
  that entrypoint to leave and never ends: the process ignores SIGTERM until it is
  killed. CI saw it on a just-ready identification (readiness does not wait for the
  RPC consumer); holding the entrypoint's stop until the connection was ready hung
  two stops in three;
- otherwise the starting consumer is killed, and nameko logs the kill as a CRITICAL
  error with a traceback, for what was an ordinary stop.

A rollout, a scale-down or Ctrl-C in ``make run`` may come at any time, so the stop
waits for the start (a few seconds at most, normally), then stops everything in order.
A start that cannot finish (say the broker does not answer) is not waited for longer
than ``START_WAIT_SECONDS``: the stop then goes on as nameko's would.

``serving`` (part of ``/health/ready``) holds from the end of the start until the stop:
nameko's web server answers before the consumers it starts after it have connected.

Once everything has stopped, the container closes its event store, which nameko knows
nothing of: left to the interpreter's exit, PostgreSQL's connection pool was closed
while eventlet was being torn down, and every stop ended in a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

import eventlet
from eventlet.event import Event
from nameko.containers import ServiceContainer

from shared.eventstore import EventStore

log = logging.getLogger(__name__)

# Well inside Kubernetes' 30 s grace period, which must still cover the stop itself.
START_WAIT_SECONDS = 10.0


class Container(ServiceContainer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._start_over = Event()
        self.serving = False

    def start(self) -> None:
        try:
            super().start()
            self.serving = True
        finally:
            self._start_over.send(None)

    def wait_for_start(self) -> None:
        """Return once the start is over, whether or not it succeeded."""
        self._start_over.wait()

    def stop(self) -> None:
        self.serving = False  # not ready from the first moment of a stop
        if self.started and not self._start_over.ready():
            log.info("%s is still starting: stopping once it has started", self.service_name)
            with eventlet.Timeout(START_WAIT_SECONDS, False):
                self._start_over.wait()
        super().stop()
        self._close_stores()

    def kill(self, exc_info: Any = None) -> None:
        super().kill(exc_info)
        self._close_stores()

    def _close_stores(self) -> None:
        for dependency in self.dependencies:
            if isinstance(dependency, EventStore):
                dependency.close()
