"""A service whose every worker waits still answers its probes and its metrics.

nameko runs each request in a worker from a pool of ``PUMPURS_MAX_WORKERS``. When all of
them wait (for a store that does not answer, or here for a service that does not answer
reporting's audit), Kubernetes must still find the process alive, or it restarts every
replica for an outage that a restart cannot cure; and Prometheus must still scrape it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
import requests

from shared.testing import Client, ServiceProcess, running, wait_until

WORKERS = 2
RPC_TIMEOUT = 20  # seconds each audit request waits for identification's answer
PROBE_TIMEOUT = 3  # the probes' timeoutSeconds in deploy/k8s/base/patches/server-pod.yaml


@contextlib.contextmanager
def every_worker_waiting(system: Any, reporting: ServiceProcess) -> Iterator[None]:
    """As many audit verifications as workers, each waiting for a stopped identification
    (its RPC queue is there, nobody consumes it) until RPC_TIMEOUT."""
    auditor = system.token("auditor")

    def asked() -> int:
        return int(system.broker.queue("rpc-identification").get("messages", 0))

    with ThreadPoolExecutor(WORKERS) as pool:
        waiting: list[Future[Any]] = [
            pool.submit(Client(reporting.url, auditor).get, "/audit/verify") for _ in range(WORKERS)
        ]
        # Each worker's RPC request waits in identification's queue.
        wait_until(lambda: asked() >= WORKERS, timeout=RPC_TIMEOUT / 2, interval=0.5)
        yield
        for answer in waiting:
            assert answer.result(timeout=2 * RPC_TIMEOUT).status_code == 200


def test_probes_and_metrics_answer_while_every_worker_waits(system: Any) -> None:
    identification = system.service("identification")
    reporting = system.service(
        "reporting",
        PUMPURS_MAX_WORKERS=str(WORKERS),
        PUMPURS_AUDIT_RPC_TIMEOUT=str(RPC_TIMEOUT),
    )
    with running(identification):
        pass  # declares identification's RPC queue, which stays when it stops
    with running(reporting), every_worker_waiting(system, reporting):
        # The pool is full: a request that needs a worker waits for one.
        with pytest.raises(requests.Timeout):
            requests.get(f"{reporting.url}/openapi.json", timeout=PROBE_TIMEOUT)

        for path in ("/health/live", "/health/ready", "/metrics"):
            answer = requests.get(f"{reporting.url}{path}", timeout=PROBE_TIMEOUT)
            assert answer.status_code == 200, path
