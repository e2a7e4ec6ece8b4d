"""Asking identification whether a pupil was of age (``adult_on`` over nameko RPC).

Planning keeps no birth dates: a consent the pupil signs is checked against
identification, which answers yes, no or unknown and records the read. Only a draft
whose consent the pupil signed asks, so identification being away stops only those
(503, try again), never the rest of planning.
"""

from __future__ import annotations

import logging
import os
from datetime import date
from typing import Any

from nameko.exceptions import RemoteError, RpcTimeout, UnknownService
from nameko.extensions import DependencyProvider

from shared.errors import UnavailableError
from shared.rpc import BROKER_ERRORS, KeptRpcProxy

log = logging.getLogger(__name__)

RPC_ERRORS = (RpcTimeout, RemoteError, UnknownService, *BROKER_ERRORS)


class IdentificationAwayError(UnavailableError):
    code = "identification_unavailable"
    retry_after = 5

    def __init__(self) -> None:
        super().__init__("identification does not answer: the signer's age cannot be checked")


class AdultCheck(DependencyProvider):
    """Gives each worker ``adult_on(pupil_id, day)``: True, False or None (not known)."""

    def setup(self) -> None:
        timeout = float(os.environ.get("PUMPURS_IDENTIFICATION_RPC_TIMEOUT", "5"))
        self._rpc = KeptRpcProxy(dict(self.container.config), self.container.service_name, timeout)

    def adult_on(self, pupil_id: str, day: date) -> bool | None:
        try:
            answer = self._rpc.call(
                "identification", "adult_on", pupil_id=pupil_id, on=day.isoformat()
            )
        except RPC_ERRORS as exc:
            self._rpc.close()  # the connection may be what failed: the next call opens one
            log.warning("identification did not answer a consent check (%s)", type(exc).__name__)
            raise IdentificationAwayError() from None
        adult = answer.get("adult") if isinstance(answer, dict) else None
        return adult if isinstance(adult, bool) else None

    def stop(self) -> None:
        self._rpc.close()

    def kill(self) -> None:
        self._rpc.close()

    def get_dependency(self, worker_ctx: Any) -> Any:
        return self.adult_on
