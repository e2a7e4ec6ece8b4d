"""Material support over HTTP, as a coordinator, a teacher and a director live it: a budget,
a plan approved at every level, its requests against the budget, orders and monthly
deliveries, then a revision that cuts the transport and drops the clothes, approved again,
and the last delivery. Identification, planning and provisioning run on the real broker.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shared.testing import Client, running, wait_until
from tests.integration.test_planning_service import (
    OTHER_SCHOOL,
    SCHOOL,
    command,
    delete,
    known_at_risk,
    ok,
    plan_of,
    put,
    register_at_risk,
)
from tests.integration.test_provisioning_flow import (
    act,
    on_latest,
    plan_command,
    provisions_of,
    reload,
    settles,
)

SEMESTER = "2019-2020-1"
BUDGET = f"/budgets/{SCHOOL}/{SEMESTER}"


@pytest.fixture
def people(system: Any) -> Iterator[dict[str, Client]]:
    identification = system.service("identification")
    planning = system.service("planning")
    provisioning = system.service("provisioning")
    with running(identification, planning, provisioning):
        teacher = system.token("teacher", school=SCHOOL)
        director = system.token("director", school=SCHOOL)
        municipal = system.token("municipal_coordinator", municipality="daugavpils")
        national = system.token("national_coordinator")
        yield {
            "identification": Client(identification.url, teacher),
            "teacher": Client(planning.url, teacher),
            "director": Client(planning.url, director),
            "municipal": Client(planning.url, municipal),
            "national": Client(planning.url, national),
            "coordinator": Client(provisioning.url, municipal),
            "teacher@provisioning": Client(provisioning.url, teacher),
            "director@provisioning": Client(provisioning.url, director),
            "stranger@provisioning": Client(
                provisioning.url, system.token("director", school=OTHER_SCHOOL)
            ),
        }


def approve_everywhere(people: dict[str, Client], plan_id: str, version: int) -> int:
    version = command(people["teacher"], plan_id, "submit", version)["version"]
    for who in ("director", "municipal", "national"):
        version = command(people[who], plan_id, "approve", version)["version"]
    return version


def budget(client: Client) -> dict[str, str]:
    b = ok(client.get(BUDGET))
    return {k: b[k] for k in ("allocated", "committed", "spent", "available")}


def provision_statuses(client: Client, plan_id: str) -> dict[str, str]:
    """What the plan shows of each material measure's provision."""
    measures = plan_of(client, plan_id)["measures"]
    return {m["measure_id"]: m["provision_status"] for m in measures if "provision_status" in m}


def money(provision: dict[str, Any]) -> tuple[str, str, str, str]:
    p = provision
    return (p["status"], p["planned_eur"], p["committed_eur"], p["delivered_eur"])


def deliver(client: Client, provision: dict[str, Any], on: str, amount: str) -> dict[str, Any]:
    receipt = f"R-{on}"
    return ok(
        act(client, provision, "deliver", delivered_on=on, amount_eur=amount, receipt_no=receipt),
        201,
    )


