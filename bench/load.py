"""HTTP load: closed loop (N workers back to back) and open loop (a fixed schedule).

Clients are threads with one keep-alive ``http.client`` connection each. Open-loop
latency is measured from the *scheduled* send time, so a slow answer that delays
the next request is counted against the server (no coordinated omission).
"""

from __future__ import annotations

import http.client
import itertools
import json
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

SCHOOL = "daugavpils-10-vsk"
# New-format personal codes (32NNNN-NNNNN) carry no date; each registration needs its own.
_codes = itertools.count(random.randrange(10**8))


def personal_code() -> str:
    n = next(_codes) % 10**9
    return f"32{n // 100000:04d}-{n % 100000:05d}"


def register_payload(gender: str = "F") -> dict[str, Any]:
    """A new pupil of grade 7 at SCHOOL, with a personal code not used before."""
    return {
        "school_id": SCHOOL,
        "grade": 7,
        "given_name": "Anna",
        "family_name": "Bērziņa",
        "personal_code": personal_code(),
        "birth_date": "2008-03-01",
        "gender": gender,
    }


def register_body() -> bytes:
    return json.dumps(register_payload()).encode()


SIGN = json.dumps(
    {
        "code": "learning.absences",
        "observed_on": "2019-10-01",
        "evidence": "25 unexcused lessons",
        "expected_version": 1,
    }
).encode()


class HttpError(RuntimeError):
    pass


class Http:
    """One keep-alive connection."""

    def __init__(self, port: int, token: str | None) -> None:
        self.port = port
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.conn.request(method, path, body=body, headers=self.headers)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, ConnectionError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        return self.request("POST", path, body)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def register(client: Http) -> str:
    status, body = client.post("/pupils", register_body())
    if status != 201:
        raise HttpError(f"POST /pupils answered {status}: {body[:200]!r}")
    return str(json.loads(body)["pupil_id"])


def flag(client: Http, pupil_id: str) -> None:
    status, body = client.post(f"/pupils/{pupil_id}/risk-signs", SIGN)
    if status != 201:
        raise HttpError(f"POST risk-signs answered {status}: {body[:200]!r}")


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def summary_ms(values: Sequence[float]) -> dict[str, Any]:
    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000, 2)

    return {
        "count": len(values),
        "p50_ms": ms(percentile(values, 50)),
        "p90_ms": ms(percentile(values, 90)),
        "p99_ms": ms(percentile(values, 99)),
        "max_ms": ms(max(values) if values else None),
        "mean_ms": ms(sum(values) / len(values) if values else None),
    }


@dataclass
class ClosedLoopResult:
    requests: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    completed: int = 0  # all requests answered, warm-up included

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def closed_loop(
    port: int, token: str | None, concurrency: int, duration: float, warmup: float
) -> ClosedLoopResult:
    """Each worker: register a pupil, record a risk sign on it, repeat. Requests completed
    inside [warmup, warmup + duration] count."""
    start = time.perf_counter()
    window = (start + warmup, start + warmup + duration)
    done: list[list[tuple[float, float]]] = [[] for _ in range(concurrency)]
    errors: list[str] = []

    def worker(i: int) -> None:
        client = Http(port, token)
        mine = done[i]
        try:
            while True:
                t0 = time.perf_counter()
                if t0 >= window[1]:
                    return
                pupil_id = register(client)
                t1 = time.perf_counter()
                mine.append((t1, t1 - t0))
                flag(client, pupil_id)
                t2 = time.perf_counter()
                mine.append((t2, t2 - t1))
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    inside = [lat for rows in done for (at, lat) in rows if window[0] <= at < window[1]]
    completed = sum(len(rows) for rows in done)
    return ClosedLoopResult(len(inside), duration, inside, errors, completed)


def register_many(port: int, token: str | None, count: int, concurrency: int = 8) -> list[str]:
    """Register ``count`` pupils as fast as the service takes them; their ids."""
    ids: list[str] = []
    lock = threading.Lock()
    remaining = [count]
    errors: list[str] = []

    def worker() -> None:
        client = Http(port, token)
        try:
            while True:
                with lock:
                    if remaining[0] <= 0:
                        return
                    remaining[0] -= 1
                pupil_id = register(client)
                with lock:
                    ids.append(pupil_id)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            client.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise HttpError(f"registering pupils failed: {errors[0]}")
    return ids


Job = Callable[[Http], object]


@dataclass
class OpenLoopResult:
    scheduled: int
    latencies: list[float]
    errors: list[str]
    late_starts: int  # requests that waited for a free client thread
    sent: list[float] = field(default_factory=list)  # scheduled time of each job
    answered: list[float] = field(default_factory=list)  # time its answer arrived (0: never)
    dropped: int = 0  # jobs never sent because the server fell too far behind

    @property
    def overloaded(self) -> bool:
        return self.dropped > 0


def open_loop(
    port: int,
    token: str | None,
    jobs: Sequence[Job],
    rate: float,
    clients: int = 16,
    on_scheduled: Callable[[int, float], None] | None = None,
    give_up_after: float = 5.0,
) -> OpenLoopResult:
    """Run ``jobs[i]`` at start + i / rate, each on a free client thread. A job that could
    not start within ``give_up_after`` seconds of its time means the server cannot keep
    up with the rate: the jobs not yet started are dropped (counted), which bounds the
    run time of an overloaded measurement."""
    work: queue.Queue[tuple[int, float] | None] = queue.Queue()
    n = len(jobs)
    latencies = [0.0] * n
    sent = [0.0] * n
    answered = [0.0] * n
    ok = [False] * n
    errors: list[str] = []
    late = [0]
    dropped = [0]
    behind = threading.Event()
    count_lock = threading.Lock()

    def worker() -> None:
        client = Http(port, token)
        try:
            while True:
                item = work.get()
                if item is None:
                    return
                i, scheduled = item
                lateness = time.perf_counter() - scheduled
                if lateness > give_up_after or behind.is_set():
                    behind.set()
                    with count_lock:
                        dropped[0] += 1
                    continue
                if lateness > 0.001:
                    with count_lock:
                        late[0] += 1
                try:
                    jobs[i](client)
                    ok[i] = True
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    client.close()
                end = time.perf_counter()
                latencies[i] = end - scheduled
                answered[i] = end
        finally:
            client.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    start = time.perf_counter() + 0.05
    for i in range(n):
        if behind.is_set():
            with count_lock:
                dropped[0] += n - i
            break
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        sent[i] = scheduled
        if on_scheduled is not None:
            on_scheduled(i, scheduled)
        work.put((i, scheduled))
    for _ in threads:
        work.put(None)
    for t in threads:
        t.join()
    good = [latencies[i] for i in range(n) if ok[i]]
    return OpenLoopResult(n, good, errors, late[0], sent, answered, dropped[0])
