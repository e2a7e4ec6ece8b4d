"""Every command of a plan from every status: allowed, or refused naming the status."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from services.planning.domain import (
    STATUSES,
    ConsultationNotFoundError,
    MoneySpentError,
    Plan,
    PupilView,
    SchoolView,
    Semester,
)
from shared.errors import PumpursError, TransitionNotAllowedError

SCHOOL_ID = "daugavpils-10-vsk"
CODES = ("learning.absences", "economic.low_income")
RATES = {"psychologist": Decimal("20.00"), "subject_teacher": Decimal("12.00")}
PUPIL = PupilView("p-1", SCHOOL_ID, 7, True, False, CODES)
MUNICIPAL = SchoolView(SCHOOL_ID, "general", "municipal")


def drafted() -> Plan:
    plan = Plan(
        pupil_id="p-1",
        school_id=SCHOOL_ID,
        semester="2019-2020-1",
        levels=MUNICIPAL.levels,
        risk_codes=list(CODES),
        consent_given_by="parent",
        consent_signed_on=date(2019, 9, 2),
        previous_plan_id=None,
        by="teacher",
    )
    plan.add_measure(
        kind="psychologist",
        risk_code="learning.absences",
        justification="weekly talks about attendance",
        hours=Decimal(10),
        active_risk_codes=CODES,
        by="teacher",
    )
    plan.add_measure(
        kind="meals",
        risk_code="economic.low_income",
        justification="lunch at school",
        amount_eur=Decimal("120.00"),
        active_risk_codes=CODES,
        by="teacher",
    )
    return plan


def consultation_measure(plan: Plan) -> str:
    return next(m for m, v in plan.measures.items() if v["kind"] == "psychologist")


def material_measure(plan: Plan) -> str:
    return next(m for m, v in plan.measures.items() if v["kind"] == "meals")


def log(plan: Plan, hours: str = "1", remote: bool = False) -> str:
    return plan.log_consultation(
        measure_id=consultation_measure(plan),
        date=date(2019, 10, 1),
        hours=Decimal(hours),
        provider="J. Ozola",
        topic="attendance",
        remote=remote,
        rates=RATES,
        by="teacher",
    )


def approve_all(plan: Plan) -> None:
    for level in plan.levels:
        plan.approve(level=level, by=f"{level}-approver")


def reach(status: str) -> Plan:
    """A plan brought to ``status`` the way users would (with a consultation once started)."""
    plan = drafted()
    if status == "draft":
        return plan
    if status == "inactive":
        plan.deactivate(reason="drafted by mistake", by="teacher")
        return plan
    plan.submit(by="teacher")
    if status == "in_approval":
        return plan
    approve_all(plan)
    if status == "approved":
        return plan
    log(plan)
    if status == "in_progress":
        return plan
    if status == "under_revision":
        plan.revise(reason="more hours needed", by="teacher")
    elif status == "suspended":
        plan.suspend(reason="in hospital", by="teacher")
    else:
        plan.evaluate(
            risk_outcomes={"learning.absences": "reduced", "economic.low_income": "unchanged"},
            outcome="continues_learning",
            by="teacher",
        )
        if status == "closed":
            plan.close(by="teacher")
    assert plan.status == status
    return plan


def any_consultation(plan: Plan) -> str:
    return next(iter(plan.consultations), "00000000-0000-0000-0000-000000000000")


COMMANDS: dict[str, Callable[[Plan], Any]] = {
    "add_measure": lambda p: p.add_measure(
        kind="subject_teacher",
        risk_code="learning.absences",
        justification="mathematics gaps",
        hours=Decimal(4),
        subject="mathematics",
        active_risk_codes=CODES,
        by="teacher",
    ),
    "change_measure": lambda p: p.change_measure(
        material_measure(p),
        kind="meals",
        risk_code="economic.low_income",
        justification="lunch and breakfast",
        amount_eur=Decimal("150.00"),
        active_risk_codes=CODES,
        by="teacher",
    ),
    "remove_measure": lambda p: p.remove_measure(material_measure(p), by="teacher"),
    "submit": lambda p: p.submit(by="teacher"),
    "approve": lambda p: p.approve(level="school", by="director"),
    "return": lambda p: p.return_to_author(level="school", reason="too vague", by="director"),
    "revise": lambda p: p.revise(reason="new sign", by="teacher"),
    "suspend": lambda p: p.suspend(reason="in hospital", by="teacher"),
    "resume": lambda p: p.resume(by="teacher"),
    "deactivate": lambda p: p.deactivate(reason="duplicate", by="teacher"),
    "log_consultation": lambda p: log(p),
    "confirm_consultation": lambda p: p.confirm_consultation(
        any_consultation(p), confirmed_on=date(2019, 10, 2), by="teacher"
    ),
    "evaluate": lambda p: p.evaluate(
        risk_outcomes={"learning.absences": "resolved", "economic.low_income": "reduced"},
        outcome="continues_learning",
        by="teacher",
    ),
    "continue": lambda p: p.continued(
        Semester(2019, 2), pupil=PUPIL, school=MUNICIPAL, by="teacher"
    ),
    "close": lambda p: p.close(by="teacher"),
    "close_on_departure": lambda p: p.close_on_departure(reason="dropped_out", by="system"),
}

# command -> {status it is allowed from: the status after it, or the error it still meets}
ALLOWED: dict[str, dict[str, str | type[PumpursError]]] = {
    "add_measure": {"draft": "draft", "under_revision": "under_revision"},
    "change_measure": {"draft": "draft", "under_revision": "under_revision"},
    "remove_measure": {"draft": "draft", "under_revision": "under_revision"},
    "submit": {"draft": "in_approval", "under_revision": "in_approval"},
    "approve": {"in_approval": "in_approval"},  # the school level: the municipality is next
    "return": {"in_approval": "draft"},
    "revise": {"approved": "under_revision", "in_progress": "under_revision"},
    "suspend": {"approved": "suspended", "in_progress": "suspended"},
    "resume": {"suspended": "in_progress"},
    "deactivate": {
        "draft": "inactive",
        "in_approval": "inactive",
        "approved": "inactive",
        # Allowed statuses, but money was spent on these plans: refused all the same.
        "in_progress": MoneySpentError,
        "under_revision": MoneySpentError,
        "suspended": MoneySpentError,
    },
    "log_consultation": {"approved": "in_progress", "in_progress": "in_progress"},
    "confirm_consultation": {
        "in_progress": "in_progress",
        "under_revision": "under_revision",
        "suspended": "suspended",
        "in_approval": ConsultationNotFoundError,  # this plan has none to confirm yet
    },
    "evaluate": {"approved": "evaluated", "in_progress": "evaluated", "suspended": "evaluated"},
    "continue": {"evaluated": "evaluated"},
    "close": {"evaluated": "closed"},
    "close_on_departure": {
        s: "closed"
        for s in ("draft", "in_approval", "approved", "in_progress", "under_revision", "suspended")
    },
}

CASES = [(command, status) for command in COMMANDS for status in STATUSES]


def test_the_table_covers_every_command_and_status() -> None:
    assert set(ALLOWED) == set(COMMANDS)
    assert len(CASES) == len(COMMANDS) * 9


@pytest.mark.parametrize(("command", "status"), CASES)
def test_command_from_status(command: str, status: str) -> None:
    plan = reach(status)
    plan.collect_events()
    version = plan.version
    expected = ALLOWED[command].get(status)
    if expected is None:
        with pytest.raises(TransitionNotAllowedError) as refused:
            COMMANDS[command](plan)
        assert refused.value.details["status"] == status
        assert status in refused.value.message
        assert (plan.version, plan.status, plan.collect_events()) == (version, status, [])
    elif isinstance(expected, type):
        with pytest.raises(expected):
            COMMANDS[command](plan)
        assert (plan.version, plan.status, plan.collect_events()) == (version, status, [])
    else:
        COMMANDS[command](plan)
        assert plan.status == expected
        assert plan.version > version
