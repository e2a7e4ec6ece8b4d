"""Test helpers shared by the services' test suites: real broker vhosts, real stores,
service processes started the way ``make run`` starts them, and an HTTP client.

Nothing here is imported by the services themselves.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from shared.auth import mint_token
from shared.brokeraccess import ManagementApi, service_uri, user_name

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll until the predicate returns something truthy; return it or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)


# -- the broker -------------------------------------------------------------------


@dataclass
class Broker:
    """One private vhost on the test node, so tests never see each other's queues."""

    api: str
    user: str
    password: str
    base_uri: str
    vhost: str = field(default_factory=lambda: f"t-{uuid.uuid4().hex[:12]}")
    _service_uris: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    @property
    def uri(self) -> str:
        return f"{self.base_uri.rstrip('/')}/{quote(self.vhost, safe='')}"

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        response = requests.request(
            method, f"{self.api}{path}", auth=(self.user, self.password), timeout=30, **kwargs
        )
        response.raise_for_status()
        return response

    def create(self) -> None:
        v = quote(self.vhost, safe="")
        self._call("PUT", f"/api/vhosts/{v}", json={})
        self._call(
            "PUT",
            f"/api/permissions/{v}/{quote(self.user)}",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        )

    def uri_for(self, service: str) -> str:
        """The service's own user on this vhost (``shared.brokeraccess``), made on first use."""
        if service not in self._service_uris:
            api = ManagementApi(self.api, self.user, self.password)
            user, password = api.grant(self.vhost, service)
            self._service_uris[service] = service_uri(self.uri, user, password)
        return self._service_uris[service]

    def delete(self) -> None:
        api = ManagementApi(self.api, self.user, self.password)
        with contextlib.suppress(requests.RequestException):
            for service in self._service_uris:
                api.delete_user(user_name(service, self.vhost))
            self._call("DELETE", f"/api/vhosts/{quote(self.vhost, safe='')}")

    def queue(self, name: str) -> dict[str, Any]:
        v = quote(self.vhost, safe="")
        return dict(self._call("GET", f"/api/queues/{v}/{quote(name, safe='')}").json())

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Broker:
        missing = [k for k in ("AMQP_URI", "PUMPURS_RABBITMQ_API") if not environ.get(k)]
        if missing:
            raise RuntimeError(
                f"{', '.join(missing)} not set: run the tests through `make test`, "
                "which starts RabbitMQ and PostgreSQL"
            )
        return cls(
            api=environ["PUMPURS_RABBITMQ_API"],
            user=environ.get("PUMPURS_RABBITMQ_API_USER", "guest"),
            password=environ.get("PUMPURS_RABBITMQ_API_PASSWORD", "guest"),
            base_uri=environ["AMQP_URI"],
        )


def restart_broker(environ: Mapping[str, str], down_seconds: float = 0.0) -> None:
    """SIGKILL the test node and start it again on the same ports."""
    broker_script(environ, "kill")
    time.sleep(down_seconds)
    broker_script(environ, "start")


def broker_script(environ: Mapping[str, str], command: str) -> None:
    """``scripts/rabbitmq.sh COMMAND`` on the test node (kill, start, ...)."""
    script = str(REPO / "scripts" / "rabbitmq.sh")
    state = environ["PUMPURS_RABBITMQ_STATE_DIR"]
    subprocess.run([script, command, state], check=True, capture_output=True)


# -- the stores -----------------------------------------------------------------


def postgres_conninfo(environ: Mapping[str, str], dbname: str) -> str:
    """How tests and benchmarks reach the stack's PostgreSQL (scripts/postgres.sh's env)."""
    return (
        f"host={environ['POSTGRES_HOST']} port={environ['POSTGRES_PORT']} "
        f"user={environ['POSTGRES_USER']} dbname={dbname} "
        f"password={environ.get('POSTGRES_PASSWORD', '')}"
    )


