"""The ESF report: every indicator as one SQL aggregate over the read models, and the ids
behind each figure (``explain``).

Period: one semester (``2019-2020-1``) or a school year (``2019-2020``: its two
semesters). A plan belongs to the period of its semester; a provision and a consultation
to their plan's semester. Scope: everything, one municipality (its schools: the shipped
reference schools and those identification registered) or one school; plans, hours and
provisions are placed by the school that keeps the plan, pupils at risk by the school
identification registered them at.

Definitions (the figures auditors trace back with ``?explain=<indicator>``):

- ``pupils_supported``: distinct pupils with a *supported* plan in the period and scope.
  A plan is supported once it was fully approved at every level of its chain
  (``plan_fully_approved``), whatever happened to it later, unless it was deactivated
  (``inactive``: the programme's "deleted", which planning allows only while no money
  was spent on it). Split by the gender and grade identification registered (``F``,
  ``M``); ``by_isced``: ISCED 1 for grades 1-6, 2 for 7-9, 3 for 10-12 and for every
  vocational course; ``by_grade_band``: 1-4, 5-6, 7-9, 10-12, vocational;
  ``by_isced_gender`` both at once; ``below_25`` (and ``below_25_by_gender``): see
  ``domain.below_25``, an assumption while identification publishes no age;
  ``by_school``: distinct pupils per school with a supported plan there (a pupil
  supported at two schools counts at each, once in ``total``). A pupil whose
  registration reporting has not received counts under ``unknown``.
- ``institutions_supported``: schools with at least one supported plan in the period.
- ``pupils_at_risk``: distinct pupils with a risk sign that was open at some time in the
  period: observed on or before the period's last day and not resolved before its first
  day. ``by_group``: the same per risk group (a pupil with signs in two groups counts in
  each).
- ``plans_by_status``: every plan of the period (drafts included) by its current status.
- ``plans_continued``: plans of the period that continue a plan of an earlier semester
  (drafted by ``continue``), deactivated ones excepted.
- ``consultation_hours``: hours logged (confirmed or not) on plans of the period, by
  provider kind, with their cost (``cost_eur``) at planning's rates.
- ``material_eur``: over the provisions of the period, by kind with a ``total``:
  ``planned`` is the provision's planned amount, except that a cancelled provision counts
  only what it delivered before it was cancelled (the rest will never be provided);
  ``committed`` is reserved and not yet delivered; ``delivered`` is spent.
- ``total_cost_eur``: consultation costs plus material delivered.
- ``result``: supported pupils whose latest evaluated or closed supported plan in the
  period ended with ``continues_learning``, ``transferred`` or ``graduated``
  (``continued``) against ``left_education`` (``left``); ``share`` = continued /
  (continued + left), four decimals, null when both are 0. Pupils whose plans have no
  outcome yet are in neither.

Money and hours are decimal strings with two decimals. The report names no person: only
ids, and ``explain`` lists only ids.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from services.reporting.domain import (
    CONSULTATION_KINDS,
    CONTINUED_OUTCOMES,
    GENDERS,
    GRADE_BANDS,
    INACTIVE,
    ISCED_LEVELS,
    LEFT_OUTCOMES,
    MATERIAL_KINDS,
    PLAN_STATUSES,
    RISK_GROUPS,
    UNKNOWN,
    below_25,
    decimal_text,
    grade_band,
    hundredths,
    isced_level,
)
from services.reporting.readmodel import ReadModels
from shared.errors import InvalidInputError, NotFoundError
from shared.schools import reference_schools
from shared.semesters import Semester

Query = Callable[..., list[Any]]
_SCHOOL_YEAR = re.compile(r"^(\d{4})-(\d{4})$")


class UnknownIndicatorError(InvalidInputError):
    code = "unknown_indicator"


class SchoolNotFoundError(NotFoundError):
    code = "school_not_found"


class MunicipalityNotFoundError(NotFoundError):
    code = "municipality_not_found"


# -- period and scope ------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    label: dict[str, str]
    semesters: tuple[str, ...]
    starts_on: date
    ends_on: date

    @classmethod
    def semester(cls, text: str) -> Period:
        semester = Semester.parse(text)
        return cls(
            {"semester": str(semester)}, (str(semester),), semester.starts_on, semester.ends_on
        )

    @classmethod
    def school_year(cls, text: str) -> Period:
        match = _SCHOOL_YEAR.match(text or "")
        if not match or int(match.group(2)) != int(match.group(1)) + 1:
            raise InvalidInputError(
                "a school year looks like 2019-2020",
                {"fields": {"school_year": ["not a school year"]}},
            )
        first = Semester(int(match.group(1)), 1)
        second = first.next()
        return cls(
            {"school_year": text}, (str(first), str(second)), first.starts_on, second.ends_on
        )

    def view(self) -> dict[str, Any]:
        return {**self.label, "semesters": list(self.semesters)}


@dataclass(frozen=True)
class School:
    municipality: str
    kind: str


@dataclass(frozen=True)
class Scope:
    municipality: str | None = None
    school_id: str | None = None
    # The schools the figures are limited to (None: every school).
    school_ids: tuple[str, ...] | None = None

    @property
    def level(self) -> str:
        return "school" if self.school_id else "municipality" if self.municipality else "all"

    def view(self) -> dict[str, Any]:
        return {"level": self.level, "municipality": self.municipality, "school_id": self.school_id}


def directory(query: Query, models: ReadModels) -> dict[str, School]:
    """Every school reporting knows: the reference data, and identification's registrations."""
    schools = {sid: School(s.municipality, s.kind) for sid, s in reference_schools().items()}
    for row in query(f"SELECT school_id, municipality, kind FROM {models['schools']}"):
        schools[row["school_id"]] = School(row["municipality"], row["kind"])
    return schools


