"""2. The command path over HTTP: identification against a commit-then-dispatch nameko peer.

Three servers, running side by side and loaded one at a time in interleaved rounds, each
on a fresh vhost with a durable quorum queue bound
to every event it emits (so each service's events are routed, stored and confirmed):

- ours: ``pumpurs serve identification`` (SQLite store in a temp dir, JWT checked on
  every call); the command saves events only, the outbox relay publishes them
  afterwards in the same process;
- peer: ``python -m bench.peer peer`` (marshmallow validation, one SQLite row
  committed, nameko EventDispatcher with confirms, then the answer);
- ceiling: ``python -m bench.peer noop`` (nameko @http, nothing else).

Workload: POST /pupils, then POST /pupils/{id}/risk-signs on that pupil (the second
command records a sign and flags the pupil: two events). Closed loop at concurrency 8
for the throughput; then an open loop at 100 commands/s, alternating a registration
and a risk sign on a pupil registered beforehand, for the latency.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from kombu import Connection, Exchange, Queue

from bench import load
from bench.stack import log, meter, settle, vhost
from shared.testing import REPO, Broker, ServiceProcess, free_port, token_for, wait_until
from shared.topology import EVENTS_EXCHANGE


def bind_sink(broker: Broker, exchange: str, routing_key: str) -> None:
    """A durable quorum queue that receives every event the service under test emits."""
    queue = Queue(
        "bench.sink",
        exchange=Exchange(exchange, "topic", durable=True),
        routing_key=routing_key,
        durable=True,
        queue_arguments={"x-queue-type": "quorum"},
    )
    with Connection(broker.uri, connect_timeout=5) as conn:
        queue(conn.channel()).declare()


class PeerProcess:
    """``python -m bench.peer KIND``, started and stopped like a ServiceProcess."""

    def __init__(self, kind: str, env: dict[str, str], log_dir: Path) -> None:
        self.kind = kind
        self.port = free_port()
        self.env = {**env, "PEER_PORT": str(self.port)}
        self.log_path = log_dir / f"{kind}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PeerProcess:
        out = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.peer", self.kind],
            env={**os.environ, **self.env},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited: {self.log_path.read_text()[-2000:]}")
            client = load.Http(self.port, None)
            try:
                return client.request("GET", "/health/ready")[0] == 200
            except OSError:
                return False
            finally:
                client.close()

        wait_until(ready, 60, 0.1)
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def backlog_drained(service: ServiceProcess, timeout: float = 120) -> None:
    wait_until(
        lambda: service.metric("pumpurs_outbox_backlog_events", service="identification") == 0,
        timeout,
        0.2,
    )


class Server:
    """One server under test and what was measured on it, round by round."""

    def __init__(
        self, label: str, port: int, pid: int, token: str | None, drain: Any = None
    ) -> None:
        self.label, self.port, self.pid, self.token, self.drain = label, port, pid, token, drain
        self.cpu: dict[str, list[dict[str, float]]] = {"closed": [], "open": []}
        self.closed: list[load.ClosedLoopResult] = []
        self.opened: list[load.OpenLoopResult] = []
        self.pool: list[str] = []

    def after_load(self) -> None:
        if self.drain is not None:
            self.drain()

    def summary(self, rate: float) -> dict[str, Any]:
        requests = sum(r.requests for r in self.closed)
        seconds = sum(r.seconds for r in self.closed)
        latencies = [x for r in self.closed for x in r.latencies]
        open_latencies = [x for r in self.opened for x in r.latencies]

        def cpu_ms(meters: list[dict[str, float]], answered: list[int]) -> float | None:
            """Milliseconds of the server's CPU per answered request."""
            used = sum(m.get("server_cores", 0.0) * m["seconds"] for m in meters)
            total = sum(answered)
            return round(1000 * used / total, 2) if total else None

        return {
            "throughput": {
                "requests": requests,
                "seconds": seconds,
                "per_second": round(requests / seconds, 1),
                "per_round": [round(r.per_second, 1) for r in self.closed],
                "latency": load.summary_ms(latencies),
                "server_cpu_ms_per_request": cpu_ms(
                    self.cpu["closed"], [r.completed for r in self.closed]
                ),
                "cpu_per_round": self.cpu["closed"],
            },
            "open_loop": {
                "rate_per_second": rate,
                "seconds": sum(r.scheduled for r in self.opened) / rate,
                "late_starts": sum(r.late_starts for r in self.opened),
                "dropped_overloaded": sum(r.dropped for r in self.opened),
                "latency": load.summary_ms(open_latencies),
                "p99_ms_per_round": [load.summary_ms(r.latencies)["p99_ms"] for r in self.opened],
                "server_cpu_ms_per_request": cpu_ms(
                    self.cpu["open"], [len(r.latencies) for r in self.opened]
                ),
                "cpu_per_round": self.cpu["open"],
            },
        }


def flag_job(pupil_id: str, client: load.Http) -> None:
    load.flag(client, pupil_id)


