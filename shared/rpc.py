"""nameko's RPC entrypoint, except that a reply lost to a broker outage does not kill the service;
and an RPC client kept connected between calls.

nameko lets the exception of a failed reply publish escape the worker, which
kills the whole container. The caller times out and asks again instead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import amqp
import kombu.exceptions
from nameko.rpc import Rpc
from nameko.standalone.rpc import ClusterRpcProxy

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


def caller_proxy(config: dict[str, Any], caller: str, timeout: float) -> ClusterRpcProxy:
    """nameko's standalone RPC proxy with reply queues named after the calling service
    (``rpc.reply-CALLER-UUID``) instead of one name for every caller: a service's broker
    user may read its own replies only (``shared.brokeraccess``)."""
    proxy = ClusterRpcProxy(config, timeout=timeout)
    proxy._reply_listener.container.service_name = caller
    return proxy


class KeptRpcProxy:
    """nameko's standalone RPC proxy (it has a timeout, the in-service one has not), opened
    on first use and kept: one opened for every call is a connection, a reply queue and
    two lines in the broker's log each time. Close it after a failure; the next call
    opens a new one.

    One call at a time: the proxy reads its replies on one socket, and a second
    greenthread reading it meanwhile (an inbox's catch-up loop while a message fills a
    gap) failed with eventlet's "second simultaneous read" and broke the connection."""

    def __init__(self, config: dict[str, Any], caller: str, timeout: float) -> None:
        self._config, self._caller, self._timeout = config, caller, timeout
        self._proxy: ClusterRpcProxy | None = None
        self._services: Any = None
        self._lock = threading.Lock()  # green under the services' monkey patching

    def call(self, service: str, method: str, **kwargs: Any) -> Any:
        with self._lock:
            if self._services is None:
                self._proxy = caller_proxy(self._config, self._caller, self._timeout)
                self._services = self._proxy.start()
            return getattr(self._services[service], method)(**kwargs)

    def close(self) -> None:
        with self._lock:
            proxy, self._proxy, self._services = self._proxy, None, None
        if proxy is not None:
            try:
                proxy.stop()
            except Exception:
                log.debug("error while closing an RPC proxy", exc_info=True)
