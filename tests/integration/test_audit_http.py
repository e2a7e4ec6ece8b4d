"""The auditor's routes on reporting, with all four services running: a plan's history and
its state at a past moment (answered by planning from its stored events), and every
service's chain verified over RPC, before and after someone tampers with a store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from shared.testing import Client, running, wait_until
from tests.integration.test_audit_tamper import cut_tail, flip_a_byte
from tests.integration.test_planning_service import (
    OTHER_SCHOOL,
    SCHOOL,
    add_measure,
    command,
    draft_plan,
    known_at_risk,
    ok,
    register_at_risk,
)

SERVICES = ("identification", "planning", "provisioning", "reporting")


@pytest.fixture
def system_up(system: Any) -> Iterator[dict[str, Any]]:
    processes = {name: system.service(name) for name in SERVICES}
    processes["reporting"] = system.service("reporting", PUMPURS_AUDIT_CHECKPOINT_INTERVAL="1")
    with running(*processes.values()):
        tokens = {
            "teacher": system.token("teacher", school=SCHOOL),
            "director": system.token("director", school=SCHOOL),
            "stranger": system.token("teacher", school=OTHER_SCHOOL),
            "auditor": system.token("auditor"),
            "operator": system.token("operator"),
        }
        yield {
            "stores": system.stores,
            "identification": Client(processes["identification"].url, tokens["teacher"]),
            "planning": Client(processes["planning"].url, tokens["teacher"]),
            "planning_director": Client(processes["planning"].url, tokens["director"]),
            **{role: Client(processes["reporting"].url, t) for role, t in tokens.items()},
        }


def a_plan_with_history(s: dict[str, Any]) -> str:
    """Drafted, given a measure, submitted, approved by the school: four events."""
    pupil_id = register_at_risk(s["identification"])
    known_at_risk(s["planning"], pupil_id)
    plan = draft_plan(s["planning"], pupil_id)
    measure = add_measure(s["planning"], plan["plan_id"], plan["version"])
    version = command(s["planning"], plan["plan_id"], "submit", measure["version"])["version"]
    command(s["planning_director"], plan["plan_id"], "approve", version)
    return str(plan["plan_id"])


def verification(client: Client) -> dict[str, Any]:
    return ok(client.get("/audit/verify"))


def test_an_auditor_reads_a_plan_history_and_past_state_and_finds_tampering(
    system_up: dict[str, Any],
) -> None:
    # One running system for both (four services take a while to start and stop).
    plan_id = a_plan_with_history(system_up)
    check_plan_audit(system_up, plan_id)
    check_checkpoints_are_kept_on_a_timer(system_up)
    check_verification(system_up)


def check_checkpoints_are_kept_on_a_timer(s: dict[str, Any]) -> None:
    """Reporting signs each chain's head on its own (here every second), no request needed."""

    def planning_head_signed() -> bool:
        rows = s["stores"].query(
            "reporting",
            "SELECT MAX(position) AS head FROM reporting_audit_checkpoints WHERE service = ?",
            ("planning",),
        )
        return rows[0]["head"] == 4

    wait_until(planning_head_signed, timeout=20, interval=0.5)


def check_plan_audit(s: dict[str, Any], plan_id: str) -> None:
    """History and past state come from planning's stored events."""
    history = ok(s["auditor"].get(f"/audit/plans/{plan_id}/history"))
    items = history["items"]
    assert [item["version"] for item in items] == [1, 2, 3, 4]
    assert items[0]["by"] == "test-teacher" and items[3]["by"] == "test-director"
    assert items[1]["changes"]["kind"] == "psychologist"

    with_measure = ok(s["auditor"].get(f"/audit/plans/{plan_id}", params={"as_of": items[1]["at"]}))
    assert (with_measure["version"], with_measure["status"]) == (2, "draft")
    assert [m["kind"] for m in with_measure["measures"]] == ["psychologist"]
    now = ok(s["teacher"].get(f"/audit/plans/{plan_id}"))  # the plan's own school may look
    assert (now["version"], now["status"]) == (4, "in_approval")

    before = datetime.fromisoformat(items[0]["at"]) - timedelta(seconds=1)
    too_early = s["auditor"].get(f"/audit/plans/{plan_id}", params={"as_of": before.isoformat()})
    assert too_early.status_code == 404
    assert too_early.json()["error"]["code"] == "plan_not_yet_created"
    unknown = s["auditor"].get(f"/audit/plans/{uuid4()}/history")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "plan_not_found")
    assert s["stranger"].get(f"/audit/plans/{plan_id}/history").status_code == 404
    assert s["operator"].get(f"/audit/plans/{plan_id}/history").status_code == 403
    assert s["auditor"].get(f"/audit/plans/{plan_id}", params={"as_of": "soon"}).status_code == 400


def check_verification(s: dict[str, Any]) -> None:
    """Verify names the service and position someone changed."""
    assert s["teacher"].get("/audit/verify").status_code == 403
    first = verification(s["operator"])
    assert first["ok"], first
    heads = {name: result["head_position"] for name, result in first["services"].items()}
    assert heads["identification"] >= 3 and heads["planning"] == 4

    # Reporting signed each head it verified: cutting identification's tail now shows.
    cut_tail(s["stores"], "identification", after=heads["identification"] - 1)
    flip_a_byte(s["stores"], "planning", 2)
    found = verification(s["auditor"])["services"]
    assert not found["identification"]["ok"]
    assert found["identification"]["first_broken"]["reason"] == "truncated_tail"
    assert found["identification"]["first_broken"]["position"] == heads["identification"]
    sources = [a["source"] for a in found["identification"]["anchors"]]
    assert any(source.startswith("reporting's checkpoint") for source in sources)
    assert found["planning"]["first_broken"]["reason"] == "changed_record"
    assert found["planning"]["first_broken"]["position"] == 2
    assert found["provisioning"]["ok"] and found["reporting"]["ok"]
