"""The fault suite: clients drive pupils and plans while the broker, the consumers, PostgreSQL
and the network between the services and the broker fail; then the history is checked.

    python -m chaos.faults [--profile short|full] [--store sqlite|postgres]

Without ``AMQP_URI`` and ``PUMPURS_RABBITMQ_API`` in the environment (as ``scripts/test.sh``
sets them) it starts its own RabbitMQ node and PostgreSQL cluster in ``var/chaos-stack``
with ``scripts/rabbitmq.sh`` / ``scripts/postgres.sh`` and stops them at the end.
The four services run as real processes (``pumpurs serve``); their ``AMQP_URI`` names
the proxy (chaos/proxy.py), which forwards to the broker. It prints a table and writes
it as JSON to ``var/chaos/faults-PROFILE-STORE.json``. Exit status 1 when a command or an
event was lost or doubled or a check failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from chaos.history import (
    SCHOOL,
    SERVICES,
    Actor,
    Checker,
    Clients,
    History,
    People,
    Verdict,
    rebuild_unchanged,
)
from chaos.proxy import Proxy
from shared.testing import REPO, Broker, ServiceProcess, Stores, restart_broker, token_for


@dataclass(frozen=True)
class Profile:
    rounds: int
    pause: float  # seconds of plain load between faults
    fault_seconds: float  # how long a drop or a delay lasts
    clients: int
    pace: float  # seconds each client waits before a command


PROFILES = {
    "short": Profile(rounds=1, pause=2.0, fault_seconds=2.5, clients=4, pace=0.2),
    "full": Profile(rounds=4, pause=8.0, fault_seconds=6.0, clients=4, pace=0.2),
}
POSTGRES_DOWN_SECONDS = 10.0
# After the last fault the consumers must catch up: stuck is a failure, slow is not.
STALL_SECONDS = 60.0
SETTLE_CAP_SECONDS = 600.0
CONSUMERS = ("planning", "reporting")


@dataclass
class Report:
    profile: str
    store: str
    injected: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    verdict: Verdict = field(default_factory=Verdict)
    rebuild_unchanged: bool = False
    settled_seconds: float | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.verdict.ok and self.rebuild_unchanged and self.settled_seconds is not None

    def as_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "store": self.store,
            "faults_injected": dict(self.injected),
            "commands": dict(self.outcomes),
            "lost": self.verdict.lost,
            "duplicated": self.verdict.duplicated,
            "failures": self.verdict.failures,
            "settled_seconds": self.settled_seconds,
            "read_models_equal_rebuild": self.rebuild_unchanged,
            "seconds": round(self.seconds, 1),
            "ok": self.ok,
        }

    def _rebuild_verdict(self) -> str:
        if self.settled_seconds is None:
            return "not compared (consumers never caught up)"
        return "yes" if self.rebuild_unchanged else "NO"

    def table(self) -> str:
        rows: list[tuple[str, Any]] = [(f"fault: {k}", v) for k, v in sorted(self.injected.items())]
        rows += [
            ("commands sent", sum(self.outcomes.values())),
            ("acknowledged (2xx)", self.outcomes["ack"]),
            ("refused (4xx)", self.outcomes["4xx"]),
            ("failed (5xx)", self.outcomes["5xx"]),
            ("unknown (no answer)", self.outcomes["unknown"]),
            ("lost", self.verdict.lost),
            ("duplicated", self.verdict.duplicated),
            (
                "consumers caught up after",
                "never" if self.settled_seconds is None else f"{self.settled_seconds:.1f} s",
            ),
            ("read models equal a rebuild", self._rebuild_verdict()),
            ("run", f"{self.seconds:.0f} s"),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"fault suite, profile {self.profile}, store {self.store}"]
        lines += [f"  {name:<{width}}  {value}" for name, value in rows]
        lines += [f"  FAILED: {failure}" for failure in self.verdict.failures[:20]]
        lines.append("  result: " + ("ok" if self.ok else "FAILED"))
        return "\n".join(lines)


def proxied(uri: str, port: int) -> str:
    """The same AMQP URI (credentials, vhost), pointing at the proxy."""
    parts = urlsplit(uri)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


class FaultRun:
    """The services of one run behind the proxy, the clients, and the faults."""

    def __init__(
        self,
        environ: Mapping[str, str],
        broker: Broker,
        stores: Stores,
        keys_dir: Path,
        log_dir: Path,
        profile: str,
    ) -> None:
        self.environ, self.broker, self.stores = environ, broker, stores
        self.keys_dir, self.log_dir = keys_dir, log_dir
        self.profile = PROFILES[profile]
        self.report = Report(profile, stores.kind)
        self.history = History()
        upstream = urlsplit(broker.base_uri)
        self.proxy = Proxy((upstream.hostname or "127.0.0.1", upstream.port or 5672))
        self.services: dict[str, ServiceProcess] = {}

    # -- the system --------------------------------------------------------------------
    def service(self, name: str) -> ServiceProcess:
        env = {
            "AMQP_URI": proxied(self.broker.uri, self.proxy.port),
            "PUMPURS_KEYS_DIR": str(self.keys_dir),
            "PUMPURS_CATCH_UP_INTERVAL": "1.0",
            "PUMPURS_LOG_LEVEL": "INFO",
            **self.stores.env([name]),
        }
        return ServiceProcess(name, env, self.log_dir)

    def token(self, role: str, **claims: str) -> str:
        return token_for(role, self.keys_dir, **claims)

    def people(self) -> People:
        def actor(service: str, role: str, **claims: str) -> Actor:
            token = self.token(role, **claims)
            url = self.services[service].url
            return Actor(self.history, service, url, token, self.profile.pace)

        return People(
            teacher_id=actor("identification", "teacher", school=SCHOOL),
            teacher=actor("planning", "teacher", school=SCHOOL),
            director=actor("planning", "director", school=SCHOOL),
            municipal=actor("planning", "municipal_coordinator", municipality="daugavpils"),
            national=actor("planning", "national_coordinator"),
        )

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        self.proxy.start()
        self.services = {name: self.service(name) for name in SERVICES}
        try:
            for process in self.services.values():
                process.start(wait=False)
            for process in self.services.values():
                process.wait_ready(90)
            yield
        finally:
            for process in self.services.values():
                with contextlib.suppress(Exception):
                    process.stop()
            self.proxy.stop()

    # -- the faults ----------------------------------------------------------------------
    def _inject(self, kind: str, action: Callable[[], Any]) -> None:
        began = time.monotonic()
        action()
        print(f"  {kind} injected in {time.monotonic() - began:.1f} s", flush=True)
        self.report.injected[kind] += 1
        time.sleep(self.profile.pause)

    def proxy_delay(self) -> None:
        self.proxy.delay(0.2)
        time.sleep(self.profile.fault_seconds)
        self.proxy.passthrough()

    def proxy_drop(self) -> None:
        self.proxy.drop()
        time.sleep(self.profile.fault_seconds)
        self.proxy.passthrough()

    def proxy_reset(self) -> None:
        if not self.proxy.reset():
            raise RuntimeError("the proxy carried no connection to reset")

    def broker_restart(self) -> None:
        restart_broker(self.environ, down_seconds=1.0)

    def consumer_kill(self) -> None:
        """SIGKILL planning and reporting while they hold delivered, unacknowledged
        messages (the broker's figures lag by a few seconds), then start them again."""
        queues = [f"{name}.from.identification" for name in CONSUMERS]
        deadline = time.monotonic() + 15
        while not all(self.broker.queue(q).get("messages_unacknowledged") for q in queues):
            if time.monotonic() > deadline:
                break  # busy consuming all the same: the clients never stop
            time.sleep(0.1)
        for name in CONSUMERS:
            self.services[name].kill()
        for name in CONSUMERS:
            self.services[name].start(wait=False)
        for name in CONSUMERS:
            self.services[name].wait_ready(90)

    def postgres_stop(self) -> None:
        state = self.environ["PUMPURS_POSTGRES_STATE_DIR"]
        script = str(REPO / "scripts" / "postgres.sh")
        subprocess.run([script, "stop", state], check=True, capture_output=True)
        time.sleep(POSTGRES_DOWN_SECONDS)
        subprocess.run([script, "start", state], check=True, capture_output=True)

    def faults(self) -> list[tuple[str, Callable[[], Any]]]:
        chosen: list[tuple[str, Callable[[], Any]]] = [
            ("proxy_delay", self.proxy_delay),
            ("proxy_drop", self.proxy_drop),
            ("proxy_reset", self.proxy_reset),
            ("consumer_kill", self.consumer_kill),
            ("broker_restart", self.broker_restart),
        ]
        if self.stores.kind == "postgres":
            chosen.append(("postgres_stop", self.postgres_stop))
        return chosen

    # -- the run --------------------------------------------------------------------------
    def run(self) -> Report:
        started = time.monotonic()
        with self.running():
            print(f"  services ready in {time.monotonic() - started:.0f} s", flush=True)
            clients = Clients(self.people, self.profile.clients)
            clients.start()
            try:
                time.sleep(self.profile.pause)
                for _ in range(self.profile.rounds):
                    for kind, action in self.faults():
                        self._inject(kind, action)
            finally:
                clients.stop()
            print(f"  clients stopped at {time.monotonic() - started:.0f} s", flush=True)
            self.check()
        self.report.seconds = time.monotonic() - started
        return self.report

    def check(self) -> None:
        checker = Checker(self.stores)
        settling = time.monotonic()
        if checker.wait_settled(stall=STALL_SECONDS, cap=SETTLE_CAP_SECONDS):
            self.report.settled_seconds = time.monotonic() - settling
        else:
            self.report.verdict.fail(
                f"consumers made no progress for {STALL_SECONDS:.0f} s or were still behind "
                f"after {SETTLE_CAP_SECONDS:.0f} s"
            )
        self.report.outcomes = self.history.outcomes()
        print("  " + ", ".join(f"{k}: {v}" for k, v in sorted(self.history.by_name().items())))
        checker.check(self.history, self.report.verdict)
        people = self.people()
        checker.at_risk_agrees(people.teacher_id, people.teacher, self.report.verdict)
        if self.report.settled_seconds is None:
            return  # a rebuild while events still arrive would differ for no fault of its own
        unchanged, output = rebuild_unchanged(self.stores.env(["reporting"]))
        self.report.rebuild_unchanged = unchanged
        if not unchanged:
            self.report.verdict.fail(f"reporting rebuild: {output[-300:]}")


# -- standalone: a stack of our own -------------------------------------------------------


def _sourced(*env_files: Path) -> dict[str, str]:
    script = "set -a; " + " ".join(f'source "{f}";' for f in env_files) + " env -0"
    out = subprocess.run(["bash", "-c", script], check=True, capture_output=True).stdout
    pairs = (item.split("=", 1) for item in out.decode().split("\0") if "=" in item)
    return dict(pairs)


@contextlib.contextmanager
def own_stack(state: Path) -> Iterator[dict[str, str]]:
    if os.environ.get("AMQP_URI") and os.environ.get("PUMPURS_RABBITMQ_API"):
        yield dict(os.environ)
        return
    scripts = REPO / "scripts"
    state.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run([scripts / "rabbitmq.sh", "start", state], check=True)
        subprocess.run([scripts / "postgres.sh", "start", state], check=True)
        yield _sourced(state / "rabbitmq.env", state / "postgres.env")
    finally:
        subprocess.run([scripts / "postgres.sh", "stop", state], check=False)
        subprocess.run([scripts / "rabbitmq.sh", "stop", state], check=False)


def run_once(environ: Mapping[str, str], store: str, profile: str, work: Path) -> Report:
    broker = Broker.from_env(environ)
    broker.create()
    stores = Stores(store, work / "data", environ)
    try:
        run = FaultRun(environ, broker, stores, work / "keys", work, profile)
        return run.run()
    finally:
        stores.drop()
        broker.delete()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.faults", description=__doc__)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="short")
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--stack", default="var/chaos-stack", help="where to start a stack")
    args = parser.parse_args(argv)
    with own_stack(REPO / args.stack) as environ:
        # restart_broker and postgres_stop act on the stack's own node and cluster.
        os.environ.update(environ)
        work = Path(tempfile.mkdtemp(prefix="pumpurs-chaos-"))
        report = run_once(environ, args.store, args.profile, work)
        print(report.table(), flush=True)
        out = REPO / "var" / "chaos" / f"faults-{args.profile}-{args.store}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report.as_json(), indent=2) + "\n")
        if report.ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"  the services' logs are kept in {work}", file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    threading.current_thread().name = "chaos"
    sys.exit(main())
