"""nameko's RPC entrypoint, except that a reply lost to a broker outage does not kill the service;
and an RPC client kept connected between calls.

nameko lets the exception of a failed reply publish escape the worker, which
kills the whole container. The caller times out and asks again instead.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import amqp
import kombu.exceptions
from kombu import Connection, Queue
from nameko.rpc import RPC_REPLY_QUEUE_TEMPLATE, RPC_REPLY_QUEUE_TTL, Rpc, RpcConsumer
from nameko.standalone.rpc import ClusterRpcProxy, SingleThreadedReplyListener

from shared.topology import RPC_EXCHANGE, check_shared_exchanges, shared_exchange

log = logging.getLogger(__name__)

BROKER_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    kombu.exceptions.OperationalError,
    amqp.exceptions.AMQPError,
)


class _RpcConsumer(RpcConsumer):
    """nameko's, bound to the RPC exchange without declaring it: a service's broker user
    may not (``shared.topology.SHARED_EXCHANGES``). It checks that the exchange exists."""

    def setup(self) -> None:
        with Connection(self.container.config["AMQP_URI"], connect_timeout=5) as connection:
            check_shared_exchanges(connection)
        super().setup()
        self.queue.exchange = shared_exchange(RPC_EXCHANGE)


class SafeRpc(Rpc):
    rpc_consumer = _RpcConsumer()

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


class _CallerReplyListener(SingleThreadedReplyListener):
    """nameko's, with its reply queue named after the calling service
    (``rpc.reply-CALLER-UUID``) instead of one name for every caller, since a service's
    broker user may read its own replies only (``shared.brokeraccess``); and bound to the
    RPC exchange without declaring it."""

    def __init__(self, caller: str, timeout: float | None = None) -> None:
        super().__init__(timeout=timeout)
        self.caller = caller

    def setup(self) -> None:
        self.routing_key = str(uuid.uuid4())
        self.queue = Queue(
            RPC_REPLY_QUEUE_TEMPLATE.format(self.caller, self.routing_key),
            exchange=shared_exchange(RPC_EXCHANGE),
            routing_key=self.routing_key,
            queue_arguments={"x-expires": RPC_REPLY_QUEUE_TTL},
        )
        self.queue_consumer.register_provider(self)


def caller_proxy(config: dict[str, Any], caller: str, timeout: float) -> ClusterRpcProxy:
    """nameko's standalone RPC proxy, with the caller's own reply queues."""
    return ClusterRpcProxy(
        config, timeout=timeout, reply_listener_cls=partial(_CallerReplyListener, caller)
    )


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
