"""What reporting knows, as a pure function of the integration events it received.

Reporting keeps no aggregates of its own. Every integration event it receives goes into
its journal (``journal.py``) and, through ``project``, into read-model rows. The rules
here are the only place where an event changes a row: the service applies them to the
database one event at a time, a rebuild applies them to memory over the whole journal, so
both reach the same rows (the rebuild's digest shows it).

Rows, by table (money and hours in hundredths, exact integers):

- ``schools``: school_id -> municipality, kind, owner, grade_from, grade_to
  (``school_registered``; the shipped reference schools are known without an event);
- ``pupils``: pupil_id -> school_id, grade, gender, profile (``pupil_registered``, and
  ``pupil_re_enrolled`` when a pupil who had left is at a school again: the same pupil,
  now at that school with the grade given there; identification publishes no
  promotions). The profile is what the ESF breakdowns need: ``"F 2 7-9"`` = gender,
  ISCED level, grade band, from the grade and the kind of the pupil's school;
- ``signs``: (pupil_id, risk_group, code, observed_on) -> school_id, resolved_on: one row
  per time a risk sign was recorded, at the pupil's school then; ``resolved_on`` is the
  UTC date on which identification recorded the resolution (the event's occurred-at),
  or, for a sign still open when its pupil left school (``pupil_departed``:
  identification leaves the pupil's signs as they were), the day of the departure; empty
  while open;
- ``plans``: plan_id -> pupil_id, school_id, semester, status, supported,
  previous_plan_id, outcome, approved_on, close_cause. ``status`` follows planning's
  events exactly as planning's own aggregate does; ``supported`` is 1 once the plan was
  fully approved (``plan_fully_approved``) and stays 1 whatever happens later; ``outcome``
  is set by the evaluation or by the closing (a departure closes with the departure's
  outcome); ``close_cause`` is the closing's cause (``evaluated`` or ``pupil_departed``),
  empty until then; ``approved_on`` is the UTC date of the plan's first full approval,
  or the last day of the plan's semester if it was approved later (a plan approved after
  its semester, as when a school catches up or the demo replays 2019: the pupil took
  part then): the pupil's entry into the operation with this plan, the day ESF asks the
  pupil's age on;
- ``ages``: (pupil_id, on_date) -> band: identification's answer to reporting's age
  enquiry (``below_25``, ``25_or_over`` or ``unknown``), journalled by reporting itself
  as an ``age_band_answered`` entry of source ``reporting`` (see ``age_enquiry``);
- ``years``: (school_year, pupil_id) -> profile, and for each semester of the year the
  school, plan and outcome of the pupil's last *supported* plan then (fully approved and
  not deactivated), and the pupil's age band on the ``approved_on`` of the pupil's first
  supported plan then (empty until answered): one row per pupil, so distinct pupils are
  counted without sorting plans. Planning keeps one live plan per pupil and semester, but
  a pupil who left school and was re-enrolled may get a new plan in the same semester
  (at the new school) after the first was closed on the departure: the pupil's plans of
  a semester are taken in the order the pupil held them (see ``held_in_order``), the
  outcome that counts is the last one's, the age on entry the first one's. The profile
  is the pupil's when the row was first written with a known profile, and then kept
  (see ``_refresh_years``);
- ``plan_counts``: (semester, school_id, status) -> plans, continued (those with a
  previous plan): counters moved by every change of a plan's status;
- ``hours``: (plan_id, kind) -> school_id, semester, hours, cost: consultations logged
  on the plan, by provider kind, as planning priced them; ``hour_sums`` the same added
  up by (semester, school_id, kind);
- ``provisions``: provision_id -> plan_id, school_id, semester, kind, planned,
  committed, delivered, status (provisioning's provision events: ``planned`` as last
  requested or re-planned, ``committed`` reserved and not yet delivered, ``delivered``
  spent); ``material_sums`` the same added up by (semester, school_id, kind), counting
  as planned only what a cancelled provision delivered;
- ``budgets``: (school_id, semester) -> allocated, committed, spent (budget events).

Nothing personal reaches these rows: the events carry none (see shared/contracts).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from operator import add
from typing import Any, Protocol

from shared import vocabulary
from shared.semesters import Semester
from shared.vocabulary import AGE_BANDS, OUTCOMES

# -- vocabulary -------------------------------------------------------------------------

INACTIVE = vocabulary.INACTIVE
# The result indicator: who goes on learning (here or elsewhere, or finished) against who
# left education.
CONTINUED_OUTCOMES = tuple(o for o in OUTCOMES if o != vocabulary.LEFT_EDUCATION)
LEFT_OUTCOMES = (vocabulary.LEFT_EDUCATION,)
GENDERS = ("F", "M")
ISCED_LEVELS = ("1", "2", "3")
GRADE_BANDS = ("1-4", "5-6", "7-9", "10-12", "vocational")
UNKNOWN = "unknown"
VOCATIONAL = "vocational"
BUDGET_STATES = ("allocated", "committed", "spent")


def risk_group(code: str) -> str:
    """A sign's group is the first part of its code (``learning.absences`` -> learning)."""
    return code.split(".", 1)[0]