def scope_of(
    schools: Mapping[str, School], municipality: str | None, school_id: str | None
) -> Scope:
    """The scope asked for, checked against the schools known (tenancy is the caller's)."""
    if school_id is not None:
        school = schools.get(school_id)
        if school is None:
            raise SchoolNotFoundError(f"school {school_id} not found")
        if municipality is not None and school.municipality != municipality:
            raise InvalidInputError(
                f"school {school_id} is not in {municipality}",
                {"fields": {"school_id": [f"not a school of {municipality}"]}},
            )
        return Scope(school.municipality, school_id, (school_id,))
    if municipality is not None:
        ids = tuple(sorted(s for s, info in schools.items() if info.municipality == municipality))
        if not ids:
            raise MunicipalityNotFoundError(f"municipality {municipality} not found")
        return Scope(municipality, None, ids)
    return Scope()


# -- the report ---------------------------------------------------------------------------------


def supported(alias: str = "") -> str:
    """Plans that count as support: fully approved at some time, and not deactivated."""
    return f"{alias}supported = 1 AND {alias}status <> '{INACTIVE}'"


def planned(alias: str = "") -> str:
    """A provision's planned money; a cancelled one counts what it delivered."""
    return (
        f"CASE WHEN {alias}status = 'cancelled' THEN {alias}delivered_eur "
        f"ELSE {alias}planned_eur END"
    )


