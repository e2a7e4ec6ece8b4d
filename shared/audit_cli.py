"""``pumpurs audit verify|export|verify-bundle|public-key``: the auditor's tools.

``verify`` and ``export`` open the services' stores directly (the same settings the services
use: ``PUMPURS_DATA_DIR`` or ``PERSISTENCE_MODULE`` and ``POSTGRES_*``), so they work while
the services are down. ``verify-bundle`` needs nothing but the bundle's folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shared.cli import SERVICES

_AUDIT_SUBPARSERS = "_pumpurs_audit_subparsers"


def audit_subparsers(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The ``pumpurs audit ...`` group, created once: other modules add to it too
    (e.g. ``audit replay``) by calling this from their own ``register``."""
    existing = getattr(subparsers, _AUDIT_SUBPARSERS, None)
    if existing is None:
        audit = subparsers.add_parser("audit", help="verify and export the audit chains")
        existing = audit.add_subparsers(dest="audit_command", required=True)
        setattr(subparsers, _AUDIT_SUBPARSERS, existing)
    return existing


def register(subparsers: argparse._SubParsersAction) -> None:
    sub = audit_subparsers(subparsers)
    names = sorted(SERVICES)

    v = sub.add_parser("verify", help="recompute each service's chain from its store")
    v.add_argument("--service", choices=names, help="only this service (default: all four)")
    v.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="FILE",
        help="a checkpoint.json kept from an earlier export (repeatable)",
    )
    v.add_argument(
        "--public-key", metavar="FILE", help="the pinned key checkpoints must verify with"
    )
    v.add_argument("--json", action="store_true", help="print the results as JSON")
    v.set_defaults(func=verify_command)

    e = sub.add_parser("export", help="write a signed bundle of one service's events and chain")
    e.add_argument("--service", required=True, choices=names)
    e.add_argument("--out", required=True, metavar="DIR", help="an empty or new folder")
    e.set_defaults(func=export_command)

    b = sub.add_parser("verify-bundle", help="check an exported bundle offline")
    b.add_argument("folder", metavar="DIR")
    b.add_argument("--public-key", metavar="FILE", help="the pinned key (else the bundle's own)")
    b.add_argument("--json", action="store_true", help="print the result as JSON")
    b.set_defaults(func=verify_bundle_command)

    k = sub.add_parser("public-key", help="print the key that signs checkpoints (to pin it)")
    k.add_argument("--out", metavar="FILE", help="also write it to this file")
    k.set_defaults(func=public_key_command)


# -- stores ------------------------------------------------------------------------------------


def open_store(service: str, environ: Mapping[str, str]) -> Any:
    """The service's store as the service opens it, without the service's own code; None
    if there is none (a store that cannot be opened is named on stderr)."""
    from shared.store import ServiceApplication, store_env

    env = store_env(service, environ.get("PUMPURS_DATA_DIR", "var/data"), environ)
    if "SQLITE_DBNAME" in env and not Path(env["SQLITE_DBNAME"]).exists():
        return None
    # A database that is not there should say so soon, not after eventsourcing's 30 s.
    env.setdefault("POSTGRES_CONNECT_TIMEOUT", environ.get("POSTGRES_CONNECT_TIMEOUT", "3"))
    store = type(f"{service.title()}Store", (ServiceApplication,), {"name": service})
    try:
        return store(env)
    except Exception as exc:  # the database is absent or refuses us: say so, go on
        print(
            f"pumpurs: {service}'s store cannot be opened ({type(exc).__name__})", file=sys.stderr
        )
        return None


def _stores(environ: Mapping[str, str]) -> dict[str, Any]:
    """Every store that can be opened: the one audited, and the others as its witnesses."""
    stores = {name: open_store(name, environ) for name in sorted(SERVICES)}
    return {name: store for name, store in stores.items() if store is not None}


def _public_key(path: str | None, environ: Mapping[str, str]) -> Any:
    from shared.checkpoint import load_public_key, verification_key

    return load_public_key(Path(path).read_bytes()) if path else verification_key(environ)


