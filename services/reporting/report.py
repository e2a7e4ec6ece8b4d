"""The ESF report: every indicator as one SQL aggregate over the read models, and the ids
behind each figure (``explain``).

Period: one semester (``2019-2020-1``) or a school year (``2019-2020``: its two
semesters). A plan belongs to the period of its semester; a provision and a consultation
to their plan's semester. Scope: everything, one municipality (its schools: the shipped
reference schools and those identification registered) or one school; plans, hours and
provisions are placed by the school that keeps the plan, pupils at risk by the school
identification had them at when the sign was recorded (registered, or re-enrolled at).

Definitions (the figures auditors trace back with ``?explain=<indicator>``):

- ``pupils_supported``: distinct pupils with a *supported* plan in the period and scope.
  A plan is supported once it was fully approved at every level of its chain
  (``plan_fully_approved``), whatever happened to it later, unless it was deactivated
  (``inactive``: the programme's "deleted", which planning allows only while no money
  was spent on it). Split by the gender (``F``, ``M``) and grade identification
  registered (for a re-enrolled pupil, see below); ``by_isced``: ISCED 1 for grades 1-6,
  2 for 7-9, 3 for 10-12 and for every vocational course; ``by_grade_band``: 1-4, 5-6,
  7-9, 10-12, vocational;
  ``by_isced_gender`` both at once; ``below_25`` (and ``below_25_by_gender``): pupils
  below 25 years of age on entry, the day their first supported plan in the period (and
  scope) was first fully approved, as identification answered reporting's enquiry
  (journalled, so ``as_of`` counts an answer only from the moment it was journalled);
  ``age_25_or_over`` the others answered; ``age_unknown`` those with no answer yet or
  none to give (erased): the three add up to ``total``; ``by_school``: distinct pupils
  per school with a supported plan there (a pupil supported at two schools counts at
  each, once in ``total``). A pupil whose registration reporting has not received
  counts under ``unknown``. A pupil who left school and was re-enrolled (at another
  school or the same) is one pupil, counted once, with the grade and school kind the
  pupil had on entry in the school year (a year's figures do not change when the pupil
  is re-enrolled later with another grade); within a semester the entry is the pupil's
  first supported plan there, whichever school keeps it.
- ``institutions_supported``: schools with at least one supported plan in the period
  (both schools of a pupil who changed school within a semester).
- ``pupils_at_risk``: distinct pupils with a risk sign that was open at some time in the
  period: observed on or before the period's last day and not resolved before its first
  day. A sign still open when its pupil left school ends on the day of the departure, so
  a departed pupil counts up to the departure and not after. ``by_group``: the same per
  risk group (a pupil with signs in two groups counts in each).
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
  outcome yet are in neither. Within a semester the outcome is that of the pupil's last
  plan there: a pupil whose plan was closed on leaving school and who got a plan at the
  school they were re-enrolled at counts with the new plan's outcome (in a scope that has
  only the first school too: it is the pupil's outcome of that semester).

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
    BELOW_25,
    CLOSED_ON_DEPARTURE,
    CONTINUED_OUTCOMES,
    GENDERS,
    GRADE_BANDS,
    INACTIVE,
    ISCED_LEVELS,
    LEFT_OUTCOMES,
    decimal_text,
    hundredths,
)
from services.reporting.readmodel import ReadModels
from shared.errors import InvalidInputError, NotFoundError
from shared.schools import reference_schools
from shared.semesters import Semester
from shared.vocabulary import (
    AGED_25_OR_OVER,
    CONSULTATION_KINDS,
    MATERIAL_KINDS,
    PLAN_STATUSES,
    RISK_GROUPS,
)

Query = Callable[..., list[Any]]
_SCHOOL_YEAR = re.compile(r"^(\d{4})-(\d{4})$")
# A plan row that is support: fully approved at some time and not deactivated.
SUPPORTED = f"supported = 1 AND status <> '{INACTIVE}'"
# A plan row closed on the pupil's departure: another plan may follow it in its semester.
DEPARTED = f"close_cause = '{CLOSED_ON_DEPARTURE}'"


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

Fragment = tuple[str, list[Any]]


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
        self.school_year = period.semesters[0][:9]
        self.terms = tuple(semester[-1] for semester in period.semesters)

    # -- filters ------------------------------------------------------------------------------
    def within(self, alias: str = "") -> Fragment:
        """Rows of the period's semesters and the scope's schools (``alias``: "p.")."""
        marks = ", ".join("?" * len(self.period.semesters))
        where, params = f"{alias}semester IN ({marks})", list(self.period.semesters)
        if self.scope.school_ids is not None:
            where += f" AND {alias}school_id IN ({', '.join('?' * len(self.scope.school_ids))})"
            params += list(self.scope.school_ids)
        return where, params

    def supported_plans(self) -> Fragment:
        """Supported ``plans`` rows of the period and the scope."""
        where, params = self.within()
        return f"{where} AND {SUPPORTED}", params

    def at_school(self, term: str) -> Fragment:
        """A ``years`` row whose pupil's last supported plan that semester is in the scope."""
        column = f"s{term}_school"
        if self.scope.school_ids is None:
            return f"{column} IS NOT NULL", []
        return f"{column} IN ({', '.join('?' * len(self.scope.school_ids))})", list(
            self.scope.school_ids
        )

    def held(self, term: str) -> Fragment:
        """A ``years`` row whose pupil had a supported plan in the scope that semester: the
        last one, or one closed on the pupil's departure (the pupil was re-enrolled and has
        the later plan's school in the row). Only those plans can come before another in a
        semester, and an index finds them: few pupils leave school."""
        at, params = self.at_school(term)
        if self.scope.school_ids is None:
            return at, params
        marks = ", ".join("?" * len(self.scope.school_ids))
        left = (
            f"pupil_id IN (SELECT pupil_id FROM {self.m['plans']} WHERE {DEPARTED} "
            f"AND semester = ? AND school_id IN ({marks}) AND {SUPPORTED})"
        )
        return f"({at} OR {left})", [
            *params,
            f"{self.school_year}-{term}",
            *self.scope.school_ids,
        ]

    def held_flags(self) -> Fragment:
        """``in1``, ``in2``: the terms of the period a ``years`` row is ``held`` in (for
        ``holds``)."""
        columns, params = [], []
        for term in self.terms:
            where, values = self.held(term)
            columns.append(f"CASE WHEN {where} THEN 1 ELSE 0 END AS in{term}")
            params += values
        return ", ".join(columns), params

    def held_in_period(self) -> Fragment:
        parts = [self.held(term) for term in self.terms]
        where = f"school_year = ? AND ({' OR '.join(p[0] for p in parts)})"
        return where, [self.school_year, *(x for p in parts for x in p[1])]

    def holds(self, row: Any, term: str) -> bool:
        """Whether a ``years`` row read with ``held_flags`` is ``held`` in the term."""
        return bool(row[f"in{term}"])

    def latest(self, column: str) -> Fragment:
        """The pupil's latest ended supported plan's ``outcome`` (or ``plan``) in scope."""
        cases, params = [], []
        for term in reversed(self.terms):
            where, values = self.held(term)
            cases.append(f"WHEN {where} AND s{term}_outcome IS NOT NULL THEN s{term}_{column}")
            params += values
        return f"CASE {' '.join(cases)} END", params

    def entry_band(self) -> Fragment:
        """The pupil's age band on entry: that of the first semester of the period in which
        the pupil held a supported plan in scope (null until answered)."""
        cases, params = [], []
        for term in self.terms:
            where, values = self.held(term)
            cases.append(f"WHEN {where} THEN s{term}_age")
            params += values
        return f"CASE {' '.join(cases)} END", params

    def band_of(self, row: Any) -> str | None:
        """``entry_band`` of one ``years`` row."""
        term = next(t for t in self.terms if self.holds(row, t))
        band: str | None = row[f"s{term}_age"]
        return band

    # -- the document ---------------------------------------------------------------------
    def document(self, as_of: str | None) -> dict[str, Any]:
        hours = self.consultation_hours()
        material = self.material_eur()
        by_school = self.supported_by_school()
        cost = hundredths(hours["cost_eur"]) + hundredths(material["delivered"]["total"])
        statuses, continued = self.plans_by_status()
        return {
            "period": self.period.view(),
            "scope": self.scope.view(),
            "as_of": as_of,
            "indicators": {
                "institutions_supported": len(by_school),
                "pupils_at_risk": self.pupils_at_risk(),
                "pupils_supported": {**self.pupils_supported(), "by_school": by_school},
                "plans_by_status": statuses,
                "plans_continued": continued,
                "consultation_hours": hours,
                "material_eur": material,
                "total_cost_eur": decimal_text(cost),
                "result": self.result(),
            },
        }

    # -- pupils ----------------------------------------------------------------------------
    def pupils_supported(self) -> dict[str, Any]:
        age, age_params = self.entry_band()
        where, params = self.held_in_period()
        rows = self.q(
            f"SELECT profile, {age} AS age, COUNT(*) AS n FROM {self.m['years']} "
            f"WHERE {where} GROUP BY profile, age",
            age_params + params,
        )
        gender = dict.fromkeys(GENDERS, 0)
        isced = dict.fromkeys(ISCED_LEVELS, 0)
        isced_gender = {level: dict.fromkeys(GENDERS, 0) for level in ISCED_LEVELS}
        bands = dict.fromkeys(GRADE_BANDS, 0)
        ages = dict.fromkeys(AGE_FIGURES, 0)
        young_gender = dict.fromkeys(GENDERS, 0)
        for row in rows:
            n = int(row["n"])
            g, level, band = row["profile"].split(" ")
            _add(gender, g, n)
            _add(isced, level, n)
            _add(isced_gender.setdefault(level, dict.fromkeys(GENDERS, 0)), g, n)
            _add(bands, band, n)
            _add(ages, age_figure(row["age"]), n)
            if row["age"] == BELOW_25:
                _add(young_gender, g, n)
        return {
            "total": sum(gender.values()),
            "by_gender": gender,
            "by_isced": isced,
            "by_isced_gender": isced_gender,
            "below_25": ages["below_25"],
            "below_25_by_gender": young_gender,
            "age_25_or_over": ages["age_25_or_over"],
            "age_unknown": ages["age_unknown"],
            "by_grade_band": bands,
        }

    def supported_by_school(self) -> dict[str, int]:
        """Distinct pupils per school: a pupil kept at the same school both semesters once,
        one who changed school (between the semesters or within one) at each."""
        parts, params = [], []
        for term in self.terms:
            where, values = self.at_school(term)
            if term == "2" and "1" in self.terms:
                where += " AND (s1_school IS NULL OR s1_school <> s2_school)"
            parts.append(
                f"SELECT s{term}_school AS school FROM {self.m['years']} "
                f"WHERE school_year = ? AND {where}"
            )
            params += [self.school_year, *values]
        earlier, values = self.earlier_schools()
        rows = self.q(
            f"SELECT school, COUNT(*) AS n FROM ({' UNION ALL '.join([*parts, earlier])}) t "
            "GROUP BY school",
            params + values,
        )
        return {row["school"]: int(row["n"]) for row in sorted(rows, key=_by("school"))}

    def earlier_schools(self) -> Fragment:
        """A school a pupil was supported at before leaving it, once a pupil, unless the
        pupil's ``years`` row has it in the period too (``years`` keeps the school of the
        pupil's last plan of a semester)."""
        where, params = self.within("p.")
        counted = " OR ".join(f"y.s{term}_school = p.school_id" for term in self.terms)
        return (
            f"SELECT school FROM (SELECT DISTINCT p.school_id AS school, p.pupil_id "
            f"FROM {self.m['plans']} p WHERE p.{DEPARTED} AND {where} "
            f"AND p.supported = 1 AND p.status <> '{INACTIVE}' AND NOT EXISTS (SELECT 1 "
            f"FROM {self.m['years']} y WHERE y.school_year = ? AND y.pupil_id = p.pupil_id "
            f"AND ({counted}))) e"
        ), [*params, self.school_year]

    def _open_signs(self) -> Fragment:
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
            f"SELECT risk_group, COUNT(*) AS n FROM (SELECT DISTINCT pupil_id, risk_group "
            f"FROM {table} WHERE {where}) t GROUP BY risk_group",
            params,
        )
        groups = dict.fromkeys(RISK_GROUPS, 0)
        for row in rows:
            groups[row["risk_group"]] = int(row["n"])
        return {"total": int(total[0]["n"]), "by_group": groups}

    # -- plans ----------------------------------------------------------------------------
    def plans_by_status(self) -> tuple[dict[str, int], int]:
        where, params = self.within()
        rows = self.q(
            f"SELECT status, SUM(plans) AS n, SUM(continued) AS c FROM {self.m['plan_counts']} "
            f"WHERE {where} GROUP BY status",
            params,
        )
        statuses = dict.fromkeys(PLAN_STATUSES, 0)
        continued = 0
        for row in rows:
            statuses[row["status"]] = int(row["n"])
            if row["status"] != INACTIVE:
                continued += int(row["c"])
        return statuses, continued

    def result(self) -> dict[str, Any]:
        outcome, outcome_params = self.latest("outcome")
        where, params = self.held_in_period()
        rows = self.q(
            f"SELECT outcome, COUNT(*) AS n FROM (SELECT {outcome} AS outcome "
            f"FROM {self.m['years']} WHERE {where}) t "
            "WHERE outcome IS NOT NULL GROUP BY outcome",
            outcome_params + params,
        )
        outcomes = {row["outcome"]: int(row["n"]) for row in rows}
        continued = sum(outcomes.get(o, 0) for o in CONTINUED_OUTCOMES)
        left = sum(outcomes.get(o, 0) for o in LEFT_OUTCOMES)
        share = round(continued / (continued + left), 4) if continued + left else None
        return {"continued": continued, "left": left, "share": share}

    # -- support delivered -------------------------------------------------------------------
    def consultation_hours(self) -> dict[str, Any]:
        where, params = self.within()
        rows = self.q(
            f"SELECT kind, SUM(hours) AS hours, SUM(cost_eur) AS cost "
            f"FROM {self.m['hour_sums']} WHERE {where} GROUP BY kind",
            params,
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
        where, params = self.within()
        rows = self.q(
            "SELECT kind, SUM(planned_eur) AS planned, SUM(committed_eur) AS committed, "
            f"SUM(delivered_eur) AS delivered FROM {self.m['material_sums']} "
            f"WHERE {where} GROUP BY kind",
            params,
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


def planned(alias: str = "") -> str:
    """A provision's planned money; a cancelled one counts what it delivered."""
    return (
        f"CASE WHEN {alias}status = 'cancelled' THEN {alias}delivered_eur "
        f"ELSE {alias}planned_eur END"
    )


AGE_FIGURES = ("below_25", "age_25_or_over", "age_unknown")


def age_figure(band: str | None) -> str:
    """Which of the report's age figures a pupil with this entry band counts in."""
    return {BELOW_25: "below_25", AGED_25_OR_OVER: "age_25_or_over"}.get(band or "", "age_unknown")


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
    """The pupil and plan ids behind one figure of an EsfReport (read from the detail rows,
    so an auditor sees the same figure arrived at another way)."""

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

    def _plans(self, rows: list[Any]) -> Explanation:
        return Explanation(
            {r["pupil_id"] for r in rows if r["pupil_id"]}, {r["plan_id"] for r in rows}
        )

    def _held(self) -> list[Any]:
        """Each supported pupil's ``years`` row, with the terms it counts in (``holds``)."""
        flags, flag_params = self.r.held_flags()
        where, params = self.r.held_in_period()
        return self.r.q(
            f"SELECT pupil_id, profile, s1_age, s2_age, {flags} "
            f"FROM {self.r.m['years']} WHERE {where}",
            flag_params + params,
        )

    def _supported(self) -> list[Any]:
        """The supported plans of the period and scope: every school's, also the first
        school's of a pupil who changed school within a semester."""
        where, params = self.r.supported_plans()
        return self.r.q(
            f"SELECT pupil_id, plan_id, school_id FROM {self.r.m['plans']} WHERE {where}",
            params,
        )

    def _institutions_supported(self, rest: list[str]) -> Explanation:
        plans = self._supported()
        return Explanation(
            {r["pupil_id"] for r in plans},
            {r["plan_id"] for r in plans},
            {r["school_id"] for r in plans},
        )

    def _pupils_supported(self, rest: list[str]) -> Explanation:
        plans = self._supported()
        if rest[:1] == ["by_school"]:
            school = ".".join(rest[1:])
            plans = [r for r in plans if r["school_id"] == school]
            return self._plans(plans)
        pupils = {
            row["pupil_id"]
            for row in self._held()
            if _in_category(row["profile"], self.r.band_of(row), rest)
        }
        return Explanation(pupils, {r["plan_id"] for r in plans if r["pupil_id"] in pupils})

    def _pupils_at_risk(self, rest: list[str]) -> Explanation:
        where, params = self.r._open_signs()
        if rest[:1] == ["by_group"] and len(rest) == 2:
            where += " AND risk_group = ?"
            params = [*params, rest[1]]
        rows = self.r.q(f"SELECT DISTINCT pupil_id FROM {self.r.m['signs']} WHERE {where}", params)
        return Explanation({row["pupil_id"] for row in rows}, set())

    def _plans_by_status(self, rest: list[str]) -> Explanation:
        where, params = self.r.within()
        if rest:
            where += " AND status = ?"
            params.append(rest[0])
        return self._plans(
            self.r.q(f"SELECT pupil_id, plan_id FROM {self.r.m['plans']} WHERE {where}", params)
        )

    def _plans_continued(self, rest: list[str]) -> Explanation:
        where, params = self.r.within()
        return self._plans(
            self.r.q(
                f"SELECT pupil_id, plan_id FROM {self.r.m['plans']} WHERE {where} "
                f"AND previous_plan_id IS NOT NULL AND status <> '{INACTIVE}'",
                params,
            )
        )

    def _consultation_hours(self, rest: list[str]) -> Explanation:
        where, params = self.r.within("h.")
        if rest[:1] == ["by_kind"] and len(rest) == 2:
            where += " AND h.kind = ?"
            params.append(rest[1])
        return self._plans(
            self.r.q(
                "SELECT DISTINCT p.pupil_id AS pupil_id, h.plan_id AS plan_id "
                f"FROM {self.r.m['hours']} h LEFT JOIN {self.r.m['plans']} p "
                f"ON p.plan_id = h.plan_id WHERE {where} AND h.hours <> 0",
                params,
            )
        )

    def _material_eur(self, rest: list[str]) -> Explanation:
        column = {
            "planned": planned("v."),
            "committed": "v.committed_eur",
            "delivered": "v.delivered_eur",
        }
        where, params = self.r.within("v.")
        if rest:
            where += f" AND ({column[rest[0]]}) <> 0"
        else:
            where += " AND (v.planned_eur <> 0 OR v.committed_eur <> 0 OR v.delivered_eur <> 0)"
        if len(rest) == 2 and rest[1] != "total":
            where += " AND v.kind = ?"
            params.append(rest[1])
        return self._plans(
            self.r.q(
                "SELECT DISTINCT p.pupil_id AS pupil_id, v.plan_id AS plan_id "
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
        outcomes = {"continued": CONTINUED_OUTCOMES, "left": LEFT_OUTCOMES}.get(
            rest[0] if rest else "", CONTINUED_OUTCOMES + LEFT_OUTCOMES
        )
        outcome, outcome_params = self.r.latest("outcome")
        plan, plan_params = self.r.latest("plan")
        where, params = self.r.held_in_period()
        rows = self.r.q(
            f"SELECT pupil_id, {plan} AS plan_id, {outcome} AS outcome "
            f"FROM {self.r.m['years']} WHERE {where}",
            plan_params + outcome_params + params,
        )
        return self._plans([row for row in rows if row["outcome"] in outcomes])


def _in_category(profile: str, age: str | None, rest: list[str]) -> bool:
    """Whether a pupil's profile (``"F 2 7-9"``) and age band on entry fall under a
    breakdown's key."""
    gender, level, band = profile.split(" ")
    what, *value = rest or ["total"]
    key = ".".join(value)
    figure = age_figure(age)
    return {
        "total": True,
        "by_gender": gender == key,
        "by_isced": level == key,
        "by_isced_gender": key in (level, f"{level}.{gender}"),
        "by_grade_band": band == key,
        "below_25": figure == "below_25",
        "below_25_by_gender": figure == "below_25" and gender == key,
        "age_25_or_over": figure == "age_25_or_over",
        "age_unknown": figure == "age_unknown",
    }.get(what, False)