def test_from_approval_to_delivery_and_a_revision_that_cuts_a_measure(
    people: dict[str, Client],
) -> None:
    teacher, director = people["teacher"], people["director@provisioning"]

    # The municipality gives the school its semester budget.
    ok(put(people["coordinator"], BUDGET, {"amount_eur": "200.00"}))
    assert budget(director) == {
        "allocated": "200.00",
        "committed": "0.00",
        "spent": "0.00",
        "available": "200.00",
    }

    # A teacher plans talks with the psychologist, the bus, books and clothes.
    pupil_id = register_at_risk(people["identification"])
    known_at_risk(teacher, pupil_id)
    plan = ok(
        teacher.post(
            "/plans",
            {
                "pupil_id": pupil_id,
                "semester": SEMESTER,
                "consent": {"given_by": "parent", "signed_on": "2019-09-02"},
            },
        ),
        201,
    )
    plan_id, version = plan["plan_id"], plan["version"]
    measures: dict[str, str] = {}
    for name, body in (
        ("talks", {"kind": "psychologist", "risk_code": "learning.absences", "hours": 8}),
        ("bus", {"kind": "public_transport", "amount_eur": "60.00"}),
        ("books", {"kind": "learning_materials", "amount_eur": "40.00"}),
        ("clothes", {"kind": "personal_items", "amount_eur": "30.00"}),
    ):
        body = {
            "risk_code": "economic.low_income",
            "justification": f"{name} for the semester",
            **body,
            "expected_version": version,
        }
        added = ok(teacher.post(f"/plans/{plan_id}/measures", body), 201)
        measures[name], version = added["measure_id"], added["version"]
    approve_everywhere(people, plan_id, version)
    assert plan_of(teacher, plan_id)["status"] == "approved"

    # Provisioning turns each material measure into a request against the budget.
    shown = provisions_of(director, plan_id, 3)
    assert set(shown) == {measures["bus"], measures["books"], measures["clothes"]}
    assert {m: money(p) for m, p in shown.items()} == {
        measures["bus"]: ("requested", "60.00", "60.00", "0.00"),
        measures["books"]: ("requested", "40.00", "40.00", "0.00"),
        measures["clothes"]: ("requested", "30.00", "30.00", "0.00"),
    }
    assert budget(director)["available"] == "70.00"
    bus, books, clothes = (shown[measures[n]] for n in ("bus", "books", "clothes"))
    refused = act(people["teacher@provisioning"], bus, "order", supplier="x", amount_eur="1.00")
    assert refused.status_code == 403
    assert people["stranger@provisioning"].get(
        f"/provisions/{bus['provision_id']}"
    ).status_code == (404)
    assert ok(people["stranger@provisioning"].get("/provisions"))["items"] == []

    # The director orders the bus tickets and the books, and records what is delivered.
    bus = ok(act(director, bus, "order", supplier="AS Daugavpils satiksme", amount_eur="60.00"))
    books = ok(act(director, books, "order", supplier="Zvaigzne ABC", amount_eur="40.00"))
    bus = deliver(director, bus, "2019-09-30", "20.00")
    bus = deliver(director, bus, "2019-10-31", "20.00")
    books = deliver(director, books, "2019-09-15", "40.00")
    assert money(bus) == ("partially_delivered", "60.00", "20.00", "40.00")
    assert money(books) == ("delivered", "40.00", "0.00", "40.00")
    assert budget(director) == {
        "allocated": "200.00",
        "committed": "50.00",
        "spent": "80.00",
        "available": "70.00",
    }

    # The plan shows what was provided, and the delivered money as spent.
    wait_until(lambda: plan_of(teacher, plan_id)["spent_eur"] == "80.00", timeout=30)
    wait_until(
        lambda: (
            provision_statuses(teacher, plan_id)
            == {
                measures["bus"]: "partially_delivered",
                measures["books"]: "delivered",
                measures["clothes"]: "requested",
            }
        ),
        timeout=30,
    )
    assert plan_of(teacher, plan_id)["status"] == "in_progress"

    # A revision: the bus costs less from November, the clothes are no longer needed.
    plan_command(teacher, plan_id, "revise", reason="a cheaper bus pass")
    bus_path = f"/plans/{plan_id}/measures/{measures['bus']}"
    cheaper = {
        "kind": "public_transport",
        "risk_code": "economic.low_income",
        "justification": "a cheaper pass from November",
        "amount_eur": "50.00",
    }
    on_latest(
        teacher, plan_id, lambda v: put(teacher, bus_path, {**cheaper, "expected_version": v})
    )
    clothes_path = f"/plans/{plan_id}/measures/{measures['clothes']}"
    on_latest(teacher, plan_id, lambda v: delete(teacher, clothes_path, v))
    # Until every level approves the revision, the budget keeps what it had.
    assert budget(director)["committed"] == "50.00"
    for who in ("teacher", "director", "municipal", "national"):
        plan_command(people[who], plan_id, "submit" if who == "teacher" else "approve")
    settles(director, plan_id, lambda p: p["status"] != "requested")

    # The cut released what was not delivered; delivered money did not move.
    bus, books, clothes = (reload(director, p) for p in (bus, books, clothes))
    assert money(bus) == ("partially_delivered", "50.00", "10.00", "40.00")
    assert money(books) == ("delivered", "40.00", "0.00", "40.00")
    assert money(clothes) == ("cancelled", "30.00", "0.00", "0.00")
    assert clothes["cancellation"]["cause"] == "measure_removed"
    assert budget(director) == {
        "allocated": "200.00",
        "committed": "10.00",
        "spent": "80.00",
        "available": "110.00",
    }

    wait_until(
        lambda: (
            provision_statuses(teacher, plan_id)
            == {
                measures["bus"]: "partially_delivered",
                measures["books"]: "delivered",
            }
        ),
        timeout=30,
    )

    # The last month uses up the reduced amount; nothing more can be delivered.
    bus = deliver(director, bus, "2019-11-29", "10.00")
    assert money(bus) == ("delivered", "50.00", "0.00", "50.00")
    more = act(
        director, bus, "deliver", delivered_on="2019-12-20", amount_eur="0.01", receipt_no="R-late"
    )
    assert more.status_code == 409
    assert budget(director) == {
        "allocated": "200.00",
        "committed": "0.00",
        "spent": "90.00",
        "available": "110.00",
    }

    # Every step of the bus ticket is on record, with who did it.
    history = ok(director.get(f"/provisions/{bus['provision_id']}/history"))["items"]
    assert [(h["event"], h["by"]) for h in history] == [
        ("provision_requested", "test-national_coordinator"),
        ("provision_committed", "test-national_coordinator"),
        ("provision_ordered", "test-director"),
        ("provision_delivered", "test-director"),
        ("provision_delivered", "test-director"),
        ("provision_replanned", "test-national_coordinator"),
        ("provision_released", "test-national_coordinator"),
        ("provision_delivered", "test-director"),
    ]
    assert [h["version"] for h in history] == list(range(1, 9))
    listed = ok(director.get("/provisions", params={"plan_id": plan_id, "status": "delivered"}))
    assert {p["measure_id"] for p in listed["items"]} == {measures["bus"], measures["books"]}
    wait_until(lambda: plan_of(teacher, plan_id)["spent_eur"] == "90.00", timeout=30)
    shown = {m["measure_id"]: m for m in plan_of(teacher, plan_id)["measures"]}
    assert (shown[measures["bus"]]["amount_eur"], shown[measures["bus"]]["delivered_eur"]) == (
        "50.00",
        "50.00",
    )
