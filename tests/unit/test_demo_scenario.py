"""The Daugavpils scenario before anything is sent: the same draw every time, people that pass
identification's own checks, every path of the demo taken even at the smallest size."""

from __future__ import annotations

import re
from collections import Counter
from datetime import date
from decimal import Decimal

import pytest

from demo.build import build
from demo.scenario import MATERIAL_KINDS, NEXT_SEMESTER, SEMESTER, Scenario
from demo.show import format_table
from services.identification.catalogue import RISK_FACTORS
from services.identification.personal_code import check_personal_code
from shared.schools import reference_schools

SCHOOLS = [
    {
        "school_id": s.school_id,
        "name": s.name,
        "municipality": s.municipality,
        "kind": s.kind,
        "owner": s.owner,
        "grade_from": s.grades[0],
        "grade_to": s.grades[1],
    }
    for s in reference_schools().values()
]
CATALOGUE = [{"code": f.code, "group": f.group.group} for f in RISK_FACTORS]


def scenario(pupils: int = 150, seed: int = 2019) -> Scenario:
    return build(SCHOOLS, CATALOGUE, pupils=pupils, seed=seed)


def test_a_seed_gives_the_same_people_every_time_and_another_seed_others() -> None:
    first, again, other = scenario(), scenario(), scenario(seed=7)
    assert [p.registration() for p in first.pupils] == [p.registration() for p in again.pupils]
    assert [p.personal_code for p in first.pupils] != [p.personal_code for p in other.pupils]


def test_pupils_pass_identifications_checks_and_their_ages_fit_their_grades() -> None:
    demo = scenario()
    codes = [p.personal_code for p in demo.pupils]
    assert len(set(codes)) == len(codes) == 150
    for pupil in demo.pupils:
        assert check_personal_code(pupil.personal_code, pupil.birth_date) == pupil.personal_code
    # Grade 1 in the year a child turns 7, a year later after repeating one; and one adult
    # learner, supported, who signs the plan's consent herself or himself.
    adults = [p for p in demo.pupils if p.age_on(date(2019, 9, 1)) >= 25]
    assert len(adults) == 1
    for pupil in demo.pupils:
        assert pupil in adults or pupil.age_on(date(2019, 9, 1)) - pupil.grade in (5, 6, 7)
    adult_plans = [p for p in demo.plans if p.pupil is adults[0]]
    assert any(p.fully_approved for p in adult_plans)
    assert {p.consent_given_by for p in adult_plans} == {"pupil"}
    new_format = sum(1 for c in codes if c.startswith("32"))
    assert 0 < new_format < len(codes)
    letters = "".join(p.given_name + p.family_name for p in demo.pupils)
    assert set("āčēģīķļņšūž") & set(letters.lower())
    assert {p.school_id for p in demo.pupils} == {s["school_id"] for s in SCHOOLS}


def test_about_a_fifth_is_at_risk_and_only_pupils_from_grade_5_get_plans() -> None:
    demo = scenario()
    assert len(demo.at_risk) == 30
    planned = {plan.pupil.key for plan in demo.plans_in(SEMESTER)}
    young = [p for p in demo.at_risk if p.grade < 5]
    assert young and not planned & {p.key for p in young}
    assert planned == {p.key for p in demo.at_risk if p.grade >= 5}


@pytest.mark.parametrize("pupils", [40, 60, 150])
def test_every_path_of_the_demo_is_taken_at_every_size(pupils: int) -> None:
    demo = scenario(pupils)
    plans = demo.plans_in(SEMESTER)
    assert Counter(p.stops_at for p in plans)["draft"] == 1
    assert Counter(p.stops_at for p in plans)["municipality"] == 1
    assert {s.group for p in demo.at_risk for s in p.signs} == {
        "learning",
        "economic",
        "family",
        "social_health",
    }
    revised = demo.revised
    assert revised.revision is not None and revised.fully_approved
    assert any(c.after_revision for c in revised.consultations)
    assert demo.departure.plan.fully_approved and demo.departure.plan.evaluation is None
    assert all(c.day < demo.departure.on for c in demo.departure.plan.consultations)
    outcomes = Counter(p.evaluation.outcome for p in plans if p.evaluation)
    assert outcomes["transferred"] == 1 and outcomes["continues_learning"] >= 1
    # The transferred pupil moves after the semester, to a school that teaches the grade
    # (and not the one whose year the end-to-end test checks), and is at risk there too.
    move = demo.transfer
    assert move.plan.evaluation is not None and move.plan.evaluation.outcome == "transferred"
    assert move.plan.evaluation.close and move.on > date(2019, 12, 31)
    grades = reference_schools()[move.to_school_id].grades
    assert grades[0] <= move.pupil.grade <= grades[1]
    assert move.to_school_id not in (move.pupil.school_id, demo.continued.pupil.school_id)
    assert move.sign.code in {s.code for s in move.pupil.signs} and move.sign.observed_on > move.on
    successor = demo.continued.next
    assert successor is not None and successor.semester == NEXT_SEMESTER
    assert successor.measures and successor.fully_approved
    sessions = [c for p in plans for c in p.consultations]
    assert sum(1 for c in sessions if c.confirmed_on is None) == 1
    assert any(c.remote for c in sessions)
    owed = [
        m
        for p in plans
        if p.evaluation
        for m in p.measures
        if sum(d.amount_eur for d in p.deliveries if d.measure is m) < (m.amount_eur or 0)
    ]
    assert owed, "some material support is still owed at the evaluation"


def test_each_schools_budget_covers_what_its_plans_buy() -> None:
    demo = scenario()
    for (school_id, semester), budget in demo.budgets.items():
        bought = sum(
            (
                m.amount_eur or Decimal(0)
                for p in demo.plans
                if (p.pupil.school_id, p.semester) == (school_id, semester)
                for m in p.measures
                if m.kind in MATERIAL_KINDS
            ),
            Decimal(0),
        )
        assert budget >= bought and budget > 0


def test_a_scenario_too_small_for_every_path_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 40"):
        scenario(39)


def test_the_report_table_shows_each_figure_and_leaves_out_parts_that_are_zero() -> None:
    table = format_table(
        {
            "pupils_supported": {
                "total": 25,
                "by_gender": {"F": 11, "M": 14},
                "by_school": {"daugavpils-10-vsk": 3, "daugavpils-11-psk": 0},
            },
            "material_eur": {
                "delivered": {"meals": "90.00", "personal_items": "0.00", "total": "90.00"}
            },
            "result": {"continued": 24, "left": 1, "share": 0.96},
        },
        {"daugavpils-10-vsk": "Daugavpils 10. vidusskola"},
    )
    rows = dict(re.findall(r"^ *(.+?) \.{2,} (.+)$", table, flags=re.MULTILINE))
    assert rows["pupils supported"] == "25"
    assert rows["by gender"] == "F: 11 · M: 14"
    assert rows["Daugavpils 10. vidusskola"] == "3"
    assert rows["meals"] == rows["delivered"] == "90.00"
    assert rows["share continuing"] == "96.0 %"
    assert "daugavpils-11-psk" not in table and "personal_items" not in table
