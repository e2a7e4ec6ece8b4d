"""The real parts a benchmark run needs: RabbitMQ (one private vhost per measurement),
optionally PostgreSQL, and a description of the machine.

A broker or database already described by the environment (``AMQP_URI`` +
``PUMPURS_RABBITMQ_API``, ``PUMPURS_POSTGRES_ADMIN_DSN``: source the files written
by ``scripts/rabbitmq.sh`` / ``scripts/postgres.sh``) is used as it is. Otherwise
``python -m bench`` starts a private one with those scripts in ``var/bench-stack``
and stops it again at the end.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import re
import shlex
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from shared.testing import REPO, Broker

STACK_DIR = REPO / "var" / "bench-stack"


def log(message: str) -> None:
    stamp = dt.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


def _read_env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line.startswith("export "):
            continue
        key, _, value = line[len("export ") :].partition("=")
        parts = shlex.split(value) if value else [""]
        env[key] = parts[0] if parts else ""
    return env


class Stack:
    """Starts what is missing, remembers what it started, stops only that."""

    def __init__(self, want_postgres: bool) -> None:
        self.want_postgres = want_postgres
        self.started: list[str] = []

    def __enter__(self) -> Stack:
        if not (os.environ.get("AMQP_URI") and os.environ.get("PUMPURS_RABBITMQ_API")):
            self._start("rabbitmq")
        if self.want_postgres and not os.environ.get("PUMPURS_POSTGRES_ADMIN_DSN"):
            self._start("postgres")
        return self

    def _start(self, what: str) -> None:
        STACK_DIR.mkdir(parents=True, exist_ok=True)
        script = str(REPO / "scripts" / f"{what}.sh")
        status = subprocess.run([script, "status", str(STACK_DIR)], capture_output=True)
        log(f"no {what} in the environment: starting a private one in {STACK_DIR}")
        subprocess.run([script, "start", str(STACK_DIR)], check=True, capture_output=True)
        if status.returncode != 0:
            self.started.append(what)
        os.environ.update(_read_env_file(STACK_DIR / f"{what}.env"))

    def __exit__(self, *exc: Any) -> None:
        for what in reversed(self.started):
            script = str(REPO / "scripts" / f"{what}.sh")
            log(f"stopping the private {what}")
            subprocess.run([script, "stop", str(STACK_DIR)], capture_output=True)


@contextlib.contextmanager
def vhost(label: str) -> Iterator[Broker]:
    """A fresh vhost on the node, deleted afterwards whatever happens."""
    broker = Broker.from_env(os.environ)
    broker.vhost = f"bench-{label}-{uuid.uuid4().hex[:8]}"
    broker.create()
    try:
        yield broker
    finally:
        broker.delete()


def rabbitmq_version() -> str | None:
    try:
        answer = requests.get(
            f"{os.environ['PUMPURS_RABBITMQ_API']}/api/overview",
            auth=(
                os.environ.get("PUMPURS_RABBITMQ_API_USER", "guest"),
                os.environ.get("PUMPURS_RABBITMQ_API_PASSWORD", "guest"),
            ),
            timeout=5,
        )
        return str(answer.json().get("rabbitmq_version"))
    except Exception:
        return None


def postgres_version() -> str | None:
    dsn = os.environ.get("PUMPURS_POSTGRES_ADMIN_DSN")
    if not dsn:
        return None
    try:
        import psycopg

        with psycopg.connect(dsn) as c:
            row = c.execute("SHOW server_version").fetchone()
            return str(row[0]) if row else None
    except Exception:
        return None


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError):
        match = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        mem_kib = int(match.group(1)) if match else 0
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return {
        "nproc": int(nproc) if nproc.isdigit() else os.cpu_count(),
        "memory_mib": mem_kib // 1024,
        "cpu_model": cpu,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "rabbitmq": rabbitmq_version(),
        "postgres": postgres_version(),
        "git_commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
        ).stdout.strip(),
        # The code measured is the work tree: name what differs from the commit.
        "git_uncommitted": subprocess.run(
            ["git", "status", "--porcelain", "--", "shared", "services"],
            capture_output=True,
            text=True,
            cwd=REPO,
        ).stdout.split("\n")[:-1],
    }


def _cpu_times() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return idle, sum(fields)


def settle(max_seconds: float = 6.0, idle_share: float = 0.8, window: float = 0.5) -> float:
    """Wait until the machine is quiet (the broker finished deleting a vhost, a process
    exited...): the share of idle CPU over ``window`` reaches ``idle_share``."""
    import time

    started = time.monotonic()
    while time.monotonic() - started < max_seconds:
        idle0, total0 = _cpu_times()
        time.sleep(window)
        idle1, total1 = _cpu_times()
        if total1 > total0 and (idle1 - idle0) / (total1 - total0) >= idle_share:
            break
    return time.monotonic() - started


def process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used so far (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Cores used by some processes, and by the whole machine, over a stretch of time."""

    def __init__(self, pids: dict[str, int]) -> None:
        import time

        self.pids = pids
        self._clock = time.perf_counter
        self.start = self._clock()
        self.cpu = {name: process_cpu(pid) for name, pid in pids.items()}
        self.machine = _cpu_times()

    def read(self) -> dict[str, float]:
        seconds = self._clock() - self.start
        out: dict[str, float] = {}
        for name, pid in self.pids.items():
            now, then = process_cpu(pid), self.cpu[name]
            if now is not None and then is not None:
                out[f"{name}_cores"] = round((now - then) / seconds, 2)
        idle, total = _cpu_times()
        busy = 1 - (idle - self.machine[0]) / max(total - self.machine[1], 1)
        out["machine_busy_cores"] = round(busy * (os.cpu_count() or 1), 2)
        # What nothing of this measurement used: other people's work on the machine.
        ours = sum(v for k, v in out.items() if k.endswith("_cores") and k != "machine_busy_cores")
        out["other_work_cores"] = round(max(out["machine_busy_cores"] - ours, 0.0), 2)
        out["seconds"] = round(seconds, 3)
        return out


def broker_pid() -> int | None:
    """The Erlang VM of the node under test (found by its HOME on the command line)."""
    home = os.environ.get("PUMPURS_RABBITMQ_ERLANG_HOME")
    if not home:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if argv and argv[0].endswith(b"beam.smp") and home.encode() in argv:
                return int(entry.name)
    return None


def meter(**pids: int | None) -> CpuMeter:
    """A CpuMeter over the given processes, plus this process and the broker."""
    chosen = {name: pid for name, pid in pids.items() if pid}
    chosen["bench_client"] = os.getpid()
    broker = broker_pid()
    if broker:
        chosen["broker"] = broker
    return CpuMeter(chosen)


def background_load(seconds: float = 2.0) -> float:
    """Cores busy on the machine while this run does nothing (other people's work)."""
    import time

    idle0, total0 = _cpu_times()
    time.sleep(seconds)
    idle1, total1 = _cpu_times()
    busy = 1 - (idle1 - idle0) / max(total1 - total0, 1)
    return round(busy * (os.cpu_count() or 1), 2)
