"""The RPC proxy a service keeps between calls (shared.rpc.KeptRpcProxy), against a running
identification: an inbox's catch-up loop and a message filling a gap call it at once."""

from __future__ import annotations

import threading
from typing import Any

from shared.rpc import KeptRpcProxy
from shared.testing import running


def test_calls_made_at_once_each_get_their_own_answer(system: Any) -> None:
    heads: list[int] = []

    def ask(proxy: KeptRpcProxy) -> None:
        for limit in range(1, 11):
            answer = proxy.call("identification", "notifications", after=0, limit=limit)
            heads.append(int(answer["head"]))

    with running(system.service("identification")):
        proxy = KeptRpcProxy({"AMQP_URI": system.broker.uri}, "tests", 10)
        # Daemon threads, joined with a deadline: calls that tangle fail the test, not hang it.
        callers = [threading.Thread(target=ask, args=(proxy,), daemon=True) for _ in range(4)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(timeout=60)
        proxy.close()
    assert heads == [0] * 40  # nothing stored yet: every call answered, none failed
