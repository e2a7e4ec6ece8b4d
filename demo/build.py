"""``build``: the Daugavpils scenario (demo.scenario) from the schools and risk catalogue the
system serves. Pure: the same schools, catalogue, size and seed give the same scenario.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Any

from demo.names import full_name, new_format_code, old_format_code
from demo.scenario import (
    CENT,
    MATERIAL_KINDS,
    NEXT_SEMESTER,
    SEMESTER,
    Consultation,
    Delivery,
    Departure,
    Evaluation,
    Measure,
    Plan,
    Pupil,
    Revision,
    Scenario,
    Sign,
    Transfer,
    eur,
)

TERM_STARTS = date(2019, 9, 2)
DEPARTURE_ON = date(2019, 11, 15)
# The transferred pupil moves when the second semester starts, and the new school sees a
# sign of its own a fortnight later.
TRANSFER_ON = date(2020, 1, 6)
NEW_SCHOOL_SIGN_ON = date(2020, 1, 20)
MONTH_ENDS = (date(2019, 9, 30), date(2019, 10, 31), date(2019, 11, 29), date(2019, 12, 20))
# Grades 1-4 of general education take part only from 2021/2022: at risk, but no plan.
FIRST_PLAN_GRADE = 5
# One pupil is an adult learner finishing secondary school: ESF's participants of 25 or over.
ADULT_BORN = date(1992, 5, 17)
# Paid month by month; the other material kinds are bought at once.
MONTHLY_KINDS = frozenset({"public_transport", "special_transport", "accommodation", "meals"})

# What a teacher plans against each sign: (kind, subject) options.
MEASURES_FOR: dict[str, tuple[tuple[str, str | None], ...]] = {
    "learning.difficulties": (("special_educator", None), ("subject_teacher", "matemātika")),
    "learning.gaps": (("subject_teacher", "latviešu valoda"), ("learning_materials", None)),
    "learning.low_achievement": (("subject_teacher", "fizika"), ("teacher_assistant", None)),
    "learning.absences": (("social_pedagogue", None),),
    "learning.behaviour": (("psychologist", None),),
    "learning.language_barrier": (("subject_teacher", "latviešu valoda"),),
    "learning.low_motivation": (("psychologist", None), ("social_pedagogue", None)),
    "learning.conflicts": (("psychologist", None),),
    "learning.repeated_year": (("subject_teacher", "matemātika"), ("learning_materials", None)),
    "economic.low_income": (("meals", None),),
    "economic.lacks_essentials": (("personal_items", None), ("learning_materials", None)),
    "economic.transport_costs": (("public_transport", None),),
    "economic.paid_work": (("social_pedagogue", None),),
    "family.lack_of_care": (("social_pedagogue", None), ("assistant", None)),
    "family.crisis": (("psychologist", None),),
    "family.caring_duties": (("social_pedagogue", None),),
    "family.early_parenthood": (("psychologist", None), ("meals", None)),
    "social_health.health": (("teacher_assistant", None), ("special_transport", None)),
    "social_health.addiction": (("psychologist", None),),
    "social_health.environment": (("social_pedagogue", None),),
    "social_health.special_needs": (("special_educator", None), ("occupational_therapist", None)),
}
MEASURE_FOR_GROUP = {
    "learning": ("subject_teacher", "matemātika"),
    "economic": ("meals", None),
    "family": ("social_pedagogue", None),
    "social_health": ("psychologist", None),
}
GROUP_WEIGHTS = {"learning": 55, "economic": 25, "family": 10, "social_health": 10}
PROVIDERS = {
    "subject_teacher": "priekšmeta skolotājs",
    "psychologist": "skolas psihologs",
    "social_pedagogue": "sociālais pedagogs",
    "special_educator": "speciālais pedagogs",
    "speech_therapist": "logopēds",
    "occupational_therapist": "ergoterapeits",
    "sign_language_interpreter": "zīmju valodas tulks",
    "teacher_assistant": "skolotāja palīgs",
    "assistant": "asistents",
}
EVIDENCE = {
    "learning.absences": "neattaisnoti kavētas 24 stundas septembrī un oktobrī",
    "learning.low_achievement": "nepietiekams vērtējums matemātikā un fizikā",
    "learning.repeated_year": "atkārtoti mācās klasē",
    "economic.low_income": "ģimenei piešķirts trūcīgas ģimenes statuss",
    "economic.transport_costs": "dzīvo 14 km no skolas",
}


def build(
    schools: Sequence[Mapping[str, Any]],
    risk_factors: Sequence[Mapping[str, Any]],
    *,
    pupils: int = 150,
    seed: int = 2019,
) -> Scenario:
    """The scenario for these schools (GET /schools) and this catalogue (GET /risk-factors)."""
    if pupils < 40:
        raise ValueError("the demo needs at least 40 pupils to take every path once")
    rng = random.Random(seed)
    school_list = sorted((dict(s) for s in schools), key=lambda s: s["school_id"])
    everyone = _pupils(rng, school_list, pupils)
    groups = {row["code"]: row["group"] for row in risk_factors}
    _mark_at_risk(rng, everyone, groups, round(pupils / 5))
    plans = [_plan(rng, i, pupil) for i, pupil in enumerate(_eligible(everyone, school_list))]
    _ensure_material_support(plans)
    departure = _give_roles(rng, plans)
    receipts = iter(range(1, 10_000))
    for plan in plans:
        if plan.fully_approved:
            plan.consultations = _consultations(rng, plan, departure)
            plan.deliveries = _deliveries(rng, plan, departure, receipts)
    _unconfirmed(plans)
    _one_month_unpaid(plans)
    successor = _successor(plans)
    plans.append(successor)
    _adult_learner(rng, plans)
    return Scenario(
        seed=seed,
        schools=school_list,
        pupils=everyone,
        plans=plans,
        budgets=_budgets(school_list, everyone, plans),
        departure=departure,
        transfer=_transfer(plans, school_list),
    )


def _transfer(plans: list[Plan], schools: list[dict[str, Any]]) -> Transfer:
    """The pupil of the plan that ended in a transfer, to the first other school that
    teaches the pupil's grade. Not to the school of the continued plan: the end-to-end test
    checks that school's figures for the year, and they stay the pupils it had."""
    plan = next(p for p in plans if p.evaluation and p.evaluation.outcome == "transferred")
    pupil = plan.pupil
    kept_as_it_was = {pupil.school_id, next(p for p in plans if p.next).pupil.school_id}
    to_school = next(
        s["school_id"]
        for s in schools
        if s["school_id"] not in kept_as_it_was and s["grade_from"] <= pupil.grade <= s["grade_to"]
    )
    first = pupil.signs[0]
    evidence = EVIDENCE.get(first.code, "jaunās skolas klases audzinātājas novērojums")
    sign = Sign(first.code, first.group, NEW_SCHOOL_SIGN_ON, evidence)
    return Transfer(pupil, plan, to_school, TRANSFER_ON, sign)


