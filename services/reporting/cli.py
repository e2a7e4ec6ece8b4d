"""``pumpurs report esf``, ``pumpurs audit replay`` and ``pumpurs reporting rebuild|digest``.

They open reporting's store directly, with the settings the service uses
(``PUMPURS_DATA_DIR``, or ``PERSISTENCE_MODULE`` and ``POSTGRES_*``), and read as an
auditor: whoever can open the store can read every figure anyway. The report options
are those of ``GET /reports/esf`` and are checked by the same schema.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from marshmallow import ValidationError

ROLE = "auditor"


def open_application() -> Any:
    from services.reporting.application import ReportingApplication
    from shared.store import store_env

    environ = dict(os.environ)
    return ReportingApplication(
        store_env("reporting", environ.get("PUMPURS_DATA_DIR", "var/data"), environ)
    )


# -- pumpurs report esf / pumpurs audit replay ---------------------------------------------


def _report_options(parser: argparse.ArgumentParser, as_of_required: bool) -> None:
    period = parser.add_mutually_exclusive_group(required=True)
    period.add_argument("--semester", help="e.g. 2019-2020-1")
    period.add_argument("--school-year", help="e.g. 2019-2020 (both semesters)")
    parser.add_argument("--municipality")
    parser.add_argument("--school-id")
    parser.add_argument(
        "--as-of",
        required=as_of_required,
        help="ISO time: the report from only the events received by then",
    )
    parser.add_argument("--format", default="json", choices=["json", "csv", "xlsx"])
    parser.add_argument("--explain", metavar="INDICATOR", help="e.g. pupils_supported.by_gender.F")
    parser.add_argument("--out", metavar="FILE", help="write here (required for xlsx)")
    parser.set_defaults(func=report_command)


def report_command(args: argparse.Namespace) -> int:
    from services.reporting.export import export
    from services.reporting.schemas import EsfQuerySchema
    from shared.auth import Principal
    from shared.errors import PumpursError

    options = {
        key: getattr(args, key)
        for key in ("semester", "school_year", "municipality", "school_id", "as_of", "format")
        if getattr(args, key) is not None
    }
    if args.explain:
        options["explain"] = args.explain
    try:
        loaded = EsfQuerySchema().load(options)
    except ValidationError as exc:
        print(f"pumpurs: invalid options: {json.dumps(exc.messages)}", file=sys.stderr)
        return 2
    if loaded["format"] == "xlsx" and not args.out:
        print("pumpurs: --format xlsx needs --out FILE", file=sys.stderr)
        return 2
    app = open_application()
    try:
        report = app.esf_report(loaded["request"], Principal("cli", ROLE))
    except PumpursError as exc:
        print(f"pumpurs: {exc.message}", file=sys.stderr)
        return 1
    finally:
        app.close()
    if loaded["format"] == "json":
        _write(json.dumps(report, indent=2, ensure_ascii=False).encode() + b"\n", args.out)
    else:
        _write(export(report, loaded["format"])[0], args.out)
    return 0


def _write(data: bytes, out: str | None) -> None:
    if out:
        Path(out).write_bytes(data)
        print(f"wrote {out}", file=sys.stderr)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


# -- pumpurs reporting rebuild|digest ----------------------------------------------------------


def rebuild_command(args: argparse.Namespace) -> int:
    app = open_application()
    try:
        before = app.digest()
        print(f"digest before: {before}")
        rebuilt = app.rebuild()
        assert rebuilt is not None
    finally:
        app.close()
    print(
        f"rebuilt from {rebuilt.entries} journal entries: {rebuilt.rows} rows "
        f"in {rebuilt.seconds:.2f} s"
    )
    print(f"digest after:  {rebuilt.digest}")
    print(
        "unchanged"
        if rebuilt.digest == before
        else "CHANGED: the read models were not as the journal gives them; they are now"
    )
    return 0


def digest_command(args: argparse.Namespace) -> int:
    app = open_application()
    try:
        print(app.digest())
    finally:
        app.close()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from shared.audit_cli import audit_subparsers

    report = subparsers.add_parser("report", help="reports from reporting's read models")
    reports = report.add_subparsers(dest="report_command", required=True)
    _report_options(reports.add_parser("esf", help="the ESF indicators"), as_of_required=False)

    replay = audit_subparsers(subparsers).add_parser(
        "replay", help="the ESF report as the events received by --as-of gave it"
    )
    _report_options(replay, as_of_required=True)

    reporting = subparsers.add_parser("reporting", help="reporting's read models")
    actions = reporting.add_subparsers(dest="reporting_command", required=True)
    actions.add_parser(
        "rebuild", help="drop the read models, replay the journal, print the digests"
    ).set_defaults(func=rebuild_command)
    actions.add_parser("digest", help="print the read models' digest").set_defaults(
        func=digest_command
    )
