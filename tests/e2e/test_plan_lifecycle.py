"""A plan's whole life over HTTP, as a teacher, a director and two coordinators live it.

Draft -> returned by the municipality -> approved at every level -> consultations ->
revision approved again at every level -> evaluation -> continuation into the next
semester, with identification feeding planning over the real broker.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shared.testing import Client, running
from tests.integration.test_planning_service import (
    OTHER_SCHOOL,
    SCHOOL,
    command,
    delete,
    draft_plan,
    known_at_risk,
    ok,
    plan_of,
    put,
    register_at_risk,
    transfer,
)


@pytest.fixture
def people(system: Any) -> Iterator[dict[str, Client]]:
    identification = system.service("identification")
    planning = system.service("planning")
    with running(identification, planning):
        teacher = system.token("teacher", school=SCHOOL)
        other_teacher = system.token("teacher", school=OTHER_SCHOOL)
        yield {
            "identification": Client(identification.url, teacher),
            "other_identification": Client(identification.url, other_teacher),
            "teacher": Client(planning.url, teacher),
            "director": Client(planning.url, system.token("director", school=SCHOOL)),
            "municipal": Client(
                planning.url, system.token("municipal_coordinator", municipality="daugavpils")
            ),
            "national": Client(planning.url, system.token("national_coordinator")),
            "other_teacher": Client(planning.url, other_teacher),
        }


def approve_everywhere(people: dict[str, Client], plan_id: str, version: int) -> int:
    for who, level, next_level in (
        ("director", "school", "municipality"),
        ("municipal", "municipality", "national"),
        ("national", "national", None),
    ):
        assert plan_of(people["teacher"], plan_id)["pending_level"] == level
        version = command(people[who], plan_id, "approve", version)["version"]
        assert plan_of(people["teacher"], plan_id)["pending_level"] == next_level
    return version


def test_from_draft_through_a_revision_to_evaluation_and_continuation(
    people: dict[str, Client],
) -> None:
    teacher = people["teacher"]
    pupil_id = register_at_risk(people["identification"])
    known_at_risk(teacher, pupil_id)

    # The teacher drafts the plan with the parent's consent and three measures.
    plan = ok(
        teacher.post(
            "/plans",
            {
                "pupil_id": pupil_id,
                "semester": "2019-2020-1",
                "consent": {"given_by": "parent", "signed_on": "2019-09-02"},
            },
        ),
        201,
    )
    plan_id, version = plan["plan_id"], plan["version"]
    talks = ok(
        teacher.post(
            f"/plans/{plan_id}/measures",
            {
                "kind": "psychologist",
                "risk_code": "learning.absences",
                "justification": "weekly talks about why lessons are missed",
                "hours": 8,
                "expected_version": version,
            },
        ),
        201,
    )
    maths = ok(
        teacher.post(
            f"/plans/{plan_id}/measures",
            {
                "kind": "subject_teacher",
                "subject": "mathematics",
                "risk_code": "learning.absences",
                "justification": "catch up on missed topics",
                "hours": 6,
                "expected_version": talks["version"],
            },
        ),
        201,
    )
    meals = ok(
        teacher.post(
            f"/plans/{plan_id}/measures",
            {
                "kind": "meals",
                "risk_code": "economic.low_income",
                "justification": "lunch at school",
                "amount_eur": "90.00",
                "expected_version": maths["version"],
            },
        ),
        201,
    )
    version = ok(
        delete(teacher, f"/plans/{plan_id}/measures/{maths['measure_id']}", meals["version"])
    )["version"]
    version = command(teacher, plan_id, "submit", version)["version"]

    # The director approves; the municipal coordinator sends it back with a reason.
    version = command(people["director"], plan_id, "approve", version)["version"]
    returned = command(
        people["municipal"], plan_id, "return", version, reason="justify the meals amount"
    )
    shown = plan_of(teacher, plan_id)
    assert (shown["status"], shown["approvals"], shown["status_reason"]) == (
        "draft",
        [],
        "justify the meals amount",
    )
    changed = put(
        teacher,
        f"/plans/{plan_id}/measures/{meals['measure_id']}",
        {
            "kind": "meals",
            "risk_code": "economic.low_income",
            "justification": "lunch at school, 60 days at 1.50 EUR",
            "amount_eur": "90.00",
            "expected_version": returned["version"],
        },
    )
    version = ok(changed)["version"]
    version = command(teacher, plan_id, "submit", version)["version"]
    version = approve_everywhere(people, plan_id, version)
    shown = plan_of(people["municipal"], plan_id)
    assert shown["status"] == "approved"
    assert [(a["level"], a["by"]) for a in shown["approvals"]] == [
        ("school", "test-director"),
        ("municipality", "test-municipal_coordinator"),
        ("national", "test-national_coordinator"),
    ]
    assert all(a["at"] for a in shown["approvals"])

    # Consultations: the first starts the plan; the pupil confirms one, not the other.
    consultations = []
    for day in ("2019-10-07", "2019-10-14"):
        logged = command(
            teacher,
            plan_id,
            "consultations",
            version,
            201,
            measure_id=talks["measure_id"],
            date=day,
            hours=1,
            provider="school psychologist",
            topic="attendance",
            remote=True,
        )
        consultations.append(logged["consultation_id"])
        version = logged["version"]
    version = command(
        teacher,
        plan_id,
        f"consultations/{consultations[0]}/confirm",
        version,
        confirmed_on="2019-10-08",
    )["version"]
    shown = plan_of(teacher, plan_id)
    assert shown["status"] == "in_progress"
    assert shown["spent_eur"] == "40.00"
    flags = {c["consultation_id"]: (c["confirmed"], c["flagged"]) for c in shown["consultations"]}
    assert flags == {consultations[0]: (True, False), consultations[1]: (False, True)}
    refused = teacher.post(
        f"/plans/{plan_id}/deactivate", {"reason": "x", "expected_version": version}
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "money_spent"

    # A revision: more hours, then every level approves again.
    version = command(teacher, plan_id, "revise", version, reason="absences continue")["version"]
    assert plan_of(teacher, plan_id)["status"] == "under_revision"
    version = ok(
        put(
            teacher,
            f"/plans/{plan_id}/measures/{talks['measure_id']}",
            {
                "kind": "psychologist",
                "risk_code": "learning.absences",
                "justification": "twice a week",
                "hours": 12,
                "expected_version": version,
            },
        )
    )["version"]
    version = command(teacher, plan_id, "submit", version)["version"]
    version = approve_everywhere(people, plan_id, version)
    assert plan_of(teacher, plan_id)["status"] == "in_progress"

    # The end of the semester: evaluation, then continuation.
    version = command(
        teacher,
        plan_id,
        "evaluate",
        version,
        risk_outcomes={"learning.absences": "reduced", "economic.low_income": "resolved"},
        outcome="continues_learning",
    )["version"]
    continued = command(teacher, plan_id, "continue", version, 201, semester="2019-2020-2")
    successor = plan_of(teacher, continued["plan_id"])
    previous = plan_of(teacher, plan_id)
    assert (previous["status"], previous["outcome"]) == ("evaluated", "continues_learning")
    assert previous["next_plan_id"] == successor["plan_id"]
    assert (successor["status"], successor["semester"], successor["previous_plan_id"]) == (
        "draft",
        "2019-2020-2",
        plan_id,
    )
    assert [(m["kind"], m["risk_code"], m["hours"]) for m in successor["measures"]] == [
        ("psychologist", "learning.absences", 12)
    ]
    again = teacher.post(
        f"/plans/{plan_id}/revise", {"reason": "x", "expected_version": version + 1}
    )
    assert again.status_code == 409
    assert again.json()["error"]["details"]["status"] == "evaluated"

    # The history is the audit trail: every event, in order, with who and when.
    history = ok(people["national"].get(f"/plans/{plan_id}/history"))
    events = [entry["event"] for entry in history["items"]]
    assert events[:6] == [
        "plan_drafted",
        "measure_added",
        "measure_added",
        "measure_added",
        "measure_removed",
        "plan_submitted",
    ]
    assert events.count("plan_approved") == 7  # school once more before the return
    assert events.count("plan_fully_approved") == 2
    assert events[-2:] == ["plan_evaluated", "plan_continued"]
    assert [entry["version"] for entry in history["items"]] == list(range(1, len(events) + 1))
    returned_entry = history["items"][events.index("plan_returned")]
    assert returned_entry["by"] == "test-municipal_coordinator"
    assert returned_entry["changes"]["reason"] == "justify the meals amount"
    assert all(entry["at"] for entry in history["items"])

    # Another school's teacher sees none of it.
    assert people["other_teacher"].get(f"/plans/{plan_id}").status_code == 404
    assert people["other_teacher"].get(f"/plans/{plan_id}/history").status_code == 404


def test_a_pupil_who_moves_school_mid_semester_is_supported_by_the_new_school_at_once(
    people: dict[str, Client],
) -> None:
    """The old school's plan ends with the transfer; the new school registers the child,
    records its own sign and draws up a plan for the same semester."""
    teacher, identification = people["teacher"], people["identification"]
    pupil_id = register_at_risk(identification, codes=("learning.absences",))
    known_at_risk(teacher, pupil_id, codes=("learning.absences",))
    old_plan = draft_plan(teacher, pupil_id)["plan_id"]
    new_school = people["other_identification"]
    again = transfer(identification, new_school, pupil_id, OTHER_SCHOOL, "family.crisis")
    assert again["pupil_id"] == pupil_id
    assert identification.get(f"/pupils/{pupil_id}").status_code == 404

    other_teacher = people["other_teacher"]
    known_at_risk(other_teacher, pupil_id, OTHER_SCHOOL, codes=("family.crisis",))
    new_plan = draft_plan(other_teacher, pupil_id)
    shown = plan_of(other_teacher, new_plan["plan_id"])
    assert (shown["school_id"], shown["semester"], shown["risk_codes"]) == (
        OTHER_SCHOOL,
        "2019-2020-1",
        ["family.crisis"],
    )
    closed = plan_of(teacher, old_plan)
    assert (closed["status"], closed["outcome"]) == ("closed", "transferred")
    assert other_teacher.get(f"/plans/{old_plan}").status_code == 404
    listed = ok(teacher.get("/pupils-at-risk", params={"school_id": SCHOOL}))["items"]
    assert pupil_id not in [item["pupil_id"] for item in listed]
