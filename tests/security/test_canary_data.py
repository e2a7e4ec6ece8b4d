"""Canary personal data: a pupil with unmistakable names, personal code and evidence text goes
through registration, risk signs, a plan, bad requests and erasure; afterwards none of it is
in the services' logs, their metrics, the ESF report, the error bodies or the integration
events on the broker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kombu import Connection, Exchange, Queue

from shared.testing import Client, wait_until
from shared.topology import EVENTS_EXCHANGE
from tests.security.scenario import (
    SCHOOL,
    SEMESTER,
    SERVICES,
    Scenario,
    approved_plan,
    four_services,
    ok,
    register_pupil,
)

PERSON = {
    "given_name": "Kanarijzelda",
    "family_name": "Putnumeitina",
    "personal_code": "327319-48265",
    "gender": "F",
}
EVIDENCE = "Kanarijevidence misses Thursdays"
CANARIES = (
    PERSON["given_name"],
    PERSON["family_name"],
    PERSON["personal_code"],
    PERSON["personal_code"].replace("-", ""),
    EVIDENCE,
)
PROBE_QUEUE = "security-canary-probe"


def leaks(text: str) -> list[str]:
    return [canary for canary in CANARIES if canary.lower() in text.lower()]


@pytest.fixture(scope="module")
def world(module_system: Any) -> Iterator[dict[str, Any]]:
    """The system after the canary pupil's life, with everything the suite inspects."""
    with four_services(module_system) as services:
        probe = Queue(
            PROBE_QUEUE,
            Exchange(EVENTS_EXCHANGE, "topic", durable=True),
            routing_key="#",
            durable=False,
            auto_delete=False,
        )
        with Connection(module_system.broker.uri) as connection:
            probe(connection.default_channel).declare()
        scenario = Scenario(services)
        teacher = module_system.token("teacher", school=SCHOOL)
        identification = scenario.client("identification", teacher)
        pupil_id, _version = register_pupil(identification, PERSON, EVIDENCE)
        approved_plan(module_system, scenario, pupil_id)
        ok(identification.get(f"/pupils/{pupil_id}"))
        errors = bad_requests(identification, pupil_id)
        dpo = scenario.client("identification", module_system.token("data_protection_officer"))
        ok(dpo.post(f"/pupils/{pupil_id}/erasure", {}))
        yield {
            "module_system": module_system,
            "scenario": scenario,
            "errors": errors,
            "probe": probe,
        }


def bad_requests(identification: Client, pupil_id: str) -> list[str]:
    """Requests that carry the canaries and are refused: their answers."""
    register = {"school_id": SCHOOL, "grade": 7, "birth_date": "2008-03-01", **PERSON}
    answers = [
        identification.post("/pupils", register),  # the code is taken: 409
        identification.post("/pupils", {**register, "grade": 13}),
        identification.post("/pupils", {**register, "school_id": PERSON["personal_code"]}),
        identification.get("/pupils", params={"school_id": PERSON["personal_code"]}),
        identification.post(
            "/pupils", {**register, "personal_code": PERSON["personal_code"] + "7"}
        ),
        identification.post(
            "/pupils", {**register, "given_name": {"nested": PERSON["given_name"]}}
        ),
        identification.post(
            "/pupils",
            data=json.dumps(register)[:-3],
            headers={"Content-Type": "application/json"},
        ),
        identification.post(
            f"/pupils/{pupil_id}/risk-signs",
            {"code": PERSON["family_name"], "observed_on": "2019-09-20", "evidence": EVIDENCE},
        ),
    ]
    assert all(400 <= a.status_code < 500 for a in answers), [a.status_code for a in answers]
    return [a.text for a in answers]


def test_error_bodies_do_not_echo_personal_data(world: dict[str, Any]) -> None:
    found = {i: leaks(text) for i, text in enumerate(world["errors"]) if leaks(text)}
    assert not found, found


def test_integration_events_carry_no_personal_data(world: dict[str, Any]) -> None:
    bodies = []
    with Connection(world["module_system"].broker.uri) as connection:
        queue = world["probe"](connection.default_channel)
        while (message := queue.get(no_ack=True)) is not None:
            bodies.append(
                message.body.decode() if isinstance(message.body, bytes) else message.body
            )
    types = {json.loads(body)["event_type"] for body in bodies}
    # The canary's life was published: registration, signs, the plan, the erasure.
    assert {
        "pupil_registered",
        "risk_sign_recorded",
        "plan_fully_approved",
        "pupil_erased",
    } <= types
    assert [leaks(body) for body in bodies if leaks(body)] == []


def test_the_esf_report_carries_no_personal_data(world: dict[str, Any]) -> None:
    scenario, system = world["scenario"], world["module_system"]
    national = scenario.client("reporting", system.token("national_coordinator"))

    def supported() -> Any:
        report = national.get("/reports/esf", params={"semester": SEMESTER}).json()
        return report if report["indicators"]["pupils_supported"]["total"] >= 1 else None

    report = wait_until(supported, timeout=30)
    csv = national.get("/reports/esf", params={"semester": SEMESTER, "format": "csv"})
    assert csv.status_code == 200
    assert leaks(json.dumps(report, ensure_ascii=False)) == []
    assert leaks(csv.text) == []


def test_logs_and_metrics_carry_no_personal_data(world: dict[str, Any]) -> None:
    scenario, system = world["scenario"], world["module_system"]
    for name in SERVICES:
        metrics = Client(scenario.services[name].url, None).get("/metrics")
        assert "pumpurs_http_requests_total" in metrics.text
        assert leaks(metrics.text) == [], name
    logs = {path.name: path.read_text(errors="replace") for path in system.log_dir.glob("*.log")}
    assert set(logs) >= {f"{name}.log" for name in SERVICES}
    assert all(logs.values())
    assert {name: leaks(text) for name, text in logs.items() if leaks(text)} == {}
