"""HTTP entrypoints: JSON in and out, auth, schema validation, errors, metrics.

``@route`` replaces nameko's ``@http``: the method gets a ``Call`` (principal,
validated body and query) plus the URL values, and returns a dict, a
``(status, dict)`` pair or a werkzeug ``Response``. Every error becomes
``{"error": {"code", "message", "details"}}`` with the status from
``shared.errors.HTTP_STATUS``; a stack trace never leaves the process.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventlet.event import Event
from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError
from marshmallow import Schema, ValidationError
from nameko.containers import WorkerContext
from nameko.web.handlers import HttpRequestHandler
from nameko.web.server import WebServer, WsgiApp
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from shared.auth import Principal, TokenVerifier, public_key_pem
from shared.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    PumpursError,
    StoreUnavailableError,
    error_body,
    http_status,
)
from shared.eventstore import store_of
from shared.idempotency import canonical
from shared.metrics import metrics_for
from shared.ratelimit import limiter_for
from shared.store import store_not_answering

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 1024 * 1024
JSON = "application/json"


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    raise TypeError(f"cannot encode {type(value).__name__}")


def json_response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
    body = json.dumps(payload, default=_default, ensure_ascii=False, separators=(",", ":"))
    return Response(body, status=status, headers=dict(headers or {}), mimetype=JSON)


def error_response(error: PumpursError) -> Response:
    headers = {}
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return json_response(http_status(error), error_body(error), headers)


@dataclass
class Call:
    """One HTTP call as a handler sees it."""

    request: Request
    principal: Principal | None
    body: dict[str, Any] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)

    @property
    def user(self) -> Principal:
        assert self.principal is not None, "public routes have no principal"
        return self.principal


def verifier_for(container: Any) -> TokenVerifier:
    verifier = getattr(container, "pumpurs_verifier", None)
    if verifier is None:
        config = {k: str(v) for k, v in container.config.items() if isinstance(v, str)}
        import os

        verifier = TokenVerifier(public_key_pem({**os.environ, **config}))
        container.pumpurs_verifier = verifier
    return verifier


@functools.cache
def schema_instance(schema: type[Schema]) -> Schema:
    """One instance per schema class, reused: building one costs more than using it."""
    return schema()


def _load(schema: type[Schema] | None, data: Any, where: str) -> dict[str, Any]:
    if schema is None:
        return {}
    try:
        return dict(schema_instance(schema).load(data))
    except ValidationError as exc:
        raise InvalidInputError(f"the {where} is not valid", {"fields": exc.messages}) from None


class JsonWsgiApp(WsgiApp):
    """Unknown routes and wrong methods answer in the same JSON error shape."""

    def __call__(self, environ: Any, start_response: Any) -> Any:
        request = Request(environ, shallow=True)
        adapter = self.url_map.bind_to_environ(environ)
        try:
            provider, values = adapter.match()
        except HTTPException as exc:
            status = exc.code or 404
            code = "not_found" if status == 404 else "method_not_allowed"
            body = {"error": {"code": code, "message": exc.name.lower(), "details": {}}}
            return json_response(status, body)(environ, start_response)
        request.path_values = values  # type: ignore[attr-defined]
        return provider.handle_request(request)(environ, start_response)


class PathOnlyAccessLog(logging.Filter):
    """The access log keeps each request's path but not its query string: a query holds
    whatever a user typed, such as a personal code in the wrong field."""

    _query = re.compile(r'("[A-Z]+ [^ ?"]*)\?[^ "]*')

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = self._query.sub(r"\1", record.msg)
        return True


class JsonWebServer(WebServer):
    def get_wsgi_app(self) -> JsonWsgiApp:
        return JsonWsgiApp(self)

    def get_wsgi_server(self, *args: Any, **kwargs: Any) -> Any:
        access_log = logging.getLogger("nameko.web.server")  # the logger nameko hands eventlet
        if not any(isinstance(f, PathOnlyAccessLog) for f in access_log.filters):
            access_log.addFilter(PathOnlyAccessLog())
        return super().get_wsgi_server(*args, **kwargs)


class Route(HttpRequestHandler):
    server = JsonWebServer()

    def __init__(
        self,
        method: str,
        url: str,
        *,
        body: type[Schema] | None = None,
        query: type[Schema] | None = None,
        answer: type[Schema] | None = None,
        status: int = 200,
        roles: tuple[str, ...] | None = None,
        public: bool = False,
        summary: str = "",
        body_description: str = "",
        pooled: bool = True,
        max_body: int = DEFAULT_MAX_BODY,
        raw_body: bool = False,
        body_types: tuple[str, ...] = (JSON,),
        answer_types: tuple[str, ...] = (JSON,),
        idempotent: bool = False,
        **kwargs: Any,
    ) -> None:
        self.body_schema = body
        self.query_schema = query
        self.answer_schema = answer
        self.status = status
        self.roles = roles
        self.public = public
        self.summary = summary
        self.max_body = max_body
        self.raw_body = raw_body
        self.body_description = body_description  # a raw body's format, for the OpenAPI document
        # Probes and metrics run without a slot of the worker pool: when every worker waits
        # for a store that does not answer, Kubernetes must still find the process alive
        # (and not restart it for nothing) and Prometheus must still scrape it.
        self.pooled = pooled
        # Media types the OpenAPI document declares: a raw body's, and a success answer's.
        self.body_types = body_types
        self.answer_types = answer_types
        # A POST that creates something (201), or one a route declares so, honours
        # Idempotency-Key.
        self.idempotent = method == "POST" and (status == 201 or idempotent)
        kwargs.setdefault("expected_exceptions", (PumpursError,))
        super().__init__(method, url, **kwargs)

    def get_url_rule(self) -> Rule:
        return Rule(self.url, methods=[self.method])

    def setup(self) -> None:
        super().setup()
        self.metrics = metrics_for(self.container)

    # -- request handling ---------------------------------------------------------
    def handle_request(self, request: Request) -> Response:
        request.shallow = False
        started = time.perf_counter()
        try:
            call = self._prepare(request)
            response = self._answer(call, request)
        except PumpursError as exc:
            response = error_response(exc)
        except IntegrityError:
            # Two commands raced on one aggregate version: the loser changes nothing.
            response = error_response(
                ConflictError("the resource was changed concurrently; reload and retry")
            )
        except (InterfaceError, OperationalError) as exc:
            if not store_not_answering(exc):
                response = self._internal_error()
            else:
                log.warning("store not answering in %s %s", self.method, self.url)
                response = error_response(StoreUnavailableError())
        except Exception:
            response = self._internal_error()
        self._observe(response.status_code, time.perf_counter() - started)
        return response

    def _internal_error(self) -> Response:
        # The exception type only: messages may quote input.
        log.error("unhandled error in %s %s", self.method, self.url, exc_info=True)
        return json_response(
            500, {"error": {"code": "internal", "message": "internal error", "details": {}}}
        )

    def _answer(self, call: Call, request: Request) -> Response:
        values = request.path_values  # type: ignore[attr-defined]
        key = request.headers.get("Idempotency-Key")
        if not (key and self.idempotent and call.principal):
            return self._respond(self._run_worker(call, values))
        if len(key) > 200:
            raise BadRequestError("the Idempotency-Key is longer than 200 characters")
        store = store_of(self.container).idempotency
        # The query is part of the request: the same file for another school is another.
        target = request.full_path if request.query_string else request.path
        key_hash = store.key_hash(call.principal.sub, f"{self.method} {target}", key)
        request_hash = store.request_hash(canonical(request.get_data(cache=True)))
        earlier = store.find(key_hash, request_hash)
        if earlier is not None:
            return Response(
                earlier.body,
                status=earlier.status,
                mimetype=JSON,
                headers={"Idempotent-Replayed": "true"},
            )
        response = self._respond(self._run_worker(call, values))
        if response.status_code < 300:
            store.keep(key_hash, request_hash, response.status_code, response.get_data())
        return response

    def _prepare(self, request: Request) -> Call:
        principal = None
        if not self.public:
            principal = self._authenticate(request)
            if self.roles is not None:
                principal.require(*self.roles)
        query = _load(self.query_schema, request.args.to_dict(), "query")
        body: dict[str, Any] = {}
        if self.body_schema is not None and not self.raw_body:
            body = _load(self.body_schema, self._json_body(request), "request body")
        elif self.raw_body:
            self._read_body(request)
        return Call(request=request, principal=principal, body=body, query=query)

    def _authenticate(self, request: Request) -> Principal:
        """The caller, within its rate limit: its subject's, or its address's without a
        valid token (so guessing tokens is limited too). Public routes are never limited."""
        limiter = limiter_for(self.container)
        try:
            principal = verifier_for(self.container).verify(request.headers.get("Authorization"))
        except AuthenticationError:
            if limiter is not None:
                limiter.check(f"address:{request.remote_addr}")
            raise
        if limiter is not None:
            limiter.check(f"sub:{principal.sub}")
        return principal

    def _read_body(self, request: Request) -> bytes:
        request.max_content_length = self.max_body
        try:
            return request.get_data(cache=True)
        except RequestEntityTooLarge:
            raise PayloadTooLargeError(
                f"the request body is larger than {self.max_body} bytes",
                {"max_bytes": self.max_body},
            ) from None

    def _json_body(self, request: Request) -> Any:
        raw = self._read_body(request)
        if not raw:
            return {}
        if request.mimetype != JSON:
            raise BadRequestError("the request body must be application/json")
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise BadRequestError("the request body is not valid JSON") from None

    def _run_worker(self, call: Call, values: Mapping[str, Any]) -> Any:
        done = Event()
        handle_result = functools.partial(self._done, done)
        if self.pooled:
            self.container.spawn_worker(self, (call,), dict(values), handle_result=handle_result)
        else:
            # What spawn_worker does, in this greenthread instead of one from the pool.
            service = self.container.service_cls()
            worker_ctx = WorkerContext(self.container, service, self, (call,), dict(values))
            self.container._run_worker(worker_ctx, handle_result)
        result, exc_info = done.wait()
        if exc_info is not None:
            raise exc_info[1]
        return result

    @staticmethod
    def _done(done: Event, worker_ctx: Any, result: Any, exc_info: Any) -> tuple[Any, Any]:
        done.send((result, exc_info))
        return result, exc_info

    def _respond(self, result: Any) -> Response:
        if isinstance(result, Response):
            return result
        status, payload = result if isinstance(result, tuple) else (self.status, result)
        if self.answer_schema is not None:
            payload = schema_instance(self.answer_schema).dump(payload)
        return json_response(status, payload)

    def _observe(self, status: int, seconds: float) -> None:
        m, service = self.metrics, self.metrics.service
        route = openapi_path(self.url)
        m.http_requests.labels(service, self.method, route, str(status)).inc()
        m.http_duration.labels(service, self.method, route).observe(seconds)
        if self.method != "GET" and not self.public:
            outcome = (
                "ok"
                if status < 400
                else "conflict"
                if status == 409
                else "error"
                if status >= 500
                else "rejected"
            )
            m.commands.labels(service, self.method_name, outcome).inc()


route: Callable[..., Any] = Route.decorator


def not_found(what: str) -> NotFoundError:
    return NotFoundError(f"{what} not found")


_CONVERTER = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")


def openapi_path(url: str) -> str:
    return _CONVERTER.sub(r"{\1}", url)


def relayed(answer: Callable[[], Any]) -> dict[str, Any]:
    """For an RPC whose caller relays the answer over HTTP: the status and JSON body a route
    would have answered, errors included (so their codes and messages reach the user)."""
    try:
        response = json_response(200, answer())
    except PumpursError as exc:
        response = error_response(exc)
    return {"status": response.status_code, "body": response.get_data(as_text=True)}


def relay(answer: Mapping[str, Any]) -> Response:
    return Response(str(answer["body"]), status=int(answer["status"]), mimetype=JSON)