def isced_level(grade: int | None, school_kind: str | None) -> str:
    """ISCED 1 for grades 1-6, 2 for 7-9, 3 for 10-12 and every vocational course."""
    if grade is None:
        return UNKNOWN
    if school_kind == VOCATIONAL:
        return "3"
    return "1" if grade <= 6 else "2" if grade <= 9 else "3"


def grade_band(grade: int | None, school_kind: str | None) -> str:
    """The programme's grade bands: 1-4 (added in 2021/22), 5-6, 7-9, 10-12; vocational
    courses 1-4 form a band of their own."""
    if grade is None:
        return UNKNOWN
    if school_kind == VOCATIONAL:
        return VOCATIONAL
    return "1-4" if grade <= 4 else "5-6" if grade <= 6 else "7-9" if grade <= 9 else "10-12"


# ESF counts a participant's age on entry into the operation. Identification keeps birth
# dates sealed and publishes none (shared/contracts), so reporting asks it, over RPC, for
# the pupil's band on the day the pupil's plan was first fully approved, and journals
# the answer. Until an answer is journalled the pupil's age is not known: the report
# counts such pupils, and those identification could not answer for (erased), apart.
BELOW_25 = vocabulary.BELOW_25
AGE_UNKNOWN = vocabulary.AGE_UNKNOWN
# Reporting's own journal entries: answers to its age enquiries.
REPORTING = "reporting"
AGE_BAND_ANSWERED = "age_band_answered"


# -- money and hours ----------------------------------------------------------------------


def hundredths(text: str) -> int:
    """ "12.50" -> 1250, exactly (contracts carry money and hours with two decimals)."""
    whole, _, fraction = text.partition(".")
    value = abs(int(whole or "0")) * 100 + int((fraction + "00")[:2])
    return -value if whole.startswith("-") else value


def decimal_text(value: int) -> str:
    """1250 -> "12.50"."""
    sign = "-" if value < 0 else ""
    return f"{sign}{abs(value) // 100}.{abs(value) % 100:02d}"


def utc_date(timestamp: str) -> str:
    return datetime.fromisoformat(timestamp).astimezone(UTC).date().isoformat()


# -- the state the rules read and write -----------------------------------------------------

Key = tuple[Any, ...]
Row = list[Any]


class State(Protocol):
    """Rows by table and key: the database (one event at a time) or memory (a rebuild)."""

    def get(self, table: str, key: Key) -> Row | None: ...

    def put(self, table: str, key: Key, row: Row) -> None: ...

    def open_sign(self, pupil_id: str, group: str, code: str) -> str | None:
        """The observed_on of the pupil's unresolved sign of this code, if any."""

    def open_signs(self, pupil_id: str) -> list[tuple[Key, Row]]:
        """Every unresolved sign row of the pupil."""

    def plans_of(self, pupil_id: str) -> list[tuple[Key, Row]]:
        """Every plan row of the pupil."""

    def school_kind(self, school_id: str) -> str | None:
        """general or vocational: as registered, else the reference data's, else None."""


Rule = Callable[[State, str, Mapping[str, Any], str], None]


def profile(gender: str, grade: int | None, kind: str | None) -> str:
    return f"{gender} {isced_level(grade, kind)} {grade_band(grade, kind)}"


UNKNOWN_PROFILE = f"{UNKNOWN} {UNKNOWN} {UNKNOWN}"


