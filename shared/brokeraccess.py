"""What each service may do on the broker: its own user, least privilege.

With one broker user for all, any service (or anyone holding its credentials) could publish
events in another service's name, straight into its consumers' inboxes, or call any RPC,
among them those that answer with a plan's full history for the principal the caller
names. Each service therefore gets its own user on the vhost, allowed to:

- declare, bind and consume its own queues (``SERVICE.from.SOURCE``, its dead letters, its
  RPC queue and its RPC reply queues) and its own dead-letter exchange; only bind to and
  publish on the shared exchanges, which the administrator declares here (a right to
  declare one is a right to delete it, and with it every binding of every service);
- publish on the events exchange only under its own name (``SERVICE.*`` routing keys),
  and bind only to the events of the sources it consumes;
- send only the RPCs it makes (``CALLS``), and replies to RPCs it serves.

RabbitMQ checks the routing key of a publish, and the binding key of a bind, against the
user's topic permissions on a topic exchange; names of queues and exchanges against its
configure, write and read permissions. The broker's own dead-lettering needs no
permission. Operators (``pumpurs dead-letters replay``) use an administrator's user.

The same table, through ``pumpurs broker-users apply``, sets up the users of the local
stack (``make run``) and of a cluster (the ``pumpurs-broker-users`` Job); the tests give
each test vhost's services their users from it too.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

SERVICES = ("identification", "planning", "provisioning", "reporting")

# The sources whose events each service consumes (its @inbox entrypoints).
SUBSCRIBES: Mapping[str, tuple[str, ...]] = {
    "identification": (),
    "planning": ("identification", "provisioning"),
    "provisioning": ("identification", "planning"),
    "reporting": ("identification", "planning", "provisioning"),
}

# The RPCs each service makes, as SERVICE.METHOD: a consumer's catch-up, planning's check
# that a pupil who signs a plan's consent is of age, reporting's age enquiries and audit (it
# verifies every chain, its own too, and relays plan histories).
CALLS: Mapping[str, tuple[str, ...]] = {
    service: (
        *(f"{source}.notifications" for source in sources),
        *(("identification.adult_on",) if service == "planning" else ()),
        *(
            (
                "identification.age_bands",
                *(f"{s}.audit_verify" for s in SERVICES),
                "planning.audit_plan_history",
                "planning.audit_plan_as_of",
            )
            if service == "reporting"
            else ()
        ),
    )
    for service, sources in SUBSCRIBES.items()
}

# nameko names a reply queue's binding (and a reply's routing key) after a uuid4.
REPLY_KEY = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@dataclass(frozen=True)
class TopicGrant:
    exchange: str
    write: str
    read: str


@dataclass(frozen=True)
class Grant:
    """A service's permissions on its vhost, as RabbitMQ takes them (anchored regexes)."""

    configure: str
    write: str
    read: str
    topics: tuple[TopicGrant, ...]


def _any_of(*patterns: str) -> str:
    return "^(" + "|".join(patterns) + ")$"


def grant_for(service: str) -> Grant:
    if service not in SUBSCRIBES:
        raise ValueError(f"unknown service {service!r}")
    # Not at the top: pumpurs imports this module to build its command line, before
    # `serve` patches eventlet in, and shared.topology brings kombu and amqp.
    from shared.topology import EVENTS_EXCHANGE, RPC_EXCHANGE, dead_letter_exchange_name

    s = re.escape(service)
    own_queues = (
        rf"{s}\.from\.[a-z]+",
        rf"{s}\.dead-letters",
        rf"rpc-{s}",
        rf"rpc\.reply-{s}-{REPLY_KEY}",
    )
    dead_letters = re.escape(dead_letter_exchange_name(service))
    exchanges = (re.escape(EVENTS_EXCHANGE), dead_letters, re.escape(RPC_EXCHANGE))
    sources = SUBSCRIBES[service]
    events_read = _any_of(*(rf"{re.escape(source)}\.#" for source in sources)) if sources else "^$"
    calls = tuple(re.escape(call) for call in CALLS[service])
    return Grant(
        configure=_any_of(dead_letters, *own_queues),
        # Publishing needs write on the exchange; binding, write on the queue; declaring a
        # queue that dead-letters, write on its dead-letter exchange.
        write=_any_of(*exchanges, *own_queues),
        # Consuming needs read on the queue; binding, read on the exchange.
        read=_any_of(*exchanges, *own_queues),
        topics=(
            TopicGrant(EVENTS_EXCHANGE, write=rf"^{s}\.[a-z0-9_]+$", read=events_read),
            TopicGrant(
                RPC_EXCHANGE,
                write=_any_of(REPLY_KEY, *calls),
                read=_any_of(rf"{s}\.\*", REPLY_KEY),
            ),
        ),
    )


def user_name(service: str, vhost: str) -> str:
    return f"{vhost}.{service}" if vhost not in ("", "/") else f"pumpurs.{service}"