def interleave(servers: list[Server], rounds: int, body: Any) -> None:
    """Run ``body(server, round)`` round-robin, the order rotated each round, so a slow
    patch of the machine (disk flushes, the broker's housekeeping) hits every server."""
    for i in range(rounds):
        order = servers[i % len(servers) :] + servers[: i % len(servers)]
        for server in order:
            settle()
            body(server, i)
            server.after_load()


def measure_all(
    servers: list[Server],
    concurrency: int,
    duration: float,
    warmup: float,
    rate: float,
    open_seconds: float,
    rounds: int,
) -> None:
    window = duration / rounds

    def closed(server: Server, i: int) -> None:
        log(f"commands/{server.label}: closed loop round {i + 1}/{rounds}, {window:.0f}s")
        cpu_meter = meter(server=server.pid)
        result = load.closed_loop(
            server.port, server.token, concurrency, window, warmup if i == 0 else 0.3
        )
        server.cpu["closed"].append(cpu_meter.read())
        if result.errors:
            raise RuntimeError(f"{server.label}: {len(result.errors)} errors: {result.errors[0]}")
        server.closed.append(result)
        log(f"commands/{server.label}: {result.per_second:.0f} req/s")

    interleave(servers, rounds, closed)

    per_round = int(rate * open_seconds / rounds)
    for server in servers:
        server.pool = load.register_many(server.port, server.token, per_round * rounds // 2 + 2)
        server.after_load()

    def opened(server: Server, i: int) -> None:
        jobs: list[load.Job] = []
        for k in range(per_round):
            if k % 2 == 0:
                jobs.append(load.register)
            else:
                jobs.append(functools.partial(flag_job, server.pool.pop()))
        log(f"commands/{server.label}: open loop round {i + 1}/{rounds}, {rate:.0f}/s")
        cpu_meter = meter(server=server.pid)
        result = load.open_loop(server.port, server.token, jobs, rate)
        server.cpu["open"].append(cpu_meter.read())
        if result.errors:
            raise RuntimeError(f"{server.label}: {len(result.errors)} errors: {result.errors[0]}")
        server.opened.append(result)
        log(
            f"commands/{server.label}: p50 {load.summary_ms(result.latencies)['p50_ms']} ms, "
            f"p99 {load.summary_ms(result.latencies)['p99_ms']} ms"
        )

    interleave(servers, rounds, opened)


def run(
    workdir: Path,
    keys_dir: Path,
    concurrency: int,
    duration: float,
    warmup: float,
    rate: float,
    open_seconds: float,
    rounds: int,
) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="commands-", dir=workdir))
    token = token_for("teacher", keys_dir, school=load.SCHOOL)
    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(vhost("cmd-ours"))
        bind_sink(broker, EVENTS_EXCHANGE, "identification.#")
        service = ServiceProcess(
            "identification",
            {
                "AMQP_URI": broker.uri,
                "PUMPURS_DATA_DIR": str(base / "ours"),
                "PUMPURS_KEYS_DIR": str(keys_dir),
                "PUMPURS_LOG_LEVEL": "WARNING",
            },
            base,
        )
        stack.callback(service.stop)
        service.start()
        servers = [
            Server(
                "ours",
                service.port,
                service.proc.pid,  # type: ignore[union-attr]
                token,
                drain=lambda: backlog_drained(service),
            )
        ]
        for kind in ("peer", "noop"):
            broker = stack.enter_context(vhost(f"cmd-{kind}"))
            if kind == "peer":
                # nameko declares "<service>.events" when it first dispatches; declare it
                # now (same arguments) so the sink is bound before the first event.
                bind_sink(broker, "peer.events", "#")
            peer = PeerProcess(
                kind, {"AMQP_URI": broker.uri, "PEER_DB": str(base / f"{kind}.sqlite")}, base
            )
            stack.callback(peer.stop)
            peer.start()
            servers.append(Server(kind, peer.port, peer.proc.pid, None))  # type: ignore[union-attr]
        measure_all(servers, concurrency, duration, warmup, rate, open_seconds, rounds)

    results: dict[str, Any] = {s.label: s.summary(rate) for s in servers}
    results["concurrency"] = concurrency
    results["rounds"] = rounds
    ours, peer_r, noop = results["ours"], results["peer"], results["noop"]
    tp = ours["throughput"]["per_second"]
    results["ratio_throughput_ours_to_peer"] = round(tp / peer_r["throughput"]["per_second"], 2)
    results["ratio_throughput_per_round"] = [
        round(a / b, 2)
        for a, b in zip(
            ours["throughput"]["per_round"], peer_r["throughput"]["per_round"], strict=True
        )
    ]
    results["ratio_cpu_per_request_ours_to_peer"] = {
        mode: (
            round(ours[mode]["server_cpu_ms_per_request"] / peer_ms, 2)
            if (peer_ms := peer_r[mode]["server_cpu_ms_per_request"])
            and ours[mode]["server_cpu_ms_per_request"]
            else None
        )
        for mode in ("throughput", "open_loop")
    }
    results["ratio_throughput_ours_to_ceiling"] = round(tp / noop["throughput"]["per_second"], 2)
    results["ratio_p99_ours_to_peer"] = round(
        ours["open_loop"]["latency"]["p99_ms"] / peer_r["open_loop"]["latency"]["p99_ms"], 2
    )
    return results
