"""Asking identification for supported pupils' age bands (``age_bands`` over nameko RPC).

The enquiries wait in reporting's store (``enquiries.py``); a timer (every
``PUMPURS_AGE_ENQUIRY_INTERVAL`` seconds, 1 by default) sends the oldest of them, at most
``BATCH`` a call, and the application journals each answer. While identification does
not answer (stopped, unreachable, slower than ``PUMPURS_AGE_RPC_TIMEOUT``, 5 s by default),
the tick logs a warning and the enquiries wait for the next one: the inbox never waits for
this. The timeout is short because stopping the service waits for a tick under way.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from marshmallow import ValidationError
from nameko.exceptions import RemoteError, RpcTimeout, UnknownService
from nameko.extensions import DependencyProvider
from nameko.timer import Timer

from services.reporting.application import ReportingApplication
from services.reporting.schemas import AgeBandAnswersSchema
from shared.eventstore import store_of
from shared.rpc import BROKER_ERRORS, KeptRpcProxy
from shared.web import schema_instance

log = logging.getLogger(__name__)

BATCH = 100  # identification takes at most 200 a call
MAX_BATCHES_A_TICK = 50  # then the timer's worker ends, and the next tick goes on
# A malformed answer is refused like a missing one: nothing is journalled from it.
RPC_ERRORS = (RpcTimeout, RemoteError, UnknownService, ValidationError, *BROKER_ERRORS)


class AgeEnquiryTimer(Timer):
    """nameko's timer, its interval from PUMPURS_AGE_ENQUIRY_INTERVAL (seconds)."""

    def setup(self) -> None:
        self.interval = float(os.environ.get("PUMPURS_AGE_ENQUIRY_INTERVAL", "1"))


class AgeDesk:
    """One tick's work: send what waits, journal what comes back."""

    def __init__(self, enquirer: AgeEnquirer, app: ReportingApplication) -> None:
        self.enquirer, self.app = enquirer, app

    def ask_waiting(self) -> int:
        """Journal answers to the waiting enquiries, batch after batch while batches come back
        full (a backlog after a rebuild or an outage drains at once); how many."""
        answered = 0
        for _ in range(MAX_BATCHES_A_TICK):
            try:
                batch = self.app.ask_ages(self._ask, BATCH)
            except RPC_ERRORS as exc:
                self.enquirer.failed(exc)
                break
            self.enquirer.answered()
            answered += batch
            if batch < BATCH:
                break
        return answered

    def _ask(self, enquiries: list[dict[str, str]]) -> list[dict[str, str]]:
        answer = self.enquirer.age_bands(enquiries)
        loaded = schema_instance(AgeBandAnswersSchema).load(answer)
        return [{**a, "on": a["on"].isoformat()} for a in loaded["answers"]]


class AgeEnquirer(DependencyProvider):
    """Gives the timer's worker an AgeDesk; says once when identification stops answering
    and once when it answers again (not at every tick of an outage)."""

    def setup(self) -> None:
        self.timeout = float(os.environ.get("PUMPURS_AGE_RPC_TIMEOUT", "5"))
        self.failing = False
        self._rpc = KeptRpcProxy(
            dict(self.container.config), self.container.service_name, timeout=self.timeout
        )

    def age_bands(self, enquiries: list[dict[str, str]]) -> Any:
        """Identification's answer, through a proxy kept from tick to tick (one opened
        every second put two lines a second into the broker's log under load)."""
        return self._rpc.call("identification", "age_bands", enquiries=enquiries)

    def close(self) -> None:
        self._rpc.close()

    def stop(self) -> None:
        self.close()

    def kill(self) -> None:
        self.close()

    def failed(self, exc: Exception) -> None:
        self.close()  # the connection may be what failed: the next tick opens a new one
        if not self.failing:
            log.warning(
                "identification does not answer the age enquiries (%s); they wait and are "
                "asked again every tick",
                type(exc).__name__,
            )
        self.failing = True

    def answered(self) -> None:
        if self.failing:
            log.info("identification answers the age enquiries again")
        self.failing = False

    def get_dependency(self, worker_ctx: Any) -> AgeDesk:
        app = store_of(self.container).app
        assert isinstance(app, ReportingApplication)
        return AgeDesk(self, app)
