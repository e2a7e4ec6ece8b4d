"""3. End to end: a pupil flagged in identification, until planning's read model shows it.

Both services run as ``pumpurs serve`` on one fresh vhost and the store under test.
Pupils are registered first (and planning has applied all of them) so the measured
window holds only the flagging. Then risk-sign commands are issued open-loop at a
fixed rate (each stores risk_sign_recorded + pupil_flagged_at_risk, so the bus carries
twice that many events). A watcher thread in this process reads planning's own
database (the row of ``planning_pupils`` turning ``at_risk = 1``: the same table that
``GET /pupils-at-risk`` reads, committed in the inbox's transaction) every
``poll`` seconds, for the pupils still pending only.

Latency = first time the watcher sees the row - the command's scheduled send time
(open-loop schedule, so queueing in the client counts). Also reported: from the
moment the command's 2xx answer arrived, which leaves out the command's own time.
Resolution: the poll interval plus one query (well under a millisecond on SQLite).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import load
from bench.stack import log, meter, settle, vhost
from shared.testing import (
    ServiceProcess,
    Stores,
    postgres_conninfo,
    running,
    token_for,
    wait_until,
)

TABLE = "planning_pupils"


@dataclass(frozen=True)
class Sight:
    """What a watcher looks for: rows of a service's read model, by key, that meet a
    condition (trusted SQL, no parameters)."""

    service: str
    table: str
    key: str
    condition: str


PUPIL_AT_RISK = Sight("planning", TABLE, "pupil_id", "at_risk = 1")


class Watcher(threading.Thread):
    """Notes when each pending key's read-model row is seen (by default, a pupil's row in
    planning turning at_risk = 1)."""

    def __init__(self, stores: Stores, poll: float, sight: Sight = PUPIL_AT_RISK) -> None:
        super().__init__(daemon=True)
        self.stores, self.poll, self.sight = stores, poll, sight
        self.pending: dict[str, float] = {}
        self.seen: dict[str, float] = {}
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)  # notified when rows are seen
        self.stopping = threading.Event()
        self.polls = 0
        self.error: BaseException | None = None

    def expect(self, key: str) -> None:
        with self.lock:
            self.pending[key] = 0.0

    def wait_seen(self, key: str, timeout: float) -> bool:
        """Block until the key's row is seen (True) or ``timeout`` passes (False)."""
        with self.changed:
            return self.changed.wait_for(lambda: key in self.seen, timeout)

    def _connect(self) -> Any:
        if self.stores.kind == "postgres":
            import psycopg

            conninfo = postgres_conninfo(os.environ, self.stores.database(self.sight.service))
            return psycopg.connect(conninfo, autocommit=True)
        path = self.stores.data_dir / f"{self.sight.service}.sqlite"
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)

    def _query(self, ids: list[str]) -> tuple[str, list[Any]]:
        sight = self.sight
        select = f"SELECT DISTINCT {sight.key} FROM {sight.table} WHERE {sight.condition} AND"
        if self.stores.kind == "postgres":
            # One array parameter: the same text at every poll, which psycopg prepares once.
            # A list of hundreds of placeholders (the pending journeys of a system that
            # falls behind) was parsed and planned afresh at every poll, in the database
            # the system under load was using.
            return f"{select} {sight.key} = ANY(%s)", [ids]
        return f"{select} {sight.key} IN ({','.join('?' * len(ids))})", ids

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the caller
            self.error = exc

    def _run(self) -> None:
        conn = self._connect()
        try:
            while not self.stopping.is_set():
                with self.lock:
                    ids = list(self.pending)
                if ids:
                    rows = conn.execute(*self._query(ids)).fetchall()
                    now = time.perf_counter()
                    self.polls += 1
                    if rows:
                        with self.changed:
                            for (key,) in rows:
                                if self.pending.pop(key, None) is not None:
                                    self.seen[key] = now
                            self.changed.notify_all()
                time.sleep(self.poll)
        finally:
            conn.close()


def consumed(planning: ServiceProcess) -> dict[str, float]:
    return {
        outcome: planning.metric(
            "pumpurs_events_consumed_total", source="identification", outcome=outcome
        )
        for outcome in ("ok", "caught_up", "duplicate", "retried", "dead_lettered")
    }


def planning_count(stores: Stores) -> int:
    rows = stores.query("planning", f"SELECT count(*) AS n FROM {TABLE}")
    return int(rows[0]["n"])


