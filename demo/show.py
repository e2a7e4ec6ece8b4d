"""What the demo prints once the data is in: the ESF report as a table, the audit verification,
and where the running system is."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from demo.api import Api, ApiError, SeedError
from demo.progress import Progress
from demo.scenario import SEMESTER
from demo.seed import AUDITOR

LABELS = {
    "institutions_supported": "institutions supported",
    "pupils_at_risk": "pupils identified at risk",
    "pupils_supported": "pupils supported",
    "plans_by_status": "plans by status",
    "plans_continued": "plans continued from an earlier semester",
    "consultation_hours": "consultation hours",
    "material_eur": "material support, EUR",
    "total_cost_eur": "total cost, EUR",
    "result": "result",
    "by_group": "by risk group",
    "by_gender": "by gender",
    "by_isced": "by ISCED level",
    "below_25": "below 25 years",
    "by_isced_gender": "by ISCED level and gender",
    "below_25_by_gender": "below 25 years, by gender",
    "age_25_or_over": "25 years or over",
    "age_unknown": "age not known (yet)",
    "cost_eur": "their cost, EUR",
    "by_grade_band": "by grade band",
    "by_school": "by school",
    "by_kind": "by kind",
    "planned": "planned",
    "committed": "committed",
    "delivered": "delivered",
    "continued": "continue learning (incl. transferred, graduated)",
    "left": "left education",
    "share": "share continuing",
}
WIDTH = 58


def _number(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    return f"{value:,}".replace(",", " ") if isinstance(value, int) else str(value)


def _share(value: Any) -> str:
    try:
        share = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    return f"{share * 100:.1f} %" if share <= 1 else f"{share} %"


def _is_zero(value: Any) -> bool:
    try:
        return not isinstance(value, bool) and Decimal(str(value)) == 0
    except (InvalidOperation, ValueError):
        return False


def _breakdown(key: str) -> bool:
    """Parts of a whole (kinds, statuses, groups): those that are zero say nothing."""
    return "by_" in key or key in ("planned", "committed", "delivered")


def _inline(value: Mapping[str, Any]) -> str | None:
    """A short breakdown of plain figures on one line (``F 11 · M 14``), else None."""
    parts = [(k, v) for k, v in value.items() if not isinstance(v, Mapping | list)]
    if len(parts) != len(value) or len(parts) > 3 or any(len(k) > 6 for k, _ in parts):
        return None
    return " · ".join(f"{k}: {_number(v)}" for k, v in parts)


def table_rows(
    values: Mapping[str, Any], names: Mapping[str, str], depth: int = 0
) -> Iterator[tuple[str, str]]:
    """(label, value) rows of a nested report: a breakdown's total on its own line, its parts
    indented below it (or beside it, when short); parts that are zero are left out."""
    for key, value in values.items():
        label = "  " * depth + names.get(key, LABELS.get(key, key))
        if isinstance(value, Mapping):
            total = value.get("total")
            shown = "" if isinstance(total, Mapping) or total is None else _number(total)
            rest = {
                k: v
                for k, v in value.items()
                if not (k == "total" and shown) and not (_breakdown(key) and _is_zero(v))
            }
            inline = None if shown else _inline(rest)
            if inline is not None:
                yield label, inline
                continue
            yield label, shown
            yield from table_rows(rest, names, depth + 1)
        elif key == "share":
            yield label, _share(value)
        elif isinstance(value, list):
            yield label, ", ".join(str(v) for v in value)
        else:
            yield label, _number(value)


def format_table(values: Mapping[str, Any], names: Mapping[str, str]) -> str:
    lines = []
    for label, value in table_rows(values, names):
        dots = "." * max(2, WIDTH - len(label) - len(value) - 2)
        lines.append(f"  {label} {dots} {value}" if value else f"  {label}")
    return "\n".join(lines)


def _plans_counted(report: Mapping[str, Any]) -> int | None:
    by_status = report.get("indicators", {}).get("plans_by_status")
    if isinstance(by_status, Mapping) and all(isinstance(v, int) for v in by_status.values()):
        return sum(by_status.values())
    return None


def settled_report(
    api: Api, params: Mapping[str, str], plans: int, pause: float = 0.5
) -> dict[str, Any]:
    """The report once reporting has caught up: it counts every plan the seed made and reads the
    same twice in a row (reporting learns everything from the other services' events)."""
    last: dict[str, Any] = {}

    def caught_up() -> dict[str, Any] | None:
        nonlocal last
        report: dict[str, Any] = api.get("reporting", "/reports/esf", AUDITOR, params=params)
        same = report.get("indicators") == last.get("indicators")
        last = report
        counted = _plans_counted(report)
        if (counted is None or counted >= plans) and same:
            return report
        time.sleep(pause)
        return None

    return api.wait_for("reporting to count every plan", caught_up, "see var/log/reporting.log")


def show_report(
    api: Api, progress: Progress, semester: str, plans: int, schools: Mapping[str, str]
) -> bool:
    """Print the ESF report for the semester; False when reporting cannot give it."""
    try:
        report = settled_report(api, {"semester": semester}, plans)
    except ApiError as error:
        progress.line(f"ESF report for {semester}: not available from reporting ({error})")
        return False
    except SeedError as error:
        progress.line(f"ESF report for {semester}: {error}")
        return False
    scope = report.get("scope") or "all schools"
    progress.line(f"ESF report for {semester} ({_scope(scope)}, as of {report.get('as_of')}):")
    progress.line(format_table(report.get("indicators", {}), schools))
    return True


def _scope(scope: Any) -> str:
    if not isinstance(scope, Mapping):
        return str(scope)
    if scope.get("school_id"):
        return f"school {scope['school_id']}"
    if scope.get("municipality"):
        return f"municipality {scope['municipality']}"
    return "all schools"


def show_verification(api: Api, progress: Progress) -> bool:
    try:
        result = api.get("reporting", "/audit/verify", AUDITOR)
    except SeedError as error:
        progress.line(f"Audit verification: not available from reporting ({error})")
        return False
    progress.line("Audit verification (each service's hash chain over its stored events):")
    services = result.get("services") if isinstance(result, Mapping) else None
    if not isinstance(services, Mapping):
        progress.line(format_table(result if isinstance(result, Mapping) else {"": result}, {}))
        return True
    from shared.audit_cli import describe  # the line `pumpurs audit verify` prints

    for name, verified in services.items():
        progress.line(f"  {name:<15} {describe(verified)}")
    progress.line(f"  all chains intact: {'yes' if result.get('ok') else 'NO'}")
    return True


def show_where(progress: Progress, urls: Mapping[str, str]) -> None:
    progress.line("The system is running:")
    for name, url in urls.items():
        progress.line(f"  {name:<15} {url}   ({url}/openapi.json describes its API)")
    progress.line("A token for the API (the last line printed is the token):")
    progress.line("  TOKEN=$(.venv/bin/pumpurs token --role auditor | tail -n 1)")
    progress.line(
        f'  curl -s -H "Authorization: Bearer $TOKEN" '
        f"'{urls['reporting']}/reports/esf?semester=2019-2020-1'"
    )
    progress.line(
        "  other roles: teacher or director (with --school daugavpils-10-vsk), "
        "municipal_coordinator (--municipality daugavpils), national_coordinator"
    )
    progress.line("The same report as a spreadsheet, and the chains checked from the stores:")
    progress.line(
        f"  .venv/bin/pumpurs report esf --semester {SEMESTER} --format xlsx --out var/esf.xlsx"
    )
    progress.line("  .venv/bin/pumpurs audit verify")
