"""The public HTTP API as the demo's people use it: one token each (minted with the development
key the services verify with), Idempotency-Key on creating POSTs, bounded waits for what other
services learn from events.

Errors name the route, the status and the API's own error code and message (which never carry
personal data); request bodies are never shown.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import requests

from shared.auth import mint_token

SERVICES = {"identification": 8001, "planning": 8002, "provisioning": 8003, "reporting": 8004}
T = TypeVar("T")


def service_urls(environ: Mapping[str, str]) -> dict[str, str]:
    """``PUMPURS_<SERVICE>_URL`` (what scripts/run-local.sh exports), else the default port."""
    return {
        name: environ.get(f"PUMPURS_{name.upper()}_URL", f"http://127.0.0.1:{port}").rstrip("/")
        for name, port in SERVICES.items()
    }


class SeedError(RuntimeError):
    """The demo cannot go on; the message says why and where to look."""


class ApiError(SeedError):
    def __init__(self, method: str, route: str, status: int, code: str, message: str) -> None:
        super().__init__(f"{method} {route} answered {status} {code}: {message}")
        self.status, self.code = status, code

    @classmethod
    def of(cls, method: str, route: str, response: requests.Response) -> ApiError:
        try:
            error = response.json()["error"]
            code, message = str(error.get("code")), str(error.get("message"))
        except (ValueError, KeyError, TypeError, AttributeError):
            code, message = "error", f"a non-JSON answer of {len(response.content)} bytes"
        return cls(method, route, response.status_code, code, message)


@dataclass(frozen=True)
class Actor:
    """Someone who uses the system: the token's subject, role and tenant."""

    sub: str
    role: str
    school: str | None = None
    municipality: str | None = None


class Api:
    def __init__(
        self,
        urls: Mapping[str, str],
        environ: Mapping[str, str],
        *,
        timeout: float = 30.0,
        wait_timeout: float = 60.0,
    ) -> None:
        self.urls = dict(urls)
        self.environ = environ
        self.timeout = timeout
        self.wait_timeout = wait_timeout
        self.session = requests.Session()
        self.tokens: dict[Actor, str] = {}
        # created: a POST or PUT that changed something; replayed: an Idempotency-Key answer.
        self.counts: Counter[str] = Counter()

    def token(self, actor: Actor) -> str:
        if actor not in self.tokens:
            self.tokens[actor] = mint_token(
                actor.role,
                sub=actor.sub,
                school=actor.school,
                municipality=actor.municipality,
                environ=self.environ,
            )
        return self.tokens[actor]

    def request(
        self,
        service: str,
        method: str,
        path: str,
        actor: Actor,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        key: str | None = None,
        accept: tuple[int, ...] = (200, 201),
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.token(actor)}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        url = self.urls[service] + path
        try:
            response = self.session.request(
                method, url, json=json, params=params, headers=headers, timeout=self.timeout
            )
        except requests.ConnectionError:
            raise SeedError(
                f"{service} does not answer at {self.urls[service]} (is it running? "
                f"set PUMPURS_{service.upper()}_URL if it listens elsewhere)"
            ) from None
        self._count(method, response)
        if response.status_code not in accept:
            raise ApiError.of(method, f"{service} {path}", response)
        return response.json() if response.content else None

    def _count(self, method: str, response: requests.Response) -> None:
        if method == "GET" or response.status_code >= 300:
            self.counts["read" if method == "GET" else "refused"] += 1
        elif response.headers.get("Idempotent-Replayed") == "true":
            self.counts["replayed"] += 1
        else:
            self.counts["written"] += 1

    def get(self, service: str, path: str, actor: Actor, **kwargs: Any) -> Any:
        return self.request(service, "GET", path, actor, **kwargs)

    def post(self, service: str, path: str, actor: Actor, body: Any, **kwargs: Any) -> Any:
        return self.request(service, "POST", path, actor, json=body, **kwargs)

    def put(self, service: str, path: str, actor: Actor, body: Any, **kwargs: Any) -> Any:
        return self.request(service, "PUT", path, actor, json=body, **kwargs)

    def wait_for(self, what: str, check: Callable[[], T | None], hint: str = "") -> T:
        """Poll ``check`` until it returns something; a clear error after ``wait_timeout``."""
        deadline = time.monotonic() + self.wait_timeout
        delay = 0.05
        while True:
            result = check()
            if result is not None and result is not False:
                return result
            if time.monotonic() > deadline:
                raise SeedError(
                    f"waited {self.wait_timeout:.0f} s for {what} in vain"
                    + (f"; {hint}" if hint else "")
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
