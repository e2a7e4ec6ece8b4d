"""What provisioning tells planning, on a real broker and the store under test: each material
measure shows its provision's status, and delivered money counts as spent on the plan (a
delivery is an event of the plan; a status is not)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shared.testing import Client, running, wait_until
from tests.integration.test_planning_service import (
    SCHOOL,
    SEMESTER,
    add_measure,
    command,
    draft_plan,
    known_at_risk,
    ok,
    plan_of,
    put,
    register_at_risk,
)


@pytest.fixture
def services(system: Any) -> Iterator[dict[str, Client]]:
    identification = system.service("identification")
    planning = system.service("planning")
    provisioning = system.service("provisioning")
    with running(identification, planning, provisioning):
        roles = {
            "teacher": system.token("teacher", school=SCHOOL),
            "director": system.token("director", school=SCHOOL),
            "municipal": system.token("municipal_coordinator", municipality="daugavpils"),
            "national": system.token("national_coordinator"),
        }
        yield {
            "identification": Client(identification.url, roles["teacher"]),
            **{role: Client(planning.url, token) for role, token in roles.items()},
            **{f"{r}@provisioning": Client(provisioning.url, t) for r, t in roles.items()},
        }


def measure_of(client: Client, plan_id: str, measure_id: str) -> dict[str, Any]:
    return next(m for m in plan_of(client, plan_id)["measures"] if m["measure_id"] == measure_id)


def test_provision_statuses_and_deliveries_reach_the_plan(services: dict[str, Client]) -> None:
    teacher, director = services["teacher"], services["director@provisioning"]
    ok(
        put(
            services["municipal@provisioning"],
            f"/budgets/{SCHOOL}/{SEMESTER}",
            {"amount_eur": "100.00"},
        )
    )
    pupil_id = register_at_risk(services["identification"])
    known_at_risk(teacher, pupil_id)
    plan = draft_plan(teacher, pupil_id)
    version, measures = plan["version"], {}
    for kind, amount in (("meals", "60.00"), ("accommodation", "90.00")):
        added = add_measure(
            teacher,
            plan["plan_id"],
            version,
            kind=kind,
            risk_code="economic.low_income",
            justification="the family cannot afford it",
            hours=None,
            amount_eur=amount,
        )
        version, measures[kind] = added["version"], added["measure_id"]
    version = command(teacher, plan["plan_id"], "submit", version)["version"]
    for role in ("director", "municipal", "national"):
        version = command(services[role], plan["plan_id"], "approve", version)["version"]

    # Provisioning decides on each measure; planning shows it on the measure.
    def status(kind: str) -> str | None:
        return measure_of(teacher, plan["plan_id"], measures[kind]).get("provision_status")

    wait_until(lambda: status("meals") == "requested" and status("accommodation"), timeout=30)
    assert status("accommodation") == "rejected"  # 40.00 were left after the meals
    shown = plan_of(teacher, plan["plan_id"])
    # Provisioning's decisions show on the measures without changing the plan's version.
    assert (shown["status"], shown["version"]) == ("approved", version)

    # The director orders the meals and records a delivery: money spent on the plan.
    provisions = ok(director.get("/provisions", params={"plan_id": plan["plan_id"]}))["items"]
    meals = next(p for p in provisions if p["measure_id"] == measures["meals"])
    path = f"/provisions/{meals['provision_id']}"
    meals = ok(
        director.post(
            f"{path}/order",
            {"supplier": "Ēdnīca", "amount_eur": "60.00", "expected_version": meals["version"]},
        )
    )
    ok(
        director.post(
            f"{path}/deliver",
            {
                "delivered_on": "2019-10-31",
                "amount_eur": "25.00",
                "receipt_no": "R-1031",
                "expected_version": meals["version"],
            },
        ),
        201,
    )
    wait_until(lambda: plan_of(teacher, plan["plan_id"])["spent_eur"] == "25.00", timeout=30)
    shown = plan_of(teacher, plan["plan_id"])
    assert shown["status"] == "in_progress"  # the first delivery started the plan
    assert measure_of(teacher, plan["plan_id"], measures["meals"])["delivered_eur"] == "25.00"
    assert status("meals") == "partially_delivered"
    refused = teacher.post(
        f"/plans/{plan['plan_id']}/deactivate",
        {"reason": "duplicate", "expected_version": shown["version"]},
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "money_spent"
    history = ok(teacher.get(f"/plans/{plan['plan_id']}/history"))["items"]
    delivered = [e for e in history if e["event"] == "material_delivery_recorded"]
    assert [(e["changes"]["amount_eur"], e["by"]) for e in delivered] == [
        ("25.00", "test-director")
    ]
