"""The Daugavpils demo end to end: the four services on the real broker, the scenario sent by
the same seed code ``pumpurs seed --demo`` runs, then every ESF indicator checked against
figures this test computes from what the seed sent (never from reporting's code).

The definitions the expected figures follow (the issue's, made precise):
- a plan *supports* its pupil once it is approved at every level of its chain;
- pupils at risk: pupils with a sign observed by the period's end (none is resolved here);
- consultation hours: every logged hour, confirmed or not, costed at planning's rates;
- material support, per provision (a material measure of a supported plan): delivered is
  what was delivered; committed is the rest while the plan is open; a plan that is closed
  (after its evaluation or its pupil's departure) releases the rest, so its provision is
  planned at what it delivered;
- result: per supported pupil, the outcome of the latest plan that has one: continues
  learning, transferred or graduated against left education (a departure closes the plan
  as left education), and the share of the first, to four decimals;
- below 25: ESF's age on entry, from the birth date the seed registered, on the (UTC) day
  the pupil's first supported plan of the period was first approved at the national level
  (as planning recorded it), or its semester's last day if that came first (the seed
  approves 2019's plans today).
"""

from __future__ import annotations

import contextlib
import io
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from demo.api import Api, SeedError
from demo.progress import Progress
from demo.scenario import NEXT_SEMESTER, SCHOOL_YEAR, SEMESTER, Plan, Scenario
from demo.seed import AUDITOR, NATIONAL, Seeder, seed_demo, teacher
from demo.show import settled_report
from shared.semesters import Semester
from shared.testing import running

PUPILS = 60  # small enough for a few minutes on both stores; every path is still taken
RATES = Path(__file__).resolve().parents[2] / "services" / "planning" / "rates.json"
CONTINUING = ("continues_learning", "transferred", "graduated")


# -- what the seed sent, as the programme counts it ----------------------------------------------


def final_status(plan: Plan, scenario: Scenario) -> str:
    if plan.stops_at == "draft":
        return "draft"
    if plan.stops_at is not None:
        return "in_approval"
    if plan is scenario.departure.plan:
        return "closed"
    if plan.evaluation is None:
        return "in_progress" if plan.consultations or plan.deliveries else "approved"
    return "closed" if plan.evaluation.close else "evaluated"


def outcome(plan: Plan, scenario: Scenario) -> str | None:
    if plan is scenario.departure.plan:
        return "left_education"  # the departure was "dropped_out"
    return plan.evaluation.outcome if plan.evaluation else None


def grade_band(grade: int) -> str:
    return "1-4" if grade <= 4 else "5-6" if grade <= 6 else "7-9" if grade <= 9 else "10-12"


def isced(grade: int) -> str:
    return "1" if grade <= 6 else "2" if grade <= 9 else "3"


def money(values: Iterable[Decimal]) -> Decimal:
    return sum(values, Decimal(0))


def entry_days(api: Api, scenario: Scenario) -> dict[str, date]:
    """The day each supported plan entered: its first approval at the national level (its
    first full approval: every chain of the demo's municipal schools ends there)."""
    days = {}
    for plan in (p for p in scenario.plans if p.fully_approved):
        answer = api.get("planning", f"/plans/{plan.plan_id}", NATIONAL)
        first = next(a["at"] for a in answer["approvals"] if a["level"] == "national")
        approved = datetime.fromisoformat(first).astimezone(UTC).date()
        # No later than the plan's semester: the seed approves 2019's plans today.
        days[plan.key] = min(approved, Semester.parse(plan.semester).ends_on)
    return days