def _pupils(rng: random.Random, schools: list[dict[str, Any]], count: int) -> list[Pupil]:
    codes: set[str] = set()
    pupils = []
    for i in range(count):
        school = schools[i % len(schools)]
        grade = rng.randint(school["grade_from"], school["grade_to"])
        gender = rng.choice("FM")
        # Grade 1 starts in the year a child turns 7; a few repeat a year.
        born_in = TERM_STARTS.year - 6 - grade - (1 if rng.random() < 0.06 else 0)
        birth_date = date(born_in, 1, 1) + timedelta(days=rng.randrange(365))
        code = ""
        while not code or code in codes:
            new = rng.random() < 0.15  # codes issued since July 2017
            code = new_format_code(rng) if new else old_format_code(rng, birth_date)
        codes.add(code)
        given, family = full_name(rng, gender)
        pupils.append(
            Pupil(
                f"p{i + 1:03d}", school["school_id"], grade, gender, birth_date, given, family, code
            )
        )
    return pupils


def _mark_at_risk(
    rng: random.Random, pupils: list[Pupil], groups: dict[str, str], count: int
) -> None:
    """About a fifth at risk: a few young ones (no plan yet), the rest one per school first."""
    young = [p for p in pupils if p.grade < FIRST_PLAN_GRADE]
    older = [p for p in pupils if p.grade >= FIRST_PLAN_GRADE]
    chosen = rng.sample(young, min(len(young), max(1, count // 10)))
    by_school: dict[str, list[Pupil]] = {}
    for pupil in rng.sample(older, len(older)):
        by_school.setdefault(pupil.school_id, []).append(pupil)
    first_each = [group[0] for group in by_school.values()][: count - len(chosen)]
    chosen += first_each
    taken = {p.key for p in chosen}
    chosen += rng.sample([p for p in older if p.key not in taken], count - len(chosen))
    codes_by_group: dict[str, list[str]] = {}
    for code, group in sorted(groups.items()):
        codes_by_group.setdefault(group, []).append(code)
    # The first pupils each take one group, so every group shows up in a small scenario.
    forced = [g for g in GROUP_WEIGHTS if g in codes_by_group]
    for i, pupil in enumerate(sorted(chosen, key=lambda p: p.key)):
        wanted = [forced[i]] if i < len(forced) else []
        target = rng.choice((1, 1, 2, 2, 3))
        while len(wanted) < target:
            wanted.append(rng.choices(forced, [GROUP_WEIGHTS[g] for g in forced])[0])
        for group in wanted:
            code = rng.choice(codes_by_group[group])
            if code in {s.code for s in pupil.signs}:
                continue
            observed = TERM_STARTS + timedelta(days=rng.randrange(45))
            evidence = EVIDENCE.get(code, "klases audzinātājas novērojums")
            pupil.signs.append(Sign(code, group, observed, evidence))


def _eligible(pupils: list[Pupil], schools: list[dict[str, Any]]) -> list[Pupil]:
    vocational = {s["school_id"] for s in schools if s["kind"] == "vocational"}
    return [
        p
        for p in pupils
        if p.at_risk and (p.school_id in vocational or p.grade >= FIRST_PLAN_GRADE)
    ]


def _plan(rng: random.Random, index: int, pupil: Pupil) -> Plan:
    signed_on = max(s.observed_on for s in pupil.signs) + timedelta(days=rng.randint(2, 10))
    measures: list[Measure] = []
    for sign in pupil.signs:
        options = MEASURES_FOR.get(sign.code, (MEASURE_FOR_GROUP[sign.group],))
        kind, subject = rng.choice(options)
        if any((m.kind, m.risk_code) == (kind, sign.code) for m in measures):
            continue
        measures.append(_measure(rng, len(measures) + 1, kind, subject, sign.code))
    return Plan(
        key=f"plan{index + 1:03d}",
        pupil=pupil,
        semester=SEMESTER,
        consent_given_by="pupil" if pupil.age_on(signed_on) >= 18 else "parent",
        consent_signed_on=signed_on,
        measures=measures,
    )


def _measure(
    rng: random.Random, position: int, kind: str, subject: str | None, risk_code: str
) -> Measure:
    key = f"m{position}"
    if kind not in MATERIAL_KINDS:
        hours = Decimal(rng.choice((4, 6, 8, 10, 12)))
        why = f"individuālas nodarbības ({PROVIDERS[kind]}) pret risku {risk_code}"
        return Measure(key, kind, risk_code, why, hours=hours, subject=subject)
    if kind == "meals":
        amount = eur("1.42") * rng.randint(60, 80)
    elif kind in MONTHLY_KINDS:
        amount = eur(rng.choice(("15.00", "22.50", "45.00"))) * 4
    else:
        amount = eur(rng.choice(("25.00", "32.50", "40.00", "47.80", "64.90")))
    why = f"materiālais atbalsts ({kind}) semestrim"
    return Measure(key, kind, risk_code, why, amount_eur=amount.quantize(CENT))


def _ensure_material_support(plans: list[Plan]) -> None:
    """At least a few plans buy something, whatever the signs drawn."""
    for plan in plans[: max(0, 3 - sum(any(m.material for m in p.measures) for p in plans))]:
        code = plan.pupil.signs[0].code
        plan.measures.append(
            Measure(
                f"m{len(plan.measures) + 1}",
                "learning_materials",
                code,
                "mācību līdzekļi semestrim",
                amount_eur=eur("38.40"),
            )
        )


def _give_roles(rng: random.Random, plans: list[Plan]) -> Departure:
    """One plan left as a draft, one waiting for the municipality, one revised, one whose pupil
    leaves school, one continued into the next semester, one ending in a transfer; the rest
    approved, delivered and evaluated."""
    order = rng.sample(plans, len(plans))
    revised = next(p for p in order if any(not m.material for m in p.measures))
    others = [p for p in order if p is not revised]
    draft, pending, departed, continued, transferred = others[:5]
    draft.stops_at = "draft"
    pending.stops_at = "municipality"
    measure = next(m for m in revised.measures if not m.material)
    measure.hours = Decimal(4)
    revised.revision = Revision(measure, Decimal(8), "nodarbības divreiz nedēļā")
    for plan in plans:
        if plan.fully_approved and plan is not departed:
            plan.evaluation = _evaluation(rng, plan, continued=plan is continued)
    assert transferred.evaluation is not None
    transferred.evaluation.outcome = "transferred"
    return Departure(departed.pupil, departed, "dropped_out", DEPARTURE_ON)


def _evaluation(rng: random.Random, plan: Plan, *, continued: bool) -> Evaluation:
    outcomes = {
        code: rng.choices(("resolved", "reduced", "unchanged"), (4, 4, 2))[0]
        for code in plan.risk_codes
    }
    if continued:
        outcomes[plan.measures[0].risk_code] = "reduced"
    return Evaluation(outcomes, "continues_learning", close=not continued)


def _session_dates(rng: random.Random, count: int, last: date) -> list[date]:
    first = date(2019, 10, 1)
    days = [first + timedelta(days=rng.randrange((last - first).days)) for _ in range(count)]
    return sorted(d if d.weekday() < 5 else d - timedelta(days=d.weekday() - 4) for d in days)


def _consultations(rng: random.Random, plan: Plan, departure: Departure) -> list[Consultation]:
    last = departure.on - timedelta(days=3) if plan is departure.plan else date(2019, 12, 13)
    sessions = []
    for measure in plan.measures:
        if measure.material:
            continue
        if plan.revision is not None and plan.revision.measure is measure:
            sessions += _revised_sessions(measure)
            continue
        lengths: list[Decimal] = []
        for _ in range(rng.randint(1, 3)):
            hours = Decimal(rng.choice(("1", "1.5", "2")))
            assert measure.hours is not None
            if sum(lengths) + hours <= measure.hours:
                lengths.append(hours)
        for day, hours in zip(_session_dates(rng, len(lengths), last), lengths, strict=True):
            remote = rng.random() < 0.2
            confirmed = day + timedelta(days=1 if remote and rng.random() < 0.5 else 0)
            sessions.append(_session(measure, day, hours, remote, confirmed))
    return sessions


def _session(
    measure: Measure, day: date, hours: Decimal, remote: bool, confirmed: date | None
) -> Consultation:
    topic = f"nodarbība: {measure.subject or PROVIDERS[measure.kind]}"
    return Consultation(measure, day, hours, remote, confirmed, PROVIDERS[measure.kind], topic)


def _revised_sessions(measure: Measure) -> list[Consultation]:
    """The planned 4 hours are used up before the revision; the revision's 8 allow more."""
    before = [date(2019, 10, 7), date(2019, 10, 14)]
    after = [(date(2019, 11, 18), Decimal(2)), (date(2019, 12, 2), Decimal("1.5"))]
    sessions = [_session(measure, day, Decimal(2), False, day) for day in before]
    for day, hours in after:
        session = _session(measure, day, hours, False, day)
        session.after_revision = True
        sessions.append(session)
    return sessions


def _unconfirmed(plans: list[Plan]) -> None:
    """One remote consultation the pupil never confirms (it stays flagged)."""
    for plan in plans:
        if plan.revision is None and plan.evaluation is not None and plan.consultations:
            plan.consultations[-1].remote = True
            plan.consultations[-1].confirmed_on = None
            return


def _one_month_unpaid(plans: list[Plan]) -> None:
    """At least one monthly payment is still owed when the plan is evaluated."""
    for plan in plans:
        if plan.evaluation is None:
            continue
        for measure in (m for m in plan.measures if m.kind in MONTHLY_KINDS):
            paid = [d for d in plan.deliveries if d.measure is measure]
            if len(paid) < len(MONTH_ENDS):
                return
    for plan in plans:
        monthly = [d for d in plan.deliveries if d.measure.kind in MONTHLY_KINDS]
        if plan.evaluation is not None and monthly:
            plan.deliveries.remove(monthly[-1])
            return


def _deliveries(
    rng: random.Random, plan: Plan, departure: Departure, receipts: Any
) -> list[Delivery]:
    deliveries = []
    for measure in plan.measures:
        if not measure.material:
            continue
        assert measure.amount_eur is not None
        if measure.kind in MONTHLY_KINDS:
            months = 3 if rng.random() < 0.3 else 4  # a month still unpaid at the evaluation
            part = (measure.amount_eur / 4).quantize(CENT)
            amounts = [part] * 3 + [measure.amount_eur - 3 * part]
            days = list(MONTH_ENDS)
        else:
            months, amounts = 1, [measure.amount_eur]
            days = [TERM_STARTS + timedelta(days=rng.randint(10, 40))]
        for day, amount in list(zip(days, amounts, strict=True))[:months]:
            if plan is departure.plan and day >= departure.on:
                break
            receipt = f"DPV-2019-{next(receipts):04d}"
            deliveries.append(Delivery(measure, day, amount, receipt))
    return deliveries


def _adult_learner(rng: random.Random, plans: list[Plan]) -> None:
    """The supported pupil of the highest grade (the first by key) is an adult, so the ESF
    report's below_25 is not simply every pupil; adults sign their own plans' consent."""
    supported = [p for p in plans if p.fully_approved and p.semester == SEMESTER]
    pupil = min(supported, key=lambda p: (-p.pupil.grade, p.pupil.key)).pupil
    pupil.birth_date = ADULT_BORN
    pupil.personal_code = old_format_code(rng, ADULT_BORN)
    for plan in plans:
        if plan.pupil is pupil:
            plan.consent_given_by = "pupil"


def _successor(plans: list[Plan]) -> Plan:
    """The continued plan's draft for the next semester: the measures of its signs not
    resolved, as planning carries them over; approved at every level again."""
    plan = next(p for p in plans if p.evaluation is not None and not p.evaluation.close)
    assert plan.evaluation is not None
    unresolved = {c for c, r in plan.evaluation.risk_outcomes.items() if r != "resolved"}
    carried = [
        Measure(
            m.key,
            m.kind,
            m.risk_code,
            m.justification,
            plan.revision.hours if plan.revision and plan.revision.measure is m else m.hours,
            m.amount_eur,
            m.subject,
        )
        for m in plan.measures
        if m.risk_code in unresolved
    ]
    successor = Plan(
        key=f"{plan.key}-next",
        pupil=plan.pupil,
        semester=NEXT_SEMESTER,
        consent_given_by=plan.consent_given_by,
        consent_signed_on=plan.consent_signed_on,
        measures=carried,
        previous=plan,
    )
    plan.next = successor
    return successor


def _budgets(
    schools: list[dict[str, Any]], pupils: list[Pupil], plans: list[Plan]
) -> dict[tuple[str, str], Decimal]:
    """Each school's money per semester: by its pupil numbers, and enough for its plans."""
    budgets = {}
    for school in schools:
        school_id = school["school_id"]
        headcount = sum(1 for p in pupils if p.school_id == school_id)
        for semester in (SEMESTER, NEXT_SEMESTER):
            planned = sum(
                (
                    m.amount_eur or Decimal(0)
                    for p in plans
                    if p.pupil.school_id == school_id and p.semester == semester
                    for m in p.measures
                ),
                Decimal(0),
            )
            needed = (planned * Decimal("1.25") / 100).to_integral_value(ROUND_CEILING) * 100
            budgets[(school_id, semester)] = max(Decimal(30 * headcount), needed).quantize(CENT)
    return budgets
