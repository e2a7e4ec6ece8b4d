"""nameko's RPC entrypoint, except that a reply lost to a broker outage does not kill the service.

nameko lets the exception of a failed reply publish escape the worker, which
kills the whole container. The caller times out and asks again instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import amqp
import kombu.exceptions
from nameko.rpc import Rpc

log = logging.getLogger(__name__)

BROKER_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    kombu.exceptions.OperationalError,
    amqp.exceptions.AMQPError,
)


class SafeRpc(Rpc):
    def handle_result(self, message: Any, worker_ctx: Any, result: Any, exc_info: Any) -> Any:
        try:
            return super().handle_result(message, worker_ctx, result, exc_info)
        except BROKER_ERRORS as exc:
            log.warning(
                "reply of %s lost to the broker (%s); the caller will ask again",
                self.method_name,
                type(exc).__name__,
            )
            return result, exc_info


rpc: Callable[..., Any] = SafeRpc.decorator