def expected(
    scenario: Scenario,
    semesters: tuple[str, ...],
    entered: Mapping[str, date],
    schools: set[str] | None = None,
) -> dict[str, Any]:
    """Every indicator of the period and scope, from the scenario alone and the days its plans
    were approved (zero figures left out: the report may list them or not)."""
    rates = {k: Decimal(v) for k, v in json.loads(RATES.read_text())["eur_per_hour"].items()}
    ends_on = Semester.parse(semesters[-1]).ends_on

    def in_scope(school_id: str) -> bool:
        return schools is None or school_id in schools

    plans = [p for p in scenario.plans if p.semester in semesters and in_scope(p.pupil.school_id)]
    supported = [p for p in plans if p.fully_approved]
    pupils = {p.pupil.key: p.pupil for p in supported}.values()
    first_plans = {
        p.pupil.key: p for p in sorted(supported, key=lambda p: p.semester, reverse=True)
    }
    young = sum(1 for p in first_plans.values() if p.pupil.age_on(entered[p.key]) < 25)
    at_risk = [
        p
        for p in scenario.at_risk
        if in_scope(p.school_id) and any(s.observed_on <= ends_on for s in p.signs)
    ]
    sessions = [c for p in plans for c in p.consultations]
    hours: defaultdict[str, Decimal] = defaultdict(Decimal)
    for c in sessions:
        hours[c.measure.kind] += c.hours
    cost = money((rates[c.measure.kind] * c.hours).quantize(Decimal("0.01")) for c in sessions)
    material = material_support(supported, scenario)
    latest: dict[str, str | None] = {}
    for plan in sorted(supported, key=lambda p: p.semester):
        if outcome(plan, scenario) is not None:
            latest[plan.pupil.key] = outcome(plan, scenario)
    continued = sum(1 for o in latest.values() if o in CONTINUING)
    left = sum(1 for o in latest.values() if o == "left_education")
    return normal(
        {
            "institutions_supported": len({p.pupil.school_id for p in supported}),
            "pupils_at_risk": {
                "total": len(at_risk),
                "by_group": Counter(g for p in at_risk for g in {s.group for s in p.signs}),
            },
            "pupils_supported": {
                "total": len(pupils),
                "by_gender": Counter(p.gender for p in pupils),
                "by_isced": Counter(isced(p.grade) for p in pupils),
                "below_25": young,
                "age_25_or_over": len(pupils) - young,
                "age_unknown": 0,
                "by_grade_band": Counter(grade_band(p.grade) for p in pupils),
                "by_school": Counter(p.school_id for p in pupils),
            },
            "plans_by_status": Counter(final_status(p, scenario) for p in plans),
            "plans_continued": sum(1 for p in plans if p.previous is not None),
            "consultation_hours": {"total": money(hours.values()), "by_kind": hours},
            "material_eur": material,
            "total_cost_eur": cost + material["delivered"]["total"],
            "result": {
                "continued": continued,
                "left": left,
                "share": (
                    (Decimal(continued) / (continued + left)).quantize(Decimal("0.0001"))
                    if continued + left
                    else None
                ),
            },
        }
    )


def material_support(supported: list[Plan], scenario: Scenario) -> dict[str, Any]:
    sums: dict[str, defaultdict[str, Decimal]] = {
        k: defaultdict(Decimal) for k in ("planned", "committed", "delivered")
    }
    for plan in supported:
        closed = final_status(plan, scenario) == "closed"
        for measure in (m for m in plan.measures if m.material):
            assert measure.amount_eur is not None
            delivered = money(d.amount_eur for d in plan.deliveries if d.measure is measure)
            sums["delivered"][measure.kind] += delivered
            sums["planned"][measure.kind] += delivered if closed else measure.amount_eur
            if not closed:
                sums["committed"][measure.kind] += measure.amount_eur - delivered
    return {name: {**by_kind, "total": money(by_kind.values())} for name, by_kind in sums.items()}


BREAKDOWNS = frozenset(
    {
        "by_group", "by_gender", "by_isced", "by_grade_band", "by_school", "by_kind",
        "plans_by_status", "planned", "committed", "delivered",
    }
)  # fmt: skip


def normal(value: Any, breakdown: bool = False) -> Any:
    """Numbers as Decimals, breakdowns without their zero entries: the report's form and ours
    compared on what they say."""
    if isinstance(value, Mapping):
        pairs = {k: normal(v, k in BREAKDOWNS) for k, v in value.items()}
        return {k: v for k, v in pairs.items() if not (breakdown and k != "total" and v == 0)}
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float | str | Decimal):
        try:
            return Decimal(str(value))
        except ArithmeticError:
            return value
    return value


