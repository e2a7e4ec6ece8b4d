"""The ``pumpurs`` command line: serve a service, mint development tokens, handle dead letters."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from shared.brokeraccess import with_credentials
from shared.ratelimit import rate_limit_config

# Modules that add subcommands of their own: each has ``register(subparsers)``. Imported only
# when the parser is built, so ``pumpurs serve`` stays free of their imports until then.
COMMAND_MODULES: tuple[str, ...] = (
    "shared.migrate",
    "demo.cli",
    "shared.audit_cli",
    "services.reporting.cli",
    "services.identification.cli",
    "shared.brokeraccess",
)

SERVICES = {
    "identification": ("services.identification.service", "IdentificationService", 8001),
    "planning": ("services.planning.service", "PlanningService", 8002),
    "provisioning": ("services.provisioning.service", "ProvisioningService", 8003),
    "reporting": ("services.reporting.service", "ReportingService", 8004),
}


def nameko_config(service: str, environ: dict[str, str]) -> dict[str, Any]:
    port = int(environ.get("PUMPURS_HTTP_PORT") or SERVICES[service][2])
    host = environ.get("PUMPURS_HTTP_HOST", "0.0.0.0")  # noqa: S104  (containers listen on all)
    return {
        "AMQP_URI": with_credentials(
            environ.get("AMQP_URI", "amqp://guest:guest@localhost:5672/"), environ
        ),
        "WEB_SERVER_ADDRESS": f"{host}:{port}",
        "max_workers": int(environ.get("PUMPURS_MAX_WORKERS", "16")),
        "PUMPURS_DATA_DIR": environ.get("PUMPURS_DATA_DIR", "var/data"),
        "DELIVERY_LIMIT": int(environ.get("PUMPURS_DELIVERY_LIMIT", "5")),
        # A save wakes the relay of its own process; one made through another replica is
        # found by this poll, so it bounds how late such an event is published.
        "RELAY_POLL_INTERVAL": float(environ.get("PUMPURS_RELAY_POLL_INTERVAL", "0.2")),
        "CATCH_UP_INTERVAL": float(environ.get("PUMPURS_CATCH_UP_INTERVAL", "5.0")),
        "INBOX_BATCH": int(environ.get("PUMPURS_INBOX_BATCH", "20")),
        "CATCH_UP_TIMEOUT": float(environ.get("PUMPURS_CATCH_UP_TIMEOUT", "10.0")),
        "HEARTBEAT": 30,
        "SERVICE_CONTAINER_CLS": "shared.container.Container",
        **rate_limit_config(environ),
    }


def patch_eventlet_in() -> None:
    """Before anything that holds sockets or locks is imported: a kombu or amqp loaded
    unpatched (by a command module the parser imported) left a consumer that never
    reconnected after a broker restart, in about half the fault-suite runs."""
    # psycopg must wait cooperatively under eventlet; set before it is imported.
    os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")
    import warnings

    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    import eventlet

    eventlet.monkey_patch()


def serve(args: argparse.Namespace) -> int:
    patch_eventlet_in()  # main() did it already; this keeps serve safe to call on its own
    import importlib

    from nameko.cli.run import run

    from shared import greenwait, logs

    greenwait.install()

    logs.configure(os.environ.get("PUMPURS_LOG_LEVEL", "INFO"))
    module, cls, _port = SERVICES[args.service]
    service_cls = getattr(importlib.import_module(module), cls)
    _freeze_what_is_loaded()
    run([service_cls], nameko_config(args.service, dict(os.environ)))
    return 0


def _freeze_what_is_loaded() -> None:
    """Keep the modules' objects, which live as long as the process, out of every later
    full garbage collection: with them, one stalls the event loop, and every request
    waiting on it, for tens of milliseconds."""
    import gc

    gc.collect()
    gc.freeze()


def token(args: argparse.Namespace) -> int:
    from shared.auth import mint_token

    print(f"# development token for role {args.role}", file=sys.stderr)
    print(
        mint_token(
            args.role,
            sub=args.sub or f"dev-{args.role}",
            school=args.school,
            municipality=args.municipality,
            ttl_seconds=args.ttl,
        )
    )
    return 0


def dead_letters(args: argparse.Namespace) -> int:
    from amqp.exceptions import AccessRefused

    from shared.deadletters import list_dead_letters, replay_dead_letters

    uri = os.environ.get("AMQP_URI", "amqp://guest:guest@localhost:5672/")
    try:
        if args.action == "list":
            for row in list_dead_letters(uri, args.service):
                print(json.dumps(row, ensure_ascii=False))
            return 0
        replayed = replay_dead_letters(uri, args.service, limit=args.limit)
    except AccessRefused as exc:
        # A service's own user (a pod's AMQP_USER) may not publish into queues: what was
        # taken for the replay went back to the dead letters with the closed connection.
        raise RuntimeError(
            f"the broker refused ({exc.reply_text}); dead letters need a broker"
            " administrator's user in AMQP_URI, nothing was replayed"
        ) from None
    print(f"replayed {replayed} dead letter(s) of {args.service}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pumpurs", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run one service (what make run and the container run)")
    s.add_argument("service", choices=sorted(SERVICES))
    s.set_defaults(func=serve)

    t = sub.add_parser("token", help="mint a development token")
    t.add_argument("--role", required=True)
    t.add_argument("--school")
    t.add_argument("--municipality")
    t.add_argument("--sub")
    t.add_argument("--ttl", type=int, default=8 * 3600, help="seconds the token is valid")
    t.set_defaults(func=token)

    d = sub.add_parser("dead-letters", help="list or replay messages parked after failing")
    d.add_argument("action", choices=["list", "replay"])
    d.add_argument("--service", required=True, choices=sorted(SERVICES))
    d.add_argument("--limit", type=int, default=None, help="replay at most this many")
    d.set_defaults(func=dead_letters)

    import importlib

    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        patch_eventlet_in()  # first, before the parser imports the command modules
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, RuntimeError) as exc:
        print(f"pumpurs: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
