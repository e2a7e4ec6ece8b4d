"""The peers of the command-path benchmark, as plain nameko services.

``python -m bench.peer peer``: the conventional nameko way to do the same commands.
Each ``@http`` endpoint validates the same JSON body with the same marshmallow
schema as identification, commits one row to its own SQLite file (WAL, like
eventsourcing's SQLite store), then dispatches a nameko event with
``EventDispatcher`` (persistent, publisher confirms: the answer waits for the
broker's confirm), and only then answers. No authentication, no event store, no
outbox: commit-then-dispatch.

``python -m bench.peer noop``: the same routes on a bare nameko ``@http`` endpoint that
does nothing: the ceiling of nameko's HTTP stack on this machine.

Configuration from the environment: ``AMQP_URI``, ``PEER_PORT``, ``PEER_DB``,
``PEER_MAX_WORKERS`` (default 16, as the services).
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

SERVICE_NAME = "peer"


def _define() -> tuple[type, type]:
    import json
    import sqlite3
    import uuid

    from marshmallow import ValidationError
    from nameko.events import EventDispatcher
    from nameko.extensions import DependencyProvider
    from nameko.web.handlers import http
    from werkzeug.wrappers import Response

    from services.identification.schemas import RecordRiskSignSchema, RegisterPupilSchema

    def answer(status: int, payload: Any) -> Response:
        return Response(json.dumps(payload), status=status, mimetype="application/json")

    def load(schema: Any, request: Any) -> tuple[dict[str, Any] | None, Response | None]:
        try:
            return schema().load(json.loads(request.get_data())), None
        except (ValueError, ValidationError) as exc:
            details = exc.messages if isinstance(exc, ValidationError) else {}
            return None, answer(422, {"error": {"code": "invalid", "details": details}})

    class Rows(DependencyProvider):
        """One SQLite connection; a worker's insert and commit never yield to another."""

        def setup(self) -> None:
            path = os.environ.get("PEER_DB", "var/bench/peer.sqlite")
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS pupils (pupil_id TEXT PRIMARY KEY, school_id TEXT, "
                "grade INTEGER, gender TEXT, birth_date TEXT, version INTEGER)"
            )
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS risk_signs (id INTEGER PRIMARY KEY, pupil_id TEXT, "
                "code TEXT, observed_on TEXT, evidence TEXT, version INTEGER)"
            )

        def commit(self, statement: str, params: tuple[Any, ...]) -> None:
            self.db.execute("BEGIN")
            try:
                self.db.execute(statement, params)
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

        def get_dependency(self, worker_ctx: Any) -> Rows:
            return self

    class PeerService:
        name = SERVICE_NAME
        rows = Rows()
        dispatch = EventDispatcher()

        @http("POST", "/pupils")
        def register_pupil(self, request: Any) -> Response:
            body, error = load(RegisterPupilSchema, request)
            if error is not None:
                return error
            assert body is not None
            pupil_id = str(uuid.uuid4())
            self.rows.commit(
                "INSERT INTO pupils VALUES (?, ?, ?, ?, ?, 1)",
                (
                    pupil_id,
                    body["school_id"],
                    body["grade"],
                    body["gender"],
                    body["birth_date"].isoformat(),
                ),
            )
            self.dispatch(
                "pupil_registered",
                {
                    "pupil_id": pupil_id,
                    "school_id": body["school_id"],
                    "grade": body["grade"],
                    "gender": body["gender"],
                },
            )
            return answer(201, {"pupil_id": pupil_id, "version": 1})

        @http("POST", "/pupils/<string:pupil_id>/risk-signs")
        def record_risk_sign(self, request: Any, pupil_id: str) -> Response:
            body, error = load(RecordRiskSignSchema, request)
            if error is not None:
                return error
            assert body is not None
            version = body["expected_version"] + 1
            self.rows.commit(
                "INSERT INTO risk_signs (pupil_id, code, observed_on, evidence, version) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    pupil_id,
                    body["code"],
                    body["observed_on"].isoformat(),
                    body["evidence"],
                    version,
                ),
            )
            self.dispatch(
                "risk_sign_recorded",
                {"pupil_id": pupil_id, "code": body["code"], "version": version},
            )
            return answer(201, {"pupil_id": pupil_id, "version": version})

        @http("GET", "/health/ready")
        def ready(self, request: Any) -> Response:
            return answer(200, {"status": "ready"})

    class NoopService:
        name = "noop"

        @http("POST", "/pupils")
        def register_pupil(self, request: Any) -> Response:
            return answer(201, {"pupil_id": "00000000-0000-0000-0000-000000000000", "version": 1})

        @http("POST", "/pupils/<string:pupil_id>/risk-signs")
        def record_risk_sign(self, request: Any, pupil_id: str) -> Response:
            return answer(201, {"pupil_id": pupil_id, "version": 2})

        @http("GET", "/health/ready")
        def ready(self, request: Any) -> Response:
            return answer(200, {"status": "ready"})

    return PeerService, NoopService


def main(argv: list[str]) -> int:
    which = argv[0] if argv else "peer"
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    import eventlet

    eventlet.monkey_patch()
    import logging

    from nameko.cli.run import run

    logging.basicConfig(level=logging.WARNING)
    peer, noop = _define()
    config = {
        "AMQP_URI": os.environ.get("AMQP_URI", "amqp://guest:guest@localhost:5672/"),
        "WEB_SERVER_ADDRESS": f"127.0.0.1:{os.environ.get('PEER_PORT', '8090')}",
        "max_workers": int(os.environ.get("PEER_MAX_WORKERS", "16")),
    }

    def tick() -> None:
        # A process that serves only HTTP sees SIGTERM only when the hub wakes up.
        while True:
            eventlet.sleep(0.2)

    eventlet.spawn_n(tick)
    run([peer if which == "peer" else noop], config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