class Stores:
    """Where each service of one test keeps its events: SQLite files or PostgreSQL databases."""

    def __init__(self, kind: str, data_dir: Path, environ: Mapping[str, str]) -> None:
        self.kind = kind
        self.data_dir = data_dir
        self._environ = environ
        self._prefix = f"t{uuid.uuid4().hex[:10]}"
        self._databases: list[str] = []

    def env(self, services: list[str]) -> dict[str, str]:
        env = {"PUMPURS_DATA_DIR": str(self.data_dir)}
        if self.kind != "postgres":
            return env
        env["PERSISTENCE_MODULE"] = "eventsourcing.postgres"
        for key in ("POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_USER", "POSTGRES_PASSWORD"):
            env[key] = self._environ[key]
        for service in services:
            name = f"{self._prefix}_{service}"
            if name not in self._databases:
                self._admin(f'CREATE DATABASE "{name}"')
                self._databases.append(name)
            env[f"{service.upper()}_POSTGRES_DBNAME"] = name
        return env

    def database(self, service: str) -> str:
        return f"{self._prefix}_{service}"

    def _admin(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self._environ["PUMPURS_POSTGRES_ADMIN_DSN"], autocommit=True) as c:
            c.execute(statement.encode())

    def drop(self) -> None:
        for name in self._databases:
            with contextlib.suppress(Exception):
                self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def query(self, service: str, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Read a service's own database directly, as an operator or auditor could."""
        return self._run(service, statement, params, commit=False)

    def write(self, service: str, statement: str, params: tuple[Any, ...] = ()) -> None:
        """Change a service's database directly, as another replica's commit would."""
        self._run(service, statement, params, commit=True)

    def _run(
        self, service: str, statement: str, params: tuple[Any, ...], commit: bool
    ) -> list[Any]:
        if self.kind == "postgres":
            import psycopg
            from psycopg.rows import dict_row

            conninfo = postgres_conninfo(self._environ, self.database(service))
            with psycopg.connect(conninfo, row_factory=dict_row, autocommit=commit) as c:
                cursor = c.execute(statement.replace("?", "%s").encode(), params)
                return list(cursor.fetchall()) if cursor.description else []
        import sqlite3

        with contextlib.closing(sqlite3.connect(self.data_dir / f"{service}.sqlite")) as c:
            c.row_factory = sqlite3.Row
            rows = [dict(row) for row in c.execute(statement, params).fetchall()]
            if commit:
                c.commit()
            return rows

    @contextlib.contextmanager
    def outage(self, service: str) -> Iterator[None]:
        """The service's store stops answering it: PostgreSQL refuses its connections
        (and drops the open ones); SQLite is held locked by another writer."""
        if self.kind == "postgres":
            name = self.database(service)
            self._admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            self._admin(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            )
            try:
                yield
            finally:
                self._admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            return
        import sqlite3

        locker = sqlite3.connect(self.data_dir / f"{service}.sqlite", isolation_level=None)
        try:
            locker.execute("BEGIN EXCLUSIVE")
            yield
        finally:
            locker.close()  # rolls the empty transaction back

    def copy(self, service: str) -> Callable[[], None]:
        """Copy the (stopped) service's store; the function returned puts the copy back,
        dropping every commit since, as a power cut or a restore from backup would."""
        if self.kind == "postgres":
            name = self.database(service)
            self._admin(f'CREATE DATABASE "{name}_copy" TEMPLATE "{name}"')
            self._databases.append(f"{name}_copy")

            def restore_database() -> None:
                self._admin(f'DROP DATABASE "{name}" WITH (FORCE)')
                self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{name}_copy"')

            return restore_database
        copies = self.data_dir / f"{service}-copy"
        copies.mkdir()
        files = sorted(self.data_dir.glob(f"{service}.sqlite*"))
        for path in files:
            shutil.copy2(path, copies / path.name)

        def restore_files() -> None:
            for path in self.data_dir.glob(f"{service}.sqlite*"):
                path.unlink()
            for path in files:
                shutil.copy2(copies / path.name, path)

        return restore_files

    def events_table(self, service: str) -> str:
        return f"{service}_events" if self.kind == "postgres" else "stored_events"

    def tracking_table(self, service: str) -> str:
        return f"{service}_tracking" if self.kind == "postgres" else "tracking"


# -- service processes ------------------------------------------------------------


class ServiceProcess:
    """One service run by ``pumpurs serve``, exactly as ``make run`` runs it."""

    def __init__(
        self,
        name: str,
        env: Mapping[str, str],
        log_dir: Path,
        operator_amqp_uri: str | None = None,
    ) -> None:
        self.name = name
        self.port = free_port()
        self.env = {**env, "PUMPURS_HTTP_PORT": str(self.port), "PUMPURS_HTTP_HOST": "127.0.0.1"}
        # What a test calls the service's RPCs with, as an operator: the service's own
        # broker user may not call them.
        self.operator_amqp_uri = operator_amqp_uri or self.env["AMQP_URI"]
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> ServiceProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", "serve", self.name],
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
            try:
                return requests.get(f"{self.url}/health/ready", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        try:
            wait_until(ready, timeout, interval=0.1)
        except TimeoutError:
            raise RuntimeError(f"{self.name} not ready in {timeout}s:\n{self.log_tail()}") from None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample of this service's /metrics (0 when absent)."""
        text = requests.get(f"{self.url}/metrics", timeout=5).text
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


# -- a client ---------------------------------------------------------------------


class Client:
    """HTTP calls as one user would make them."""

    def __init__(self, base_url: str, token: str | None) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.base_url + path, timeout=30, **kwargs)

    def post(self, path: str, json: Any = None, **kwargs: Any) -> requests.Response:
        return self.session.post(self.base_url + path, json=json, timeout=30, **kwargs)


def token_for(
    role: str, keys_dir: Path, *, school: str | None = None, municipality: str | None = None
) -> str:
    environ = {"PUMPURS_KEYS_DIR": str(keys_dir)}
    return mint_token(
        role, sub=f"test-{role}", school=school, municipality=municipality, environ=environ
    )


@contextlib.contextmanager
def running(*services: ServiceProcess) -> Iterator[tuple[ServiceProcess, ...]]:
    try:
        for service in services:
            service.start(wait=False)
        for service in services:
            service.wait_ready()
        yield services
    finally:
        # Stopped together: each takes about two seconds (nameko's consumers notice a stop
        # once a second), so several stop in the time of one. A failure stays in its future.
        with ThreadPoolExecutor(max_workers=max(len(services), 1)) as pool:
            for service in services:
                pool.submit(service.stop)