def school_year_of(semester: str) -> str:
    return semester[:9]


def _count(s: State, table: str, key: Key, deltas: list[int]) -> None:
    row = s.get(table, key)
    s.put(table, key, deltas if row is None else list(map(add, row, deltas)))


# -- identification ------------------------------------------------------------------------


def _school_registered(s: State, _: str, p: Mapping[str, Any], __: str) -> None:
    row = [p["municipality"], p["kind"], p["owner"], p["grade_from"], p["grade_to"]]
    s.put("schools", (p["school_id"],), row)


def _pupil_registered(s: State, pupil_id: str, p: Mapping[str, Any], _: str) -> None:
    school, grade, gender = p["school_id"], p["grade"], p["gender"]
    s.put(
        "pupils",
        (pupil_id,),
        [school, grade, gender, profile(gender, grade, s.school_kind(school))],
    )
    # Plans may have arrived first (the sources are not ordered among themselves): their
    # years learn the profile now.
    _refresh_years(s, pupil_id, {school_year_of(row[2]) for _, row in s.plans_of(pupil_id)})


def _pupil_re_enrolled(s: State, pupil_id: str, p: Mapping[str, Any], occurred_at: str) -> None:
    """A pupil who had left is at a school again, under the same id: one participant for
    ESF, not a new one. The row takes the school and grade given there, so the signs
    recorded from now on are placed at the new school (the departure ended the earlier
    ones). The ``years`` already written keep their profile (see ``_refresh_years``)."""
    _pupil_registered(s, pupil_id, p, occurred_at)


def _risk_sign_recorded(s: State, pupil_id: str, p: Mapping[str, Any], _: str) -> None:
    pupil = s.get("pupils", (pupil_id,))
    code = p["code"]
    key = (pupil_id, risk_group(code), code, p["observed_on"])
    s.put("signs", key, [pupil[0] if pupil else None, None])


def _risk_sign_resolved(s: State, pupil_id: str, p: Mapping[str, Any], occurred_at: str) -> None:
    code = p["code"]
    group = risk_group(code)
    observed_on = s.open_sign(pupil_id, group, code)
    if observed_on is None:
        return
    key = (pupil_id, group, code, observed_on)
    row = s.get("signs", key)
    if row is not None:
        s.put("signs", key, [row[0], utc_date(occurred_at)])


def _pupil_departed(s: State, pupil_id: str, p: Mapping[str, Any], _: str) -> None:
    """A pupil who left school is at risk up to the departure, not after: identification
    resolves none of the pupil's signs, so each still open ends on the day of departure.
    (A resolution identification records later finds none open and changes nothing.)
    A departure recorded late and dated before a sign's observation ends that sign on the
    day it was observed: ended before it began, it would be counted in no period at all."""
    for key, row in s.open_signs(pupil_id):
        s.put("signs", key, [row[0], max(p["on"], key[3])])


# -- planning ------------------------------------------------------------------------------

(
    _PUPIL,
    _SCHOOL,
    _SEMESTER,
    _STATUS,
    _SUPPORTED,
    _PREVIOUS,
    _OUTCOME,
    _APPROVED_ON,
    _CLOSE_CAUSE,
) = range(9)
# planning's ``plan_closed`` cause when the pupil left school (else ``evaluated``)
CLOSED_ON_DEPARTURE = "pupil_departed"


def is_supported(plan: Row) -> bool:
    """Fully approved at some time, and not deactivated (the programme's "deleted")."""
    return bool(plan[_SUPPORTED]) and plan[_STATUS] != INACTIVE


def held_in_order(plans: list[tuple[Key, Row]], semester: str) -> list[tuple[str, Row]]:
    """The pupil's supported plans of the semester, in the order the pupil held them.

    Usually one. A second comes only after a departure: planning allows a new plan in the
    same semester (at the school the pupil was re-enrolled at) once the earlier one was
    closed on the departure. So a plan closed on a departure comes before one that was not
    (the pupil's final plan, whose outcome the result indicator counts); plans alike in
    that by their first full approval; the plan id (a uuid) only settles a tie (two
    departures, both plans approved on one day or after the semester) the same way in
    every fold."""
    held = [(k[0], r) for k, r in plans if r[_SEMESTER] == semester and is_supported(r)]
    return sorted(
        held,
        key=lambda p: (p[1][_CLOSE_CAUSE] != CLOSED_ON_DEPARTURE, p[1][_APPROVED_ON] or "", p[0]),
    )