# -- commands -----------------------------------------------------------------------------------


def verify_command(args: argparse.Namespace) -> int:
    from shared.audit import verify_store, witness_anchors
    from shared.bundle import read_checkpoint
    from shared.checkpoint import with_retired

    environ = os.environ
    stores = _stores(environ)
    key = with_retired(_public_key(args.public_key, environ), environ)
    kept = [(f, read_checkpoint(Path(f))) for f in args.checkpoint]
    results: dict[str, Any] = {}
    for name in [args.service] if args.service else sorted(SERVICES):
        if name not in stores:
            results[name] = {"ok": None, "error": "no store"}
            continue
        anchors = witness_anchors(name, list(stores.values()), key)
        anchors += [
            signed.anchor(key, f"checkpoint {path}")
            for path, signed in kept
            if signed.checkpoint.service == name
        ]
        results[name] = verify_store(stores[name], anchors).to_dict()
    for store in stores.values():
        store.close()
    _print_results(results, args.json)
    return 0 if all(r["ok"] for r in results.values() if r["ok"] is not None) else 1


def _print_results(results: Mapping[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(results, indent=2))
        return
    for name, r in results.items():
        print(f"{name:<15} {describe(r)}")


def describe(result: Mapping[str, Any]) -> str:
    """One line for a person: ok with the head, or where and how the chain is broken."""
    if result.get("ok") is None:
        return f"not verified: {result.get('error')}"
    head = f"head {result['head_position']} {result['head_hash'][:16]}..."
    if result["ok"]:
        checked = ", ".join(a["source"] for a in result.get("anchors", [])) or "no anchors"
        return f"ok      {head} ({result['records']} records; checked against: {checked})"
    broken = result["first_broken"]
    return f"BROKEN  at position {broken['position']}: {broken['reason']} ({broken['message']})"


def export_command(args: argparse.Namespace) -> int:
    from shared.audit import witness_anchors
    from shared.bundle import ChainBrokenError, export_bundle
    from shared.checkpoint import fingerprint, signing_key, with_retired

    environ = os.environ
    stores = _stores(environ)
    if args.service not in stores:
        raise RuntimeError(f"{args.service} has no store here")
    key = signing_key(environ)
    anchors = witness_anchors(args.service, list(stores.values()), with_retired(key.public_key()))
    try:
        signed, result = export_bundle(stores[args.service], Path(args.out), key, anchors)
    except ChainBrokenError as exc:
        print(f"{args.service:<15} {describe(exc.verification.to_dict())}", file=sys.stderr)
        print("nothing exported: the chain is broken", file=sys.stderr)
        return 1
    finally:
        for store in stores.values():
            store.close()
    c = signed.checkpoint
    print(f"wrote {args.out}: {result.records} records of {c.service}")
    print(f"signed head: position {c.position}, hash {c.hash}, at {c.at}")
    print(f"signing key: {fingerprint(key.public_key())}")
    return 0


def verify_bundle_command(args: argparse.Namespace) -> int:
    from shared.bundle import verify_bundle
    from shared.checkpoint import load_public_key

    pinned = load_public_key(Path(args.public_key).read_bytes()) if args.public_key else None
    result = verify_bundle(Path(args.folder), pinned).to_dict()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        c = result["checkpoint"]
        print(f"bundle of {c['service']}, signed head {c['position']} at {c['at']}")
        print(f"signature: {'valid' if result['signature_valid'] else 'INVALID'} ", end="")
        print(f"(key {result['key']}, {result['key_fingerprint']})")
        print(f"chain: {describe(result)}")
    return 0 if result["ok"] else 1


def public_key_command(args: argparse.Namespace) -> int:
    from shared.checkpoint import fingerprint, public_pem, verification_key

    key = verification_key(os.environ)
    pem = public_pem(key)
    if args.out:
        Path(args.out).write_bytes(pem)
    print(f"# audit checkpoint key {fingerprint(key)}", file=sys.stderr)
    sys.stdout.write(pem.decode())
    return 0