def shown(report: Mapping[str, Any], expected: Mapping[str, Any]) -> dict[str, Any]:
    """The report's figures for the indicators the contract names (it may add more)."""
    result = {}
    for key, value in expected.items():
        actual = report.get(key)
        if isinstance(value, Mapping) and key not in BREAKDOWNS:
            result[key] = shown(actual if isinstance(actual, Mapping) else {}, value)
        else:
            result[key] = normal(actual, key in BREAKDOWNS)
    return result


# -- the test --------------------------------------------------------------------------------------


def test_the_daugavpils_demo_reports_exactly_what_was_sent(system: Any) -> None:
    names = ("identification", "planning", "provisioning", "reporting")
    services = [system.service(name) for name in names]
    with running(*services):
        urls = {name: service.url for name, service in zip(names, services, strict=True)}
        api = Api(urls, {"PUMPURS_KEYS_DIR": str(system.keys_dir)}, wait_timeout=90)
        log = io.StringIO()
        scenario = seed_demo(api, Progress(log, live=False), pupils=PUPILS)

        seeded_as_planned(api, scenario)
        the_transferred_pupil_is_at_the_new_school(api, scenario)
        a_second_seed_creates_nothing(api, scenario, log)
        assert "pupils 60/60" in log.getvalue()
        for pupil in scenario.pupils:  # no personal data in what the seed prints
            assert pupil.family_name not in log.getvalue()
            assert pupil.personal_code not in log.getvalue()

        entered = entry_days(api, scenario)
        reporting_caught_up(api, scenario, entered)
        semester_report_matches(api, scenario, entered)
        explanations_name_the_pupils(api, scenario, entered)
        school_year_and_scopes_agree(api, scenario, entered)


def seeded_as_planned(api: Api, scenario: Scenario) -> None:
    """Planning holds every plan of the scenario, each where the scenario left it."""
    items = api.get("planning", "/plans", NATIONAL, params={"limit": 500})["items"]
    held = {item["plan_id"]: (item["semester"], item["status"], item["outcome"]) for item in items}
    assert held == {
        p.plan_id: (p.semester, final_status(p, scenario), outcome(p, scenario))
        for p in scenario.plans
    }
    levels = Counter(a.level for p in scenario.plans for a in p.approvals)
    revised = scenario.revised
    assert [a.level for a in revised.approvals] == ["school", "municipality", "national"] * 2
    assert levels["national"] == sum(1 for p in scenario.plans if p.fully_approved) + 1
    assert sum(1 for p in scenario.pupils if p.personal_code.startswith("32")) > 0
    assert all(p.measures for p in scenario.plans)


def the_transferred_pupil_is_at_the_new_school(api: Api, scenario: Scenario) -> None:
    """Enrolled again at the new school under the same id, with only the sign recorded there;
    out of the old school's sight, which keeps its closed plan."""
    move = scenario.transfer
    path = f"/pupils/{move.pupil.pupil_id}"
    there = api.get("identification", path, teacher(move.to_school_id))
    assert (there["school_id"], there["status"]) == (move.to_school_id, "enrolled")
    assert [s["code"] for s in there["risk_signs"]] == [move.sign.code]
    assert api.get("identification", path, teacher(move.pupil.school_id), accept=(404,))
    at_risk = api.get("planning", "/pupils-at-risk", teacher(move.to_school_id))["items"]
    listed = {item["pupil_id"]: item["risk_codes"] for item in at_risk}
    assert listed[move.pupil.pupil_id] == [move.sign.code]
    old_plan = api.get("planning", f"/plans/{move.plan.plan_id}", teacher(move.pupil.school_id))
    assert (old_plan["school_id"], old_plan["outcome"]) == (move.pupil.school_id, "transferred")


def a_second_seed_creates_nothing(api: Api, scenario: Scenario, log: io.StringIO) -> None:
    before = dict(api.counts)
    Seeder(api, scenario, Progress(log, live=False)).run()
    assert api.counts["written"] == before["written"]
    assert api.counts["replayed"] > before.get("replayed", 0)