def _refresh_years(s: State, pupil_id: str, school_years: set[str]) -> None:
    """Recompute the pupil's ``years`` rows from the pupil's plans.

    A row keeps the profile it was first written with, once known. ESF counts a
    participant's characteristics (education level) on entry, and a year's figures must
    not change after the fact because the pupil was later re-enrolled with another grade
    or at a school of another kind: the re-enrolment changes the pupil's row, and only
    years first written after it take the new profile (a row refreshed for any reason,
    an age answer, a plan evaluated, would otherwise take the current one). A row written
    before the pupil's registration arrived learns the profile when it does."""
    plans = s.plans_of(pupil_id)
    pupil = s.get("pupils", (pupil_id,))
    current = pupil[3] if pupil else UNKNOWN_PROFILE
    for year in sorted(school_years):
        key = (year, pupil_id)
        old = s.get("years", key)
        row: Row = [old[0] if old is not None and old[0] != UNKNOWN_PROFILE else current]
        bands: Row = []
        for term in ("1", "2"):
            held = held_in_order(plans, f"{year}-{term}")
            plan_id, plan = held[-1] if held else (None, None)
            row += [plan[_SCHOOL], plan_id, plan[_OUTCOME]] if plan else [None, None, None]
            # Entry: the first plan, also when the pupil moved school within the semester.
            bands.append(_band_on_entry(s, pupil_id, held[0][1] if held else None))
        row += bands
        if old != row and (old is not None or row[1] is not None or row[4] is not None):
            s.put("years", key, row)


def _band_on_entry(s: State, pupil_id: str, plan: Row | None) -> str | None:
    """The pupil's age band on the day the plan was first fully approved, once answered."""
    if plan is None or plan[_APPROVED_ON] is None:
        return None
    answer = s.get("ages", (pupil_id, plan[_APPROVED_ON]))
    return None if answer is None else str(answer[0])


def age_enquiry(s: State, plan_id: str) -> tuple[str, str] | None:
    """The (pupil id, day) whose age band the plan's support needs and nobody answered yet."""
    plan = s.get("plans", (plan_id,))
    if plan is None or plan[_APPROVED_ON] is None:
        return None
    key = (plan[_PUPIL], plan[_APPROVED_ON])
    return None if s.get("ages", key) is not None else key


def _plan_drafted(s: State, plan_id: str, p: Mapping[str, Any], _: str) -> None:
    row = [
        p["pupil_id"],
        p["school_id"],
        p["semester"],
        "draft",
        0,
        p["previous_plan_id"],
        None,
        None,
        None,
    ]
    s.put("plans", (plan_id,), row)
    _count_plan(s, row, 1)


def _count_plan(s: State, plan: Row, sign: int) -> None:
    continued = 1 if plan[_PREVIOUS] is not None else 0
    key = (plan[_SEMESTER], plan[_SCHOOL], plan[_STATUS])
    _count(s, "plan_counts", key, [sign, sign * continued])


def _plan_change(change: Callable[[Row, Mapping[str, Any]], None]) -> Rule:
    def rule(s: State, plan_id: str, p: Mapping[str, Any], _: str) -> None:
        old = s.get("plans", (plan_id,))
        if old is None:
            return
        new = list(old)
        change(new, p)
        s.put("plans", (plan_id,), new)
        if new[_STATUS] != old[_STATUS]:
            _count_plan(s, old, -1)
            _count_plan(s, new, 1)
        # What ``years`` reads of a plan, and the order ``held_in_order`` puts it in.
        if _held_as(new) != _held_as(old):
            _refresh_years(s, new[_PUPIL], {school_year_of(new[_SEMESTER])})

    return rule


def _held_as(plan: Row) -> tuple[bool, str | None, str | None]:
    return is_supported(plan), plan[_OUTCOME], plan[_CLOSE_CAUSE]


def _status(status: str) -> Rule:
    def change(row: Row, _: Mapping[str, Any]) -> None:
        row[_STATUS] = status

    return _plan_change(change)