def service_uri(admin_uri: str, user: str, password: str) -> str:
    """The admin's AMQP URI (host, port, vhost) with this user's credentials."""
    parts = urlsplit(admin_uri)
    host = parts.hostname or "localhost"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def vhost_of(uri: str) -> str:
    path = urlsplit(uri).path
    return "/" if path in ("", "/") else unquote(path[1:])


class ManagementApi:
    """The few calls of RabbitMQ's HTTP API that set a service user up (administrator)."""

    def __init__(self, url: str, user: str, password: str) -> None:
        self.url, self.auth = url.rstrip("/"), (user, password)

    def _put(self, path: str, body: Mapping[str, Any]) -> None:
        import requests

        response = requests.put(f"{self.url}{path}", json=body, auth=self.auth, timeout=30)
        if response.status_code >= 300:
            raise RuntimeError(f"RabbitMQ API PUT {path}: {response.status_code}")

    def _get(self, path: str) -> Any:
        import requests

        response = requests.get(f"{self.url}{path}", auth=self.auth, timeout=30)
        if response.status_code == 404:
            return None
        if response.status_code >= 300:
            raise RuntimeError(f"RabbitMQ API GET {path}: {response.status_code}")
        return response.json()

    def delete_user(self, user: str) -> None:
        import requests

        requests.delete(f"{self.url}/api/users/{quote(user, safe='')}", auth=self.auth, timeout=30)

    def declare_shared_exchanges(self, vhost: str) -> None:
        """The exchanges every service binds to and publishes on, which none may declare."""
        from shared.topology import SHARED_EXCHANGES

        v = quote(vhost, safe="")
        for name in SHARED_EXCHANGES:
            body = {"type": "topic", "durable": True, "auto_delete": False}
            self._put(f"/api/exchanges/{v}/{quote(name, safe='')}", body)

    def grant(self, vhost: str, service: str, password: str | None = None) -> tuple[str, str]:
        """Create (or reset) the service's user on the vhost with its grant, after the
        shared exchanges it may not declare itself; its user name and password."""
        self.declare_shared_exchanges(vhost)
        user = user_name(service, vhost)
        password = password or secrets.token_urlsafe(24)
        u, v = quote(user, safe=""), quote(vhost, safe="")
        self._put(f"/api/users/{u}", {"password": password, "tags": ""})
        grant = grant_for(service)
        permissions = {"configure": grant.configure, "write": grant.write, "read": grant.read}
        self._put(f"/api/permissions/{v}/{u}", permissions)
        for topic in grant.topics:
            body = {"exchange": topic.exchange, "write": topic.write, "read": topic.read}
            self._put(f"/api/topic-permissions/{v}/{u}", body)
        return user, password


def with_credentials(uri: str, environ: Mapping[str, str]) -> str:
    """``AMQP_URI`` with ``AMQP_USER`` and ``AMQP_PASSWORD`` in it when both are set: a
    Deployment names the broker in its config and takes the password from a secret."""
    user, password = environ.get("AMQP_USER"), environ.get("AMQP_PASSWORD")
    return service_uri(uri, user, password) if user and password else uri


# -- pumpurs broker-users ----------------------------------------------------------------


def register(sub: Any) -> None:
    p = sub.add_parser(
        "broker-users", help="give each service its own broker user with only what it needs"
    )
    p.add_argument("action", choices=["apply"])
    p.add_argument("--vhost", default=None, help="the services' vhost (that of AMQP_URI)")
    p.add_argument(
        "--env-file",
        help="write each service's AMQP URI there (PUMPURS_AMQP_URI_<SERVICE>, mode 600)",
    )
    p.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the API")
    p.set_defaults(func=apply_users)


def apply_users(args: Any) -> int:
    """Users ``pumpurs.<service>``; passwords from ``PUMPURS_BROKER_PASSWORD_<SERVICE>``, or
    new ones (then only the env file knows them)."""
    import os
    import time
    from pathlib import Path

    env = os.environ
    api = ManagementApi(
        env.get("PUMPURS_RABBITMQ_API", "http://localhost:15672"),
        env.get("PUMPURS_RABBITMQ_API_USER", "guest"),
        env.get("PUMPURS_RABBITMQ_API_PASSWORD", "guest"),
    )
    base = env.get("AMQP_URI", "amqp://localhost:5672/")
    vhost = args.vhost or vhost_of(base)
    deadline = time.monotonic() + args.wait
    lines = []
    for service in SERVICES:
        password = env.get(f"PUMPURS_BROKER_PASSWORD_{service.upper()}")
        while True:
            try:
                user, password = api.grant(vhost, service, password)
                break
            except (OSError, RuntimeError) as exc:  # requests' errors are OSErrors
                if time.monotonic() > deadline:
                    raise RuntimeError(f"broker users not applied: {exc}") from None
                time.sleep(2)
        print(f"{user}: permissions and topic permissions applied on vhost {vhost}")
        lines.append(f"PUMPURS_AMQP_URI_{service.upper()}='{service_uri(base, user, password)}'")
    if args.env_file:
        path = Path(args.env_file)
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text("\n".join(lines) + "\n")
    return 0
