"""The ESF report as CSV (one section per breakdown) and XLSX (one sheet per breakdown).

Both hold exactly the JSON report's figures. The first section or sheet, ``report``,
names the period, the scope and ``as_of``; ``summary`` holds the single figures by their
JSON path; each breakdown follows with one row per key. In CSV a section starts with a
line ``# <name>`` and ends with an empty line. In XLSX money and hours are numbers
(euros, hours), counts are integers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

SUMMARY = (
    "institutions_supported",
    "pupils_at_risk.total",
    "pupils_supported.total",
    "pupils_supported.below_25",
    "pupils_supported.age_25_or_over",
    "pupils_supported.age_unknown",
    "plans_continued",
    "consultation_hours.total",
    "consultation_hours.cost_eur",
    "total_cost_eur",
    "result.continued",
    "result.left",
    "result.share",
)

Rows = list[list[Any]]


@dataclass(frozen=True)
class Breakdown:
    name: str  # a sheet's title: at most 31 characters
    header: tuple[str, ...]
    rows: Callable[[Mapping[str, Any]], Rows]


def _path(indicators: Mapping[str, Any], path: str) -> Any:
    value: Any = indicators
    for part in path.split("."):
        value = value[part]
    return value


def _pairs(path: str) -> Callable[[Mapping[str, Any]], Rows]:
    return lambda i: [[key, value] for key, value in _path(i, path).items()]


def _supported_by_gender(i: Mapping[str, Any]) -> Rows:
    s = i["pupils_supported"]
    return [[g, n, s["below_25_by_gender"].get(g, 0)] for g, n in s["by_gender"].items()]


def _supported_by_isced(i: Mapping[str, Any]) -> Rows:
    s = i["pupils_supported"]
    by_gender = s["by_isced_gender"]
    return [
        [level, n, by_gender.get(level, {}).get("F", 0), by_gender.get(level, {}).get("M", 0)]
        for level, n in s["by_isced"].items()
    ]


def _hours(i: Mapping[str, Any]) -> Rows:
    hours = i["consultation_hours"]
    return [*([k, v] for k, v in hours["by_kind"].items()), ["total", hours["total"]]]


def _material(i: Mapping[str, Any]) -> Rows:
    m = i["material_eur"]
    return [
        [kind, m["planned"][kind], m["committed"][kind], m["delivered"][kind]]
        for kind in m["planned"]
    ]


BREAKDOWNS: tuple[Breakdown, ...] = (
    Breakdown("summary", ("indicator", "value"), lambda i: [[p, _path(i, p)] for p in SUMMARY]),
    Breakdown("at_risk_by_group", ("risk_group", "pupils"), _pairs("pupils_at_risk.by_group")),
    Breakdown("supported_by_gender", ("gender", "pupils", "below_25"), _supported_by_gender),
    Breakdown("supported_by_isced", ("isced_level", "pupils", "F", "M"), _supported_by_isced),
    Breakdown(
        "supported_by_grade_band",
        ("grade_band", "pupils"),
        _pairs("pupils_supported.by_grade_band"),
    ),
    Breakdown("supported_by_school", ("school_id", "pupils"), _pairs("pupils_supported.by_school")),
    Breakdown("plans_by_status", ("status", "plans"), _pairs("plans_by_status")),
    Breakdown("consultation_hours", ("kind", "hours"), _hours),
    Breakdown("material_eur", ("kind", "planned", "committed", "delivered"), _material),
)


def _about(report: Mapping[str, Any]) -> Rows:
    period, scope = report["period"], report["scope"]
    rows: Rows = [[key, value] for key, value in period.items() if key != "semesters"]
    rows.append(["semesters", " ".join(period["semesters"])])
    rows += [[f"scope.{key}", value] for key, value in scope.items()]
    rows.append(["as_of", report["as_of"]])
    return rows


def sections(report: Mapping[str, Any]) -> list[tuple[str, tuple[str, ...], Rows]]:
    indicators = report["indicators"]
    return [("report", ("field", "value"), _about(report))] + [
        (b.name, b.header, b.rows(indicators)) for b in BREAKDOWNS
    ]


def to_csv(report: Mapping[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for name, header, rows in sections(report):
        out.write(f"# {name}\n")
        writer.writerow(header)
        writer.writerows([["" if v is None else v for v in row] for row in rows])
        out.write("\n")
    return out.getvalue()


def _cell(value: Any) -> Any:
    """Decimal strings become numbers; ids, codes and times stay text."""
    if isinstance(value, str) and value.replace(".", "", 1).lstrip("-").isdigit() and "." in value:
        return Decimal(value)
    return value


def to_xlsx(report: Mapping[str, Any]) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.active)
    for name, header, rows in sections(report):
        sheet = book.create_sheet(name)
        sheet.append(list(header))
        for row in rows:
            sheet.append([_cell(v) for v in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def export(report: Mapping[str, Any], fmt: str) -> tuple[bytes, str, str]:
    """The report as a file: its bytes, media type and a name for it."""
    period = report["period"].get("semester") or report["period"].get("school_year")
    scope = report["scope"]["school_id"] or report["scope"]["municipality"] or "all"
    filename = f"esf-{period}-{scope}.{fmt}"
    if fmt == "csv":
        return to_csv(report).encode("utf-8"), "text/csv", filename
    return to_xlsx(report), XLSX, filename