class EsfReport:
    """The report of one period and scope, read with ``query`` from one snapshot."""

    def __init__(
        self,
        query: Query,
        models: ReadModels,
        schools: Mapping[str, School],
        period: Period,
        scope: Scope,
    ) -> None:
        self.q, self.m, self.schools, self.period, self.scope = (
            query,
            models,
            schools,
            period,
            scope,
        )
        self.where = self.within()
        self.params: list[Any] = list(period.semesters) + list(scope.school_ids or ())

    def within(self, alias: str = "") -> str:
        """The period and scope, on a table aliased ``alias`` (``"p."``); ``self.params``."""
        where = f"{alias}semester IN ({', '.join('?' * len(self.period.semesters))})"
        if self.scope.school_ids is not None:
            marks = ", ".join("?" * len(self.scope.school_ids))
            where += f" AND {alias}school_id IN ({marks})"
        return where

    def _kind(self, school_id: str | None) -> str | None:
        school = self.schools.get(school_id or "")
        return school.kind if school else None

    # -- the document ---------------------------------------------------------------------
    def document(self, as_of: str | None) -> dict[str, Any]:
        hours = self.consultation_hours()
        material = self.material_eur()
        by_school = self.supported_by_school()
        cost = hundredths(hours["cost_eur"]) + hundredths(material["delivered"]["total"])
        return {
            "period": self.period.view(),
            "scope": self.scope.view(),
            "as_of": as_of,
            "indicators": {
                "institutions_supported": sum(1 for n in by_school.values() if n),
                "pupils_at_risk": self.pupils_at_risk(),
                "pupils_supported": {**self.pupils_supported(), "by_school": by_school},
                "plans_by_status": self.plans_by_status(),
                "plans_continued": self.plans_continued(),
                "consultation_hours": hours,
                "material_eur": material,
                "total_cost_eur": decimal_text(cost),
                "result": self.result(),
            },
        }

    # -- pupils ----------------------------------------------------------------------------
    def pupils_supported(self) -> dict[str, Any]:
        m = self.m
        rows = self.q(
            f"SELECT pu.school_id AS school_id, pu.grade AS grade, pu.gender AS gender, "
            f"COUNT(*) AS n FROM (SELECT DISTINCT pupil_id FROM {m['plans']} "
            f"WHERE {supported()} AND {self.where}) sp "
            f"LEFT JOIN {m['pupils']} pu ON pu.pupil_id = sp.pupil_id "
            "GROUP BY pu.school_id, pu.grade, pu.gender",
            self.params,
        )
        total = 0
        gender = dict.fromkeys(GENDERS, 0)
        isced = dict.fromkeys(ISCED_LEVELS, 0)
        isced_gender = {level: dict.fromkeys(GENDERS, 0) for level in ISCED_LEVELS}
        bands = dict.fromkeys(GRADE_BANDS, 0)
        young = 0
        young_gender = dict.fromkeys(GENDERS, 0)
        for row in rows:
            n, grade, kind = int(row["n"]), row["grade"], self._kind(row["school_id"])
            g = row["gender"] or UNKNOWN
            level, band = isced_level(grade, kind), grade_band(grade, kind)
            total += n
            _add(gender, g, n)
            _add(isced, level, n)
            _add(isced_gender.setdefault(level, dict.fromkeys(GENDERS, 0)), g, n)
            _add(bands, band, n)
            if below_25(grade):
                young += n
                _add(young_gender, g, n)
        return {
            "total": total,
            "by_gender": gender,
            "by_isced": isced,
            "by_isced_gender": isced_gender,
            "below_25": young,
            "below_25_by_gender": young_gender,
            "by_grade_band": bands,
        }

    def supported_by_school(self) -> dict[str, int]:
        rows = self.q(
            f"SELECT school_id, COUNT(DISTINCT pupil_id) AS n FROM {self.m['plans']} "
            f"WHERE {supported()} AND {self.where} GROUP BY school_id",
            self.params,
        )
        return {row["school_id"]: int(row["n"]) for row in sorted(rows, key=_by("school_id"))}

    def _open_signs(self) -> tuple[str, list[Any]]:
        where = "observed_on <= ? AND (resolved_on IS NULL OR resolved_on >= ?)"
        params: list[Any] = [self.period.ends_on.isoformat(), self.period.starts_on.isoformat()]
        if self.scope.school_ids is not None:
            where += f" AND school_id IN ({', '.join('?' * len(self.scope.school_ids))})"
            params += list(self.scope.school_ids)
        return where, params

    def pupils_at_risk(self) -> dict[str, Any]:
        where, params = self._open_signs()
        table = self.m["signs"]
        total = self.q(f"SELECT COUNT(DISTINCT pupil_id) AS n FROM {table} WHERE {where}", params)
        rows = self.q(
            f"SELECT risk_group, COUNT(DISTINCT pupil_id) AS n FROM {table} WHERE {where} "
            "GROUP BY risk_group",
            params,
        )
        groups = dict.fromkeys(RISK_GROUPS, 0)
        for row in rows:
            groups[row["risk_group"]] = int(row["n"])
        return {"total": int(total[0]["n"]), "by_group": groups}

    # -- plans ----------------------------------------------------------------------------
    def plans_by_status(self) -> dict[str, int]:
        rows = self.q(
            f"SELECT status, COUNT(*) AS n FROM {self.m['plans']} WHERE {self.where} "
            "GROUP BY status",
            self.params,
        )
        statuses = dict.fromkeys(PLAN_STATUSES, 0)
        for row in rows:
            statuses[row["status"]] = int(row["n"])
        return statuses

    def plans_continued(self) -> int:
        rows = self.q(
            f"SELECT COUNT(*) AS n FROM {self.m['plans']} WHERE {self.where} "
            f"AND previous_plan_id IS NOT NULL AND status <> '{INACTIVE}'",
            self.params,
        )
        return int(rows[0]["n"])

    def result(self) -> dict[str, Any]:
        rows = self.q(
            f"SELECT outcome, COUNT(*) AS n FROM ({self._latest_outcomes()}) latest "
            "WHERE rn = 1 GROUP BY outcome",
            self.params,
        )
        outcomes = {row["outcome"]: int(row["n"]) for row in rows}
        continued = sum(outcomes.get(o, 0) for o in CONTINUED_OUTCOMES)
        left = sum(outcomes.get(o, 0) for o in LEFT_OUTCOMES)
        share = round(continued / (continued + left), 4) if continued + left else None
        return {"continued": continued, "left": left, "share": share}

    def _latest_outcomes(self) -> str:
        return (
            "SELECT pupil_id, plan_id, outcome, ROW_NUMBER() OVER "
            "(PARTITION BY pupil_id ORDER BY semester DESC, plan_id DESC) AS rn "
            f"FROM {self.m['plans']} WHERE {supported()} AND outcome IS NOT NULL AND {self.where}"
        )

    # -- support delivered -------------------------------------------------------------------
    def consultation_hours(self) -> dict[str, Any]:
        rows = self.q(
            f"SELECT kind, SUM(hours) AS hours, SUM(cost_eur) AS cost FROM {self.m['hours']} "
            f"WHERE {self.where} GROUP BY kind",
            self.params,
        )
        by_kind = dict.fromkeys(CONSULTATION_KINDS, 0)
        cost = 0
        for row in rows:
            by_kind[row["kind"]] = int(row["hours"])
            cost += int(row["cost"])
        return {
            "total": decimal_text(sum(by_kind.values())),
            "by_kind": {kind: decimal_text(h) for kind, h in by_kind.items()},
            "cost_eur": decimal_text(cost),
        }

    def material_eur(self) -> dict[str, Any]:
        rows = self.q(
            f"SELECT kind, SUM({planned()}) AS planned, SUM(committed_eur) AS committed, "
            f"SUM(delivered_eur) AS delivered FROM {self.m['provisions']} "
            f"WHERE {self.where} GROUP BY kind",
            self.params,
        )
        sums = {a: dict.fromkeys(MATERIAL_KINDS, 0) for a in ("planned", "committed", "delivered")}
        for row in rows:
            for amount, by_kind in sums.items():
                by_kind[row["kind"]] = int(row[amount])
        return {
            amount: {
                **{kind: decimal_text(v) for kind, v in by_kind.items()},
                "total": decimal_text(sum(by_kind.values())),
            }
            for amount, by_kind in sums.items()
        }


