"""What ``python -m chaos.load`` reads off the running system besides the answers: each
service's memory and CPU, and how far each consumer is behind each source.
"""

from __future__ import annotations

import time
from contextlib import suppress
from pathlib import Path

from bench.stack import CpuMeter, meter
from shared.brokeraccess import SUBSCRIBES
from shared.testing import ServiceProcess, Stores, wait_until

# -- memory -------------------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    return pids


def rss_kib(pid: int) -> int:
    """VmRSS of a process and its descendants, in KiB."""
    total = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def cpu_meter(services: dict[str, ServiceProcess]) -> CpuMeter:
    """Cores each service, the load's client and the broker use, and everyone else."""
    return meter(**{name: s.proc.pid for name, s in services.items() if s.proc is not None})


def memory(services: dict[str, ServiceProcess]) -> dict[str, int]:
    return {name: rss_kib(s.proc.pid) for name, s in services.items() if s.proc is not None}


# -- consumers ------------------------------------------------------------------------------


def last_stored(stores: Stores, source: str) -> int:
    column = "notification_id" if stores.kind == "postgres" else "rowid"
    table = stores.events_table(source)
    rows = stores.query(source, f"SELECT MAX({column}) AS n FROM {table}")
    return int(rows[0]["n"] or 0)


def last_tracked(stores: Stores, consumer: str, source: str) -> int:
    table = stores.tracking_table(consumer)
    sql = f"SELECT MAX(notification_id) AS n FROM {table} WHERE application_name = ?"
    return int(stores.query(consumer, sql, (source,))[0]["n"] or 0)


def lags(stores: Stores) -> dict[str, int]:
    """Per consumer and source: events stored by the source that the consumer has not applied."""
    stored = {s: last_stored(stores, s) for s in ("identification", "planning", "provisioning")}
    return {
        f"{consumer}<-{source}": stored[source] - last_tracked(stores, consumer, source)
        for consumer, sources in SUBSCRIBES.items()
        for source in sources
    }


def journalled_twice(stores: Stores) -> int:
    """Events in reporting's journal more than once (must be 0)."""
    rows = stores.query(
        "reporting",
        "SELECT COUNT(*) - COUNT(DISTINCT source || ':' || notification_id) AS n "
        "FROM reporting_journal",
    )
    return int(rows[0]["n"] or 0)


def caught_up(stores: Stores, timeout: float) -> tuple[dict[str, int], float]:
    """Wait until every consumer has applied every source's last event; the lags left and
    the seconds it took."""
    started = time.monotonic()
    with suppress(TimeoutError):
        wait_until(lambda: not any(lags(stores).values()), timeout, 0.5)
    return lags(stores), round(time.monotonic() - started, 1)


def logged_errors(services: dict[str, ServiceProcess]) -> dict[str, int]:
    """ERROR lines in each service's log (a refused command logs a WARNING only)."""
    counts = {}
    for name, service in services.items():
        text = service.log_path.read_text(errors="replace") if service.log_path.exists() else ""
        counts[name] = sum(
            1 for line in text.splitlines() if " ERROR " in line or " CRITICAL " in line
        )
    return counts
