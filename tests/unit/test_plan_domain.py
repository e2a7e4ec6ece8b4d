"""The plan's rules: eligibility, measures, the approval chain, consultations, money, the end."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.planning import domain
from services.planning.domain import (
    ApprovalLevelError,
    CannotContinueError,
    ConsultationAlreadyConfirmedError,
    IncompleteEvaluationError,
    InvalidDateError,
    InvalidMeasureError,
    InvalidSemesterError,
    MeasureInUseError,
    MoneySpentError,
    NotAConsultationMeasureError,
    NotPlanAuthorError,
    Plan,
    PlanHasNoMeasuresError,
    PlannedAmountBelowDeliveredError,
    PlannedHoursExceededError,
    PupilDepartedError,
    PupilNotAtRiskError,
    PupilNotEligibleError,
    PupilView,
    RiskSignNotActiveError,
    SchoolView,
    Semester,
    check_may_have_plan,
)
from shared.contracts import registry
from shared.errors import StaleVersionError, http_status
from tests.unit.test_plan_transitions import (
    CODES,
    MUNICIPAL,
    PUPIL,
    RATES,
    SCHOOL_ID,
    approve_all,
    consultation_measure,
    drafted,
    log,
    material_measure,
    reach,
)


def names(plan: Plan) -> list[str]:
    return [type(e).__qualname__.removeprefix("Plan.") for e in plan.collect_events()]


# -- semesters and eligibility --------------------------------------------------------------


def test_semesters_parse_order_and_follow_each_other() -> None:
    first = Semester.parse("2019-2020-1")
    assert str(first.next()) == "2019-2020-2"
    assert str(first.next().next()) == "2020-2021-1"
    assert first.starts_on == date(2019, 9, 1) and first.ends_on == date(2019, 12, 31)
    assert first.next().ends_on == date(2020, 6, 30)
    assert first < first.next()
    for bad in ("2019-2021-1", "2019-2020-3", "2019/2020/1", ""):
        with pytest.raises(InvalidSemesterError):
            Semester.parse(bad)


@pytest.mark.parametrize(
    ("kind", "grade", "semester", "eligible"),
    [
        ("general", 5, "2019-2020-1", True),
        ("general", 12, "2019-2020-2", True),
        ("general", 4, "2020-2021-2", False),
        ("general", 4, "2021-2022-1", True),
        ("general", 1, "2021-2022-1", True),
        ("vocational", 1, "2019-2020-1", True),
        ("vocational", 4, "2019-2020-1", True),
        ("vocational", 5, "2019-2020-1", False),
    ],
)
def test_eligibility_by_school_kind_grade_and_semester(
    kind: str, grade: int, semester: str, eligible: bool
) -> None:
    pupil = PupilView("p", SCHOOL_ID, grade, True, False, CODES)
    school = SchoolView(SCHOOL_ID, kind, "municipal")
    if eligible:
        check_may_have_plan(pupil, school, Semester.parse(semester))
    else:
        with pytest.raises(PupilNotEligibleError) as refused:
            check_may_have_plan(pupil, school, Semester.parse(semester))
        assert refused.value.details["grade"] == grade


def test_only_a_pupil_at_risk_who_is_still_at_school_gets_a_plan() -> None:
    semester = Semester(2019, 1)
    with pytest.raises(PupilNotAtRiskError):
        check_may_have_plan(PupilView("p", SCHOOL_ID, 7, False, False, ()), MUNICIPAL, semester)
    with pytest.raises(PupilDepartedError):
        check_may_have_plan(PupilView("p", SCHOOL_ID, 7, True, True, CODES), MUNICIPAL, semester)


def test_the_approval_chain_follows_the_school_owner() -> None:
    assert MUNICIPAL.levels == ["school", "municipality", "national"]
    assert SchoolView("tech", "vocational", "state").levels == ["school", "national"]


# -- drafting and measures -----------------------------------------------------------------


def test_a_drafted_plan_records_consent_author_and_risk_signs() -> None:
    plan = drafted()
    assert plan.status == "draft"
    assert (plan.consent_given_by, plan.consent_signed_on) == ("parent", date(2019, 9, 2))
    assert plan.author == "teacher"
    assert plan.risk_codes == list(CODES)
    assert names(plan) == ["Drafted", "MeasureAdded", "MeasureAdded"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"kind": "psychologist", "hours": None}, "hours"),
        ({"kind": "psychologist", "hours": Decimal(2), "amount_eur": Decimal(5)}, "amount_eur"),
        ({"kind": "subject_teacher", "hours": Decimal(2)}, "subject"),
        ({"kind": "psychologist", "hours": Decimal(2), "subject": "maths"}, "subject"),
        ({"kind": "meals", "amount_eur": None}, "amount_eur"),
        ({"kind": "meals", "amount_eur": Decimal(5), "hours": Decimal(1)}, "hours"),
        ({"kind": "meals", "amount_eur": Decimal(5), "justification": "   "}, "justification"),
    ],
)
def test_an_invalid_measure_is_refused_naming_the_field(fields: dict[str, Any], field: str) -> None:
    plan = drafted()
    plan.collect_events()
    arguments = {"risk_code": "learning.absences", "justification": "because", **fields}
    with pytest.raises(InvalidMeasureError) as refused:
        plan.add_measure(**arguments, active_risk_codes=CODES, by="teacher")
    assert field in refused.value.details["fields"]
    assert names(plan) == []


def test_a_measure_must_address_an_active_risk_sign() -> None:
    plan = drafted()
    with pytest.raises(RiskSignNotActiveError):
        plan.add_measure(
            kind="psychologist",
            risk_code="family.crisis",
            justification="talks",
            hours=Decimal(3),
            active_risk_codes=CODES,
            by="teacher",
        )
    assert len(plan.measures) == 2


def test_a_measure_can_be_changed_and_removed_in_a_draft() -> None:
    plan = drafted()
    meals = material_measure(plan)
    plan.change_measure(
        meals,
        kind="learning_materials",
        risk_code="economic.low_income",
        justification="books",
        amount_eur=Decimal("35.5"),
        active_risk_codes=CODES,
        by="teacher",
    )
    assert plan.measures[meals]["amount_eur"] == Decimal("35.50")
    assert plan.measures[meals]["kind"] == "learning_materials"
    plan.remove_measure(meals, by="teacher")
    assert meals not in plan.measures


def test_a_measure_with_delivered_support_cannot_be_removed_or_cut_below_it() -> None:
    plan = reach("in_progress")
    log(plan, hours="3")
    plan.revise(reason="fewer hours", by="teacher")
    measure = consultation_measure(plan)
    with pytest.raises(MeasureInUseError):
        plan.remove_measure(measure, by="teacher")
    change: dict[str, Any] = {
        "kind": "psychologist",
        "risk_code": "learning.absences",
        "justification": "fewer talks",
        "active_risk_codes": CODES,
        "by": "teacher",
    }
    with pytest.raises(PlannedHoursExceededError):
        plan.change_measure(measure, hours=Decimal(3), **change)  # 4 hours were delivered
    with pytest.raises(MeasureInUseError):
        plan.change_measure(measure, **{**change, "kind": "social_pedagogue"}, hours=Decimal(10))
    plan.change_measure(measure, hours=Decimal(4), **change)
    assert plan.measures[measure]["hours"] == Decimal(4)


def test_a_material_measure_cannot_be_cut_below_the_money_delivered_on_it() -> None:
    plan = reach("approved")
    meals = material_measure(plan)
    plan.record_material_delivery(
        delivery_id="d-1",
        measure_id=meals,
        amount_eur=Decimal("40"),
        delivered_on=date(2019, 10, 3),
        by="provisioning",
    )
    plan.revise(reason="cheaper lunches", by="teacher")
    plan.collect_events()
    change: dict[str, Any] = {
        "kind": "meals",
        "risk_code": "economic.low_income",
        "justification": "lunch only",
        "active_risk_codes": CODES,
        "by": "teacher",
    }
    with pytest.raises(PlannedAmountBelowDeliveredError) as refused:
        plan.change_measure(meals, amount_eur=Decimal("39.99"), **change)
    assert http_status(refused.value) == 422
    assert refused.value.details == {"delivered_eur": "40.00"}
    assert (plan.measures[meals]["amount_eur"], names(plan)) == (Decimal("120.00"), [])
    plan.change_measure(meals, amount_eur=Decimal(40), **change)  # what was delivered: enough
    assert plan.measures[meals]["amount_eur"] == Decimal("40.00")


# -- the approval chain ----------------------------------------------------------------------


def test_only_the_author_submits_and_only_with_measures() -> None:
    plan = drafted()
    with pytest.raises(NotPlanAuthorError):
        plan.submit(by="another-teacher")
    for measure in list(plan.measures):
        plan.remove_measure(measure, by="teacher")
    with pytest.raises(PlanHasNoMeasuresError):
        plan.submit(by="teacher")
    assert plan.status == "draft"


def test_every_level_approves_in_order_with_who_and_when() -> None:
    plan = drafted()
    plan.submit(by="teacher")
    assert plan.pending_level == "school"
    with pytest.raises(ApprovalLevelError) as refused:
        plan.approve(level="national", by="ikvd")
    assert refused.value.details == {
        "status": "in_approval",
        "pending_level": "school",
        "level": "national",
    }
    plan.approve(level="school", by="director")
    assert (plan.status, plan.pending_level) == ("in_approval", "municipality")
    plan.approve(level="municipality", by="coordinator")
    plan.approve(level="national", by="ikvd")
    assert (plan.status, plan.pending_level) == ("approved", None)
    assert [(a["level"], a["by"]) for a in plan.approvals] == [
        ("school", "director"),
        ("municipality", "coordinator"),
        ("national", "ikvd"),
    ]
    assert all(a["at"].tzinfo is not None for a in plan.approvals)
    events = plan.collect_events()
    fully = events[-1]
    assert type(fully).__qualname__ == "Plan.FullyApproved"
    assert fully.material_measures == [  # type: ignore[attr-defined]
        {"measure_id": material_measure(plan), "kind": "meals", "amount_eur": Decimal("120.00")}
    ]


def test_a_state_school_plan_skips_the_municipal_level() -> None:
    plan = Plan(
        pupil_id="p",
        school_id="riga-tech",
        semester="2019-2020-1",
        levels=SchoolView("riga-tech", "vocational", "state").levels,
        risk_codes=list(CODES),
        consent_given_by="pupil",
        consent_signed_on=date(2019, 9, 2),
        previous_plan_id=None,
        by="teacher",
    )
    plan.add_measure(
        kind="meals",
        risk_code="economic.low_income",
        justification="lunch",
        amount_eur=Decimal(50),
        active_risk_codes=CODES,
        by="teacher",
    )
    plan.submit(by="teacher")
    plan.approve(level="school", by="director")
    with pytest.raises(ApprovalLevelError):
        plan.approve(level="municipality", by="coordinator")
    plan.approve(level="national", by="ikvd")
    assert plan.status == "approved"


def test_any_level_returns_the_plan_to_its_author_with_a_reason() -> None:
    plan = drafted()
    plan.submit(by="teacher")
    plan.approve(level="school", by="director")
    plan.return_to_author(level="municipality", reason="justify the meals", by="coordinator")
    assert (plan.status, plan.pending_level, plan.approvals) == ("draft", None, [])
    assert plan.status_reason == "justify the meals"
    plan.submit(by="teacher")
    assert plan.pending_level == "school"  # every level again


def test_a_revision_goes_through_every_level_again_and_resumes_the_work() -> None:
    plan = reach("in_progress")
    plan.revise(reason="a new sign", by="teacher")
    assert (plan.status, plan.approvals) == ("under_revision", [])
    plan.submit(by="teacher")
    plan.approve(level="school", by="director")
    plan.return_to_author(level="municipality", reason="no", by="coordinator")
    assert plan.status == "under_revision"  # a returned revision stays a revision
    plan.submit(by="teacher")
    approve_all(plan)
    assert plan.status == "in_progress"  # it had started: it goes on
    assert len(plan.approvals) == 3


def test_suspend_and_resume_return_to_where_the_plan_was() -> None:
    plan = reach("approved")
    plan.suspend(reason="long illness", by="teacher")
    assert (plan.status, plan.status_reason) == ("suspended", "long illness")
    plan.resume(by="teacher")
    assert plan.status == "approved"


# -- consultations and money ------------------------------------------------------------------


def test_the_first_consultation_starts_the_plan_and_costs_hours_times_the_rate() -> None:
    plan = reach("approved")
    plan.collect_events()
    log(plan, hours="1.5")
    assert plan.status == "in_progress"
    assert plan.spent_eur == Decimal("30.00")  # 1.5 h x 20.00 EUR (psychologist)
    assert names(plan) == ["ConsultationLogged", "Started"]
    log(plan, hours="2")
    assert names(plan) == ["ConsultationLogged"]
    assert plan.spent_eur == Decimal("70.00")


def test_hours_beyond_the_planned_hours_are_rejected() -> None:
    plan = reach("approved")
    log(plan, hours="9.5")
    with pytest.raises(PlannedHoursExceededError) as refused:
        log(plan, hours="0.75")
    assert refused.value.details == {"planned_hours": "10.00", "logged_hours": "9.50"}
    log(plan, hours="0.5")
    assert plan.logged_hours(consultation_measure(plan)) == Decimal(10)


def test_a_consultation_is_on_a_consultation_measure_within_the_semester() -> None:
    plan = reach("approved")
    with pytest.raises(NotAConsultationMeasureError):
        plan.log_consultation(
            measure_id=material_measure(plan),
            date=date(2019, 10, 1),
            hours=Decimal(1),
            provider="x",
            topic="y",
            remote=False,
            rates=RATES,
            by="teacher",
        )
    for day in (date(2019, 8, 31), date(2020, 1, 1)):
        with pytest.raises(InvalidDateError):
            plan.log_consultation(
                measure_id=consultation_measure(plan),
                date=day,
                hours=Decimal(1),
                provider="x",
                topic="y",
                remote=False,
                rates=RATES,
                by="teacher",
            )
    assert plan.consultations == {}


def test_a_consultation_is_confirmed_once_not_before_it_happened() -> None:
    plan = reach("approved")
    consultation = log(plan)
    with pytest.raises(InvalidDateError):
        plan.confirm_consultation(consultation, confirmed_on=date(2019, 9, 30), by="teacher")
    plan.confirm_consultation(consultation, confirmed_on=date(2019, 10, 1), by="teacher")
    with pytest.raises(ConsultationAlreadyConfirmedError):
        plan.confirm_consultation(consultation, confirmed_on=date(2019, 10, 2), by="teacher")


def test_a_remote_consultation_unconfirmed_after_a_day_is_flagged() -> None:
    plan = reach("approved")
    remote = plan.consultations[log(plan, remote=True)]
    in_person = plan.consultations[log(plan, remote=False)]
    day = remote["date"]
    assert not plan.is_flagged(remote, on=day + timedelta(days=1))
    assert plan.is_flagged(remote, on=day + timedelta(days=2))
    assert not plan.is_flagged(in_person, on=day + timedelta(days=30))
    plan.confirm_consultation(remote["consultation_id"], confirmed_on=day + timedelta(1), by="t")
    assert not plan.is_flagged(plan.consultations[remote["consultation_id"]], on=date(2030, 1, 1))


def test_a_remote_consultation_confirmed_late_stays_flagged() -> None:
    plan = reach("approved")
    consultation = log(plan, remote=True)
    plan.confirm_consultation(consultation, confirmed_on=date(2019, 10, 5), by="teacher")
    assert plan.is_flagged(plan.consultations[consultation])


def test_material_deliveries_count_as_spent_once_and_start_the_plan() -> None:
    plan = reach("approved")
    meals = material_measure(plan)
    for _ in range(2):  # provisioning may report the same delivery twice
        plan.record_material_delivery(
            delivery_id="d-1",
            measure_id=meals,
            amount_eur=Decimal("40"),
            delivered_on=date(2019, 10, 3),
            by="provisioning",
        )
    assert (plan.status, plan.spent_eur, plan.delivered_eur(meals)) == (
        "in_progress",
        Decimal("40.00"),
        Decimal("40.00"),
    )


def test_a_plan_with_money_spent_cannot_be_deactivated() -> None:
    plan = reach("in_progress")
    plan.suspend(reason="hold", by="teacher")
    with pytest.raises(MoneySpentError) as refused:
        plan.deactivate(reason="mistake", by="teacher")
    assert refused.value.details == {"status": "suspended", "spent_eur": "20.00"}
    assert plan.status == "suspended"


def test_a_stale_version_is_refused() -> None:
    plan = drafted()
    with pytest.raises(StaleVersionError) as refused:
        plan.check_version(1)
    assert refused.value.details == {"expected_version": 1, "current_version": 3}


# -- evaluation, continuation, closing ----------------------------------------------------------


def test_an_evaluation_rates_every_risk_sign_the_plan_addresses() -> None:
    plan = reach("in_progress")
    with pytest.raises(IncompleteEvaluationError) as refused:
        plan.evaluate(
            risk_outcomes={"learning.absences": "resolved", "family.crisis": "reduced"},
            outcome="continues_learning",
            by="teacher",
        )
    assert refused.value.details == {
        "missing": ["economic.low_income"],
        "unknown": ["family.crisis"],
    }
    assert plan.status == "in_progress"


def test_a_plan_is_not_evaluated_before_its_semester_has_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = reach("approved")
    plan.collect_events()
    evaluation: dict[str, Any] = {
        "risk_outcomes": {"learning.absences": "reduced", "economic.low_income": "unchanged"},
        "outcome": "continues_learning",
        "by": "teacher",
    }
    monkeypatch.setattr(domain, "today", lambda: date(2019, 8, 31))
    with pytest.raises(InvalidDateError) as refused:
        plan.evaluate(**evaluation)
    assert http_status(refused.value) == 422
    assert refused.value.details == {"semester": "2019-2020-1", "starts_on": "2019-09-01"}
    assert (plan.status, plan.outcome, names(plan)) == ("approved", None, [])
    monkeypatch.setattr(domain, "today", lambda: date(2019, 9, 1))
    plan.evaluate(**evaluation)
    assert (plan.status, plan.outcome) == ("evaluated", "continues_learning")


def test_continuing_carries_the_unresolved_signs_and_their_measures() -> None:
    plan = reach("in_progress")
    plan.evaluate(
        risk_outcomes={"learning.absences": "resolved", "economic.low_income": "reduced"},
        outcome="continues_learning",
        by="teacher",
    )
    successor = plan.continued(Semester(2019, 2), pupil=PUPIL, school=MUNICIPAL, by="teacher")
    assert plan.next_plan_id == str(successor.id)
    assert (successor.previous_plan_id, successor.semester) == (str(plan.id), "2019-2020-2")
    assert successor.status == "draft"
    carried = list(successor.measures.values())
    assert [(m["kind"], m["amount_eur"]) for m in carried] == [("meals", Decimal("120.00"))]
    assert carried[0]["measure_id"] != material_measure(plan)
    assert (successor.consent_given_by, successor.consent_signed_on) == ("parent", date(2019, 9, 2))
    assert names(successor) == ["Drafted", "MeasureAdded"]
    with pytest.raises(CannotContinueError):
        plan.continued(Semester(2019, 2), pupil=PUPIL, school=MUNICIPAL, by="teacher")


def test_a_consent_dated_after_today_is_not_carried_into_the_next_semester(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = reach("evaluated")  # its consent was signed on 2019-09-02
    plan.collect_events()
    # As a plan recorded before consents were checked, with a consent not yet signed.
    monkeypatch.setattr(domain, "today", lambda: date(2019, 9, 1))
    with pytest.raises(InvalidDateError) as refused:
        plan.continued(Semester(2019, 2), pupil=PUPIL, school=MUNICIPAL, by="teacher")
    assert http_status(refused.value) == 422
    assert refused.value.details == {"fields": {"consent": {"signed_on": ["not after 2019-09-01"]}}}
    assert (plan.next_plan_id, names(plan)) == (None, [])


def test_continuing_needs_the_next_semester_an_unresolved_sign_and_a_pupil_still_learning() -> None:
    plan = reach("evaluated")
    with pytest.raises(InvalidSemesterError):
        plan.continued(Semester(2020, 1), pupil=PUPIL, school=MUNICIPAL, by="teacher")
    resolved_everywhere = PupilView("p-1", SCHOOL_ID, 7, True, False, ("family.crisis",))
    with pytest.raises(CannotContinueError):
        plan.continued(Semester(2019, 2), pupil=resolved_everywhere, school=MUNICIPAL, by="t")
    left = reach("in_progress")
    left.evaluate(
        risk_outcomes={"learning.absences": "unchanged", "economic.low_income": "unchanged"},
        outcome="left_education",
        by="teacher",
    )
    with pytest.raises(CannotContinueError):
        left.continued(Semester(2019, 2), pupil=PUPIL, school=MUNICIPAL, by="teacher")
    left.close(by="teacher")
    assert (left.status, left.outcome) == ("closed", "left_education")
    assert plan.next_plan_id is None


@pytest.mark.parametrize(
    ("reason", "outcome"),
    [
        ("dropped_out", "left_education"),
        ("moved_abroad", "left_education"),
        ("transferred", "transferred"),
        ("graduated", "graduated"),
    ],
)
def test_a_departure_closes_the_plan_with_the_matching_outcome(reason: str, outcome: str) -> None:
    plan = reach("in_progress")
    plan.close_on_departure(reason=reason, by="teacher")
    assert (plan.status, plan.outcome) == ("closed", outcome)


# -- what goes on the bus ---------------------------------------------------------------------


def test_every_plan_event_has_a_contract_whose_payload_validates_and_carries_no_free_text() -> None:
    plan = reach("approved")
    consultation = log(plan, remote=True)
    plan.confirm_consultation(consultation, confirmed_on=date(2019, 10, 2), by="teacher")
    plan.record_material_delivery(
        delivery_id="d",
        measure_id=material_measure(plan),
        amount_eur=Decimal(10),
        delivered_on=date(2019, 10, 2),
        by="p",
    )
    plan.revise(reason="SECRET-REASON", by="teacher")
    plan.submit(by="teacher")
    plan.return_to_author(level="school", reason="SECRET-REASON", by="director")
    plan.submit(by="teacher")
    approve_all(plan)
    plan.suspend(reason="SECRET-REASON", by="teacher")
    plan.resume(by="teacher")
    plan.evaluate(
        risk_outcomes={"learning.absences": "reduced", "economic.low_income": "resolved"},
        outcome="continues_learning",
        by="teacher",
    )
    successor = plan.continued(Semester(2019, 2), pupil=PUPIL, school=MUNICIPAL, by="teacher")
    successor.remove_measure(next(iter(successor.measures)), by="teacher")
    successor.deactivate(reason="SECRET-REASON", by="teacher")
    events = [*plan.collect_events(), *successor.collect_events()]
    seen = set()
    for event in events:
        contract = registry.for_domain_event("planning", type(event).__qualname__)
        payload = contract.dump(event)
        assert contract.load(payload) is not None  # what a consumer will accept
        text = repr(payload)
        for secret in ("SECRET-REASON", "weekly talks", "J. Ozola", "attendance"):
            assert secret not in text, (contract.event_type, payload)
        assert not any(isinstance(v, float) for v in payload.values())
        seen.add(contract.event_type)
    assert seen == {
        "plan_drafted",
        "measure_added",
        "measure_removed",
        "plan_submitted",
        "plan_approved",
        "plan_fully_approved",
        "plan_returned",
        "plan_revision_started",
        "plan_suspended",
        "plan_resumed",
        "plan_deactivated",
        "plan_started",
        "consultation_logged",
        "consultation_confirmed",
        "material_delivery_recorded",
        "plan_evaluated",
        "plan_continued",
    }