def reporting_caught_up(api: Api, scenario: Scenario, entered: Mapping[str, date]) -> None:
    """Reporting learns everything from events, a little after the seed's last answer: wait
    (bounded) until the school year's report shows all that was sent. If it never does, the
    assertions that follow show what differs."""
    want = expected(scenario, (SEMESTER, NEXT_SEMESTER), entered)
    params = {"school_year": SCHOOL_YEAR}

    def matches() -> bool:
        got = api.get("reporting", "/reports/esf", AUDITOR, params=params)
        return shown(got["indicators"], want) == want

    with contextlib.suppress(SeedError):
        api.wait_for("the school year's report to show what was sent", matches)


def report(api: Api, plans: int, **params: str) -> dict[str, Any]:
    return settled_report(api, params, plans)


def semester_report_matches(api: Api, scenario: Scenario, entered: Mapping[str, date]) -> None:
    plans = len(scenario.plans_in(SEMESTER))
    got = report(api, plans, semester=SEMESTER)
    want = expected(scenario, (SEMESTER,), entered)
    assert shown(got["indicators"], want) == want
    # The figures behind the demo's story, spelled out.
    assert want["result"]["left"] == 1
    assert want["plans_by_status"]["draft"] == want["plans_by_status"]["in_approval"] == 1
    assert want["material_eur"]["delivered"]["total"] > 0
    assert want["pupils_supported"]["age_25_or_over"] >= 1  # the adult learner at least
    assert want["pupils_supported"]["below_25"] >= 1


def explanations_name_the_pupils(api: Api, scenario: Scenario, entered: Mapping[str, date]) -> None:
    def explain(indicator: str) -> dict[str, Any]:
        params = {"semester": SEMESTER, "explain": indicator}
        answer: dict[str, Any] = api.get("reporting", "/reports/esf", AUDITOR, params=params)
        return answer["explain"]

    supported = [p for p in scenario.plans_in(SEMESTER) if p.fully_approved]
    behind = explain("pupils_supported")
    assert set(behind["pupil_ids"]) == {p.pupil.pupil_id for p in supported}
    assert set(behind["plan_ids"]) == {p.plan_id for p in supported}
    girls = explain("pupils_supported.by_gender.F")
    assert set(girls["pupil_ids"]) == {p.pupil.pupil_id for p in supported if p.pupil.gender == "F"}
    assert explain("result.left")["pupil_ids"] == [scenario.departure.pupil.pupil_id]
    young = {p.pupil.pupil_id for p in supported if p.pupil.age_on(entered[p.key]) < 25}
    assert set(explain("pupils_supported.below_25")["pupil_ids"]) == young
    older = set(explain("pupils_supported.age_25_or_over")["pupil_ids"])
    assert older == {p.pupil.pupil_id for p in supported} - young


def school_year_and_scopes_agree(api: Api, scenario: Scenario, entered: Mapping[str, date]) -> None:
    year = (SEMESTER, NEXT_SEMESTER)
    plans = len(scenario.plans)
    whole = report(api, plans, school_year=SCHOOL_YEAR)
    want = expected(scenario, year, entered)
    assert shown(whole["indicators"], want) == want
    daugavpils = report(api, plans, school_year=SCHOOL_YEAR, municipality="daugavpils")
    assert daugavpils["indicators"] == whole["indicators"]

    school = scenario.continued.pupil.school_id  # a school with plans in both semesters
    here = [p for p in scenario.plans if p.pupil.school_id == school]
    one = report(api, len(here), school_year=SCHOOL_YEAR, school_id=school)
    want = expected(scenario, year, entered, {school})
    assert shown(one["indicators"], want) == want
    by_school = whole["indicators"]["pupils_supported"]["by_school"]
    assert one["indicators"]["pupils_supported"]["total"] == by_school[school]
    # No pupil was supported at two schools: the schools' figures add up to the total.
    assert sum(by_school.values()) == whole["indicators"]["pupils_supported"]["total"]