def phase(
    identification: ServiceProcess,
    planning: ServiceProcess,
    stores: Stores,
    token: str,
    rate: float,
    seconds: float,
    poll: float,
) -> dict[str, Any]:
    count = int(rate * seconds)
    before = planning_count(stores)
    log(f"e2e/{stores.kind}: registering {count} pupils")
    pupils = load.register_many(identification.port, token, count)
    wait_until(lambda: planning_count(stores) >= before + count, 120, 0.2)
    settle()
    watcher = Watcher(stores, poll)
    watcher.start()

    def flag_job(pupil_id: str) -> load.Job:
        def job(client: load.Http) -> None:
            watcher.expect(pupil_id)
            load.flag(client, pupil_id)

        return job

    consumed_before = consumed(planning)
    log(f"e2e/{stores.kind}: flagging, open loop at {rate:.0f}/s for {seconds:.0f}s")
    assert identification.proc is not None and planning.proc is not None
    cpu_meter = meter(identification=identification.proc.pid, planning=planning.proc.pid)
    result = load.open_loop(
        identification.port, token, [flag_job(p) for p in pupils], rate, give_up_after=3.0
    )
    cpu = cpu_meter.read()
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: not watcher.pending, 30, 0.05)
    watcher.stopping.set()
    watcher.join(5)
    time.sleep(0.5)
    consumed_after = consumed(planning)
    if watcher.error is not None:
        raise watcher.error
    if result.errors:
        raise RuntimeError(f"e2e: {len(result.errors)} errors: {result.errors[0]}")
    from_sent, from_answer = [], []
    missing = 0
    for i, pupil_id in enumerate(pupils):
        if not result.answered[i]:
            continue  # dropped: the command was never sent (overload)
        seen = watcher.seen.get(pupil_id)
        if seen is None:
            missing += 1
            continue
        from_sent.append(seen - result.sent[i])
        from_answer.append(seen - result.answered[i])
    out: dict[str, Any] = {
        "rate_per_second": rate,
        "seconds": seconds,
        "commands": count,
        "integration_events_per_second": rate * 2,
        "poll_interval_ms": poll * 1000,
        "watcher_polls": watcher.polls,
        "dropped_overloaded": result.dropped,
        "missing": missing,
        "latency_from_command_sent": load.summary_ms(from_sent),
        "latency_from_command_answered": load.summary_ms(from_answer),
        "command_latency": load.summary_ms(result.latencies),
        "cpu_during_load": cpu,
        # How planning's inbox got the events of this phase: from the queue ("ok"), by
        # its periodic catch-up over RPC ("caught_up"), or again ("duplicate").
        "planning_events_consumed": {
            k: int(consumed_after[k] - consumed_before[k]) for k in consumed_after
        },
        "cpu_ms_per_command": {
            name: round(
                1000 * cpu.get(f"{name}_cores", 0.0) * cpu["seconds"] / max(len(from_sent), 1), 2
            )
            for name in ("identification", "planning")
        },
        "pupils": pupils,
    }
    lat = out["latency_from_command_sent"]
    log(
        f"e2e/{stores.kind} at {rate:.0f}/s: p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms, "
        f"missing {missing}"
    )
    return out


def run(
    store: str,
    workdir: Path,
    keys_dir: Path,
    phases: list[tuple[float, float]],
    poll: float,
) -> dict[str, Any]:
    """Each phase (rate, seconds) flags fresh pupils; the first is the one with the target."""
    base = Path(tempfile.mkdtemp(prefix=f"e2e-{store}-", dir=workdir))
    stores = Stores(store, base / "data", os.environ)
    token = token_for("teacher", keys_dir, school=load.SCHOOL)
    results = []
    try:
        with vhost(f"e2e-{store}") as broker:
            env = {
                "AMQP_URI": broker.uri,
                "PUMPURS_KEYS_DIR": str(keys_dir),
                "PUMPURS_LOG_LEVEL": "WARNING",
                **stores.env(["identification", "planning"]),
            }
            identification = ServiceProcess("identification", env, base)
            planning = ServiceProcess("planning", env, base)
            with running(identification, planning):
                for rate, seconds in phases:
                    results.append(
                        phase(identification, planning, stores, token, rate, seconds, poll)
                    )
                # The same pupils through planning's API, as a user would see them.
                client = load.Http(planning.port, token)
                status, body = client.request("GET", f"/pupils-at-risk?school_id={load.SCHOOL}")
                client.close()
                api_ok = status == 200 and all(
                    p.encode() in body for r in results for p in r["pupils"]
                )
    finally:
        stores.drop()
    for r in results:
        del r["pupils"]
    return {"store": store, "all_visible_via_api": api_ok, "phases": results}