def _status_of_payload(row: Row, p: Mapping[str, Any]) -> None:
    row[_STATUS] = p["status"]


def _fully_approved(row: Row, p: Mapping[str, Any]) -> None:
    row[_STATUS] = p["status"]
    row[_SUPPORTED] = 1


_approve = _plan_change(_fully_approved)


def _plan_fully_approved(s: State, plan_id: str, p: Mapping[str, Any], occurred_at: str) -> None:
    """Supported from now on; the first full approval is the pupil's entry with this plan."""
    plan = s.get("plans", (plan_id,))
    if plan is not None and plan[_APPROVED_ON] is None:
        last_day = Semester.parse(plan[_SEMESTER]).ends_on.isoformat()
        entry = min(utc_date(occurred_at), last_day)
        s.put("plans", (plan_id,), [*plan[:_APPROVED_ON], entry, *plan[_APPROVED_ON + 1 :]])
    _approve(s, plan_id, p, occurred_at)


def _started(row: Row, _: Mapping[str, Any]) -> None:
    # As planning's Plan: an approved plan is in progress from its first delivered support;
    # a suspended one learns its status again when it is resumed.
    if row[_STATUS] == "approved":
        row[_STATUS] = "in_progress"


def _ended(status: str) -> Callable[[Row, Mapping[str, Any]], None]:
    def change(row: Row, p: Mapping[str, Any]) -> None:
        row[_STATUS] = status
        row[_OUTCOME] = p["outcome"]

    return change


def _closed(row: Row, p: Mapping[str, Any]) -> None:
    """As ``_ended``, and why: a plan closed on a departure may have a successor in its
    semester (``held_in_order``)."""
    row[_STATUS] = "closed"
    row[_OUTCOME] = p["outcome"]
    row[_CLOSE_CAUSE] = p["cause"]


def _consultation_logged(s: State, plan_id: str, p: Mapping[str, Any], _: str) -> None:
    plan = s.get("plans", (plan_id,))
    if plan is None:
        return
    hours, cost = hundredths(p["hours"]), hundredths(p["cost_eur"])
    key = (plan_id, p["kind"])
    row = s.get("hours", key) or [plan[_SCHOOL], plan[_SEMESTER], 0, 0]
    s.put("hours", key, [row[0], row[1], row[2] + hours, row[3] + cost])
    _count(s, "hour_sums", (plan[_SEMESTER], plan[_SCHOOL], p["kind"]), [hours, cost])


# -- reporting's own entries ------------------------------------------------------------------


def _age_band_answered(s: State, pupil_id: str, p: Mapping[str, Any], _: str) -> None:
    band = p["band"] if p["band"] in AGE_BANDS else AGE_UNKNOWN
    s.put("ages", (pupil_id, p["on"]), [band])
    _refresh_years(s, pupil_id, {school_year_of(row[_SEMESTER]) for _, row in s.plans_of(pupil_id)})


# -- provisioning ---------------------------------------------------------------------------

_PLAN, _PSCHOOL, _PSEMESTER, _KIND, _PLANNED, _COMMITTED, _DELIVERED, _PSTATUS = range(8)


def _material(s: State, row: Row, sign: int) -> None:
    """A provision's part of the sums; a cancelled one counts as planned what it delivered."""
    planned = row[_DELIVERED] if row[_PSTATUS] == "cancelled" else row[_PLANNED]
    key = (row[_PSEMESTER], row[_PSCHOOL], row[_KIND])
    _count(
        s, "material_sums", key, [sign * planned, sign * row[_COMMITTED], sign * row[_DELIVERED]]
    )


def _provision_requested(s: State, _: str, p: Mapping[str, Any], __: str) -> None:
    row = [
        p["plan_id"],
        p["school_id"],
        p["semester"],
        p["kind"],
        hundredths(p["planned_eur"]),
        0,
        0,
        p["status"],
    ]
    s.put("provisions", (p["provision_id"],), row)
    _material(s, row, 1)


def _provision_change(change: Callable[[Row, Mapping[str, Any]], None] | None = None) -> Rule:
    def rule(s: State, _: str, p: Mapping[str, Any], __: str) -> None:
        key = (p["provision_id"],)
        old = s.get("provisions", key)
        if old is None:
            return
        new = list(old)
        if change is not None:
            change(new, p)
        new[_PSTATUS] = p["status"]
        s.put("provisions", key, new)
        _material(s, old, -1)
        _material(s, new, 1)

    return rule