def _add(counts: dict[str, int], key: str, n: int) -> None:
    counts[key] = counts.get(key, 0) + n


def _by(column: str) -> Callable[[Any], Any]:
    return lambda row: row[column]


# -- explain ----------------------------------------------------------------------------------


@dataclass
class Explanation:
    pupil_ids: set[str]
    plan_ids: set[str]
    school_ids: set[str] | None = None

    def view(self) -> dict[str, Any]:
        view: dict[str, Any] = {
            "pupil_ids": sorted(self.pupil_ids),
            "plan_ids": sorted(self.plan_ids),
        }
        if self.school_ids is not None:
            view["school_ids"] = sorted(self.school_ids)
        return view


def figure(indicators: Mapping[str, Any], indicator: str) -> Any:
    """The figure at a dotted path (``pupils_supported.by_gender.F``), or 400."""
    value: Any = indicators
    for part in indicator.split("."):
        if not isinstance(value, dict) or part not in value:
            raise UnknownIndicatorError(
                f"the report has no indicator {indicator}",
                {"fields": {"explain": ["not an indicator of this report"]}},
            )
        value = value[part]
    return value


class Explainer:
    """The pupil and plan ids behind one figure of an EsfReport."""

    def __init__(self, report: EsfReport) -> None:
        self.r = report

    def explain(self, indicator: str) -> Explanation:
        head, *rest = indicator.split(".")
        handler = getattr(self, f"_{head}", None)
        if handler is None:
            raise UnknownIndicatorError(
                f"{indicator} cannot be explained",
                {"fields": {"explain": ["not an explainable indicator"]}},
            )
        explanation: Explanation = handler(rest)
        return explanation

    def _rows(self, statement: str, params: list[Any] | None = None) -> list[Any]:
        return self.r.q(statement, self.r.params if params is None else params)

    def _plans(self, rows: list[Any]) -> Explanation:
        return Explanation(
            {r["pupil_id"] for r in rows if r["pupil_id"]}, {r["plan_id"] for r in rows}
        )

    def _institutions_supported(self, rest: list[str]) -> Explanation:
        rows = self._rows(
            f"SELECT pupil_id, plan_id, school_id FROM {self.r.m['plans']} "
            f"WHERE {supported()} AND {self.r.where}"
        )
        found = self._plans(rows)
        found.school_ids = {r["school_id"] for r in rows}
        return found

    def _pupils_supported(self, rest: list[str]) -> Explanation:
        m, r = self.r.m, self.r
        rows = self._rows(
            f"SELECT p.pupil_id AS pupil_id, p.plan_id AS plan_id, p.school_id AS plan_school, "
            f"pu.school_id AS school_id, pu.grade AS grade, pu.gender AS gender "
            f"FROM {m['plans']} p LEFT JOIN {m['pupils']} pu ON pu.pupil_id = p.pupil_id "
            f"WHERE {supported('p.')} AND {r.within('p.')}"
        )
        return self._plans([row for row in rows if self._in_category(row, rest)])

    def _in_category(self, row: Any, rest: list[str]) -> bool:
        if not rest:
            return True
        grade, kind = row["grade"], self.r._kind(row["school_id"])
        gender = row["gender"] or UNKNOWN
        what, *value = rest
        key = ".".join(value)
        if what == "by_gender":
            return gender == key
        if what == "by_isced":
            return isced_level(grade, kind) == key
        if what == "by_isced_gender":
            level, _, g = key.partition(".")
            return isced_level(grade, kind) == level and (not g or gender == g)
        if what == "by_grade_band":
            return grade_band(grade, kind) == key
        if what == "below_25":
            return below_25(grade)
        if what == "below_25_by_gender":
            return below_25(grade) and gender == key
        if what == "by_school":
            return bool(row["plan_school"] == key)
        return what == "total"

    def _pupils_at_risk(self, rest: list[str]) -> Explanation:
        where, params = self.r._open_signs()
        if rest[:1] == ["by_group"] and len(rest) == 2:
            where += " AND risk_group = ?"
            params = [*params, rest[1]]
        rows = self._rows(
            f"SELECT DISTINCT pupil_id FROM {self.r.m['signs']} WHERE {where}", params
        )
        return Explanation({row["pupil_id"] for row in rows}, set())

    def _plans_by_status(self, rest: list[str]) -> Explanation:
        where, params = self.r.where, list(self.r.params)
        if rest:
            where += " AND status = ?"
            params.append(rest[0])
        return self._plans(
            self._rows(f"SELECT pupil_id, plan_id FROM {self.r.m['plans']} WHERE {where}", params)
        )

    def _plans_continued(self, rest: list[str]) -> Explanation:
        return self._plans(
            self._rows(
                f"SELECT pupil_id, plan_id FROM {self.r.m['plans']} WHERE {self.r.where} "
                f"AND previous_plan_id IS NOT NULL AND status <> '{INACTIVE}'"
            )
        )

    def _consultation_hours(self, rest: list[str]) -> Explanation:
        where, params = self.r.within("h."), list(self.r.params)
        if rest[:1] == ["by_kind"] and len(rest) == 2:
            where += " AND h.kind = ?"
            params.append(rest[1])
        return self._plans(
            self._rows(
                f"SELECT DISTINCT p.pupil_id AS pupil_id, h.plan_id AS plan_id "
                f"FROM {self.r.m['hours']} h LEFT JOIN {self.r.m['plans']} p "
                f"ON p.plan_id = h.plan_id WHERE {where} AND h.hours <> 0",
                params,
            )
        )

    def _material_eur(self, rest: list[str]) -> Explanation:
        amount = rest[0] if rest else None
        column = {
            "planned": planned("v."),
            "committed": "v.committed_eur",
            "delivered": "v.delivered_eur",
        }
        where, params = self.r.within("v."), list(self.r.params)
        if amount is not None:
            where += f" AND ({column[amount]}) <> 0"
        else:
            where += " AND (v.planned_eur <> 0 OR v.committed_eur <> 0 OR v.delivered_eur <> 0)"
        if len(rest) == 2 and rest[1] != "total":
            where += " AND v.kind = ?"
            params.append(rest[1])
        return self._plans(
            self._rows(
                f"SELECT DISTINCT p.pupil_id AS pupil_id, v.plan_id AS plan_id "
                f"FROM {self.r.m['provisions']} v LEFT JOIN {self.r.m['plans']} p "
                f"ON p.plan_id = v.plan_id WHERE {where}",
                params,
            )
        )

    def _total_cost_eur(self, rest: list[str]) -> Explanation:
        hours = self._consultation_hours([])
        material = self._material_eur(["delivered"])
        return Explanation(hours.pupil_ids | material.pupil_ids, hours.plan_ids | material.plan_ids)

    def _result(self, rest: list[str]) -> Explanation:
        outcomes = {
            "continued": CONTINUED_OUTCOMES,
            "left": LEFT_OUTCOMES,
        }.get(rest[0] if rest else "", CONTINUED_OUTCOMES + LEFT_OUTCOMES)
        rows = self._rows(
            f"SELECT pupil_id, plan_id, outcome FROM ({self.r._latest_outcomes()}) latest "
            "WHERE rn = 1"
        )
        return self._plans([row for row in rows if row["outcome"] in outcomes])
