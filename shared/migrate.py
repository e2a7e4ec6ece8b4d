"""``pumpurs migrate NAME``: create one service's tables, then exit.

Kubernetes runs it as a Job before the service's pods start. It sets up the service's
event store exactly as the service does at start-up (the same dependency provider, on a
container that never starts), so the two cannot drift apart: events, tracking and
snapshot tables, the triggers that keep stored events immutable, read models, the relay's
position and the idempotency answers. Every statement is create-if-missing, so running it
again, or a service starting after it, changes nothing.
"""

from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Mapping


def migrate(service: str, environ: Mapping[str, str]) -> None:
    import warnings

    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    from nameko.containers import ServiceContainer

    from shared.cli import SERVICES, nameko_config
    from shared.eventstore import store_of

    module, cls, _port = SERVICES[service]
    service_cls = getattr(importlib.import_module(module), cls)
    container = ServiceContainer(service_cls, nameko_config(service, dict(environ)))
    store = store_of(container)
    store.setup()
    store.app.close()


def run(args: argparse.Namespace) -> int:
    migrate(args.service, os.environ)
    print(f"{args.service}: tables are in place")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from shared.cli import SERVICES

    m = subparsers.add_parser(
        "migrate", help="create one service's tables and exit (the Kubernetes migration Job)"
    )
    m.add_argument("service", choices=sorted(SERVICES))
    m.set_defaults(func=run)