def _committed(row: Row, p: Mapping[str, Any]) -> None:
    row[_COMMITTED] += hundredths(p["amount_eur"])


def _released(row: Row, p: Mapping[str, Any]) -> None:
    row[_COMMITTED] -= hundredths(p["amount_eur"])


def _delivered(row: Row, p: Mapping[str, Any]) -> None:
    amount = hundredths(p["amount_eur"])
    row[_COMMITTED] -= amount
    row[_DELIVERED] += amount


def _replanned(row: Row, p: Mapping[str, Any]) -> None:
    row[_KIND] = p["kind"]
    row[_PLANNED] = hundredths(p["planned_eur"])


def _budget_change(change: Callable[[Row, int], None] | None) -> Rule:
    def rule(s: State, _: str, p: Mapping[str, Any], __: str) -> None:
        key = (p["school_id"], p["semester"])
        row = list(s.get("budgets", key) or [0, 0, 0])
        if change is not None:
            change(row, hundredths(p["amount_eur"]))
        s.put("budgets", key, row)

    return rule


def _budget_set(row: Row, amount: int) -> None:
    row[0] = amount


def _budget_committed(row: Row, amount: int) -> None:
    row[1] += amount


def _budget_released(row: Row, amount: int) -> None:
    row[1] -= amount


def _budget_spent(row: Row, amount: int) -> None:
    row[1] -= amount
    row[2] += amount


# -- the rules, by source and event type ----------------------------------------------------

RULES: dict[str, dict[str, Rule]] = {
    "identification": {
        "school_registered": _school_registered,
        "pupil_registered": _pupil_registered,
        "risk_sign_recorded": _risk_sign_recorded,
        "risk_sign_resolved": _risk_sign_resolved,
        "pupil_departed": _pupil_departed,
        "pupil_re_enrolled": _pupil_re_enrolled,
    },
    "planning": {
        "plan_drafted": _plan_drafted,
        "plan_submitted": _status("in_approval"),
        "plan_fully_approved": _plan_fully_approved,
        "plan_returned": _plan_change(_status_of_payload),
        "plan_revision_started": _status("under_revision"),
        "plan_suspended": _status("suspended"),
        "plan_resumed": _plan_change(_status_of_payload),
        "plan_deactivated": _status(INACTIVE),
        "plan_started": _plan_change(_started),
        "plan_evaluated": _plan_change(_ended("evaluated")),
        "plan_closed": _plan_change(_closed),
        "consultation_logged": _consultation_logged,
    },
    "provisioning": {
        "provision_requested": _provision_requested,
        "provision_committed": _provision_change(_committed),
        "provision_rejected": _provision_change(),
        "provision_replanned": _provision_change(_replanned),
        "provision_ordered": _provision_change(),
        "provision_delivered": _provision_change(_delivered),
        "provision_released": _provision_change(_released),
        "provision_cancelled": _provision_change(),
        "provision_put_on_hold": _provision_change(),
        "provision_resumed": _provision_change(),
        "budget_opened": _budget_change(None),
        "budget_set": _budget_change(_budget_set),
        "budget_committed": _budget_change(_budget_committed),
        "budget_released": _budget_change(_budget_released),
        "budget_spent": _budget_change(_budget_spent),
    },
    REPORTING: {AGE_BAND_ANSWERED: _age_band_answered},
}
"""Events not named here (a measure added, an approval at one level, a confirmation...)
are journalled and change no row: no indicator depends on them."""

_NO_RULES: dict[str, Rule] = {}
# The same, by (source, event type): what a rebuild looks up for every journal entry.
RULE_OF: dict[tuple[str, str], Rule] = {
    (source, event_type): rule
    for source, rules in RULES.items()
    for event_type, rule in rules.items()
}


def project(
    state: State,
    source: str,
    event_type: str,
    aggregate_id: str,
    payload: Mapping[str, Any],
    occurred_at: str,
) -> None:
    """Apply one received event to the rows (``payload`` as published, validated)."""
    rule = RULES.get(source, _NO_RULES).get(event_type)
    if rule is not None:
        rule(state, aggregate_id, payload, occurred_at)
