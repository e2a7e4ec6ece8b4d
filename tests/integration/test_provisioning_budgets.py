"""Provisioning as a process on a real broker and the store under test: budgets over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kombu import Connection, Exchange, Queue

from shared.testing import Client, running, wait_until
from shared.topology import EVENTS_EXCHANGE

SCHOOL, OTHER_SCHOOL = "daugavpils-10-vsk", "daugavpils-12-vsk"
SEMESTER = "2019-2020-1"
BUDGET = f"/budgets/{SCHOOL}/{SEMESTER}"


class Tap:
    """A queue bound to every event of one source, declared before the source publishes."""

    def __init__(self, uri: str, source: str) -> None:
        self.uri = uri
        self.queue = Queue(
            f"test.{source}-tap",
            exchange=Exchange(EVENTS_EXCHANGE, "topic", durable=True),
            routing_key=f"{source}.#",
            durable=True,
        )
        with Connection(uri, connect_timeout=5) as conn:
            self.queue(conn.channel()).declare()
        self.seen: list[dict[str, Any]] = []

    def drain(self) -> list[dict[str, Any]]:
        with Connection(self.uri, connect_timeout=5) as conn:
            channel = conn.channel()
            while (message := channel.basic_get(self.queue.name, no_ack=True)) is not None:
                self.seen.append(json.loads(message.body))
        return self.seen

    def of_type(self, *types: str) -> list[dict[str, Any]]:
        return [m for m in self.drain() if m["event_type"] in types]


def put(client: Client, path: str, body: dict[str, Any]) -> Any:
    return client.session.put(client.base_url + path, json=body, timeout=30)


def ok(answer: Any, status: int = 200) -> dict[str, Any]:
    assert answer.status_code == status, f"{answer.status_code}: {answer.text}"
    return dict(answer.json())


@pytest.fixture
def people(system: Any) -> Iterator[dict[str, Any]]:
    tap = Tap(system.broker.uri, "provisioning")
    provisioning = system.service("provisioning")
    with running(provisioning):
        tokens = {
            "municipal": system.token("municipal_coordinator", municipality="daugavpils"),
            "riga": system.token("municipal_coordinator", municipality="riga"),
            "national": system.token("national_coordinator"),
            "director": system.token("director", school=SCHOOL),
            "teacher": system.token("teacher", school=SCHOOL),
            "stranger": system.token("teacher", school=OTHER_SCHOOL),
            "auditor": system.token("auditor"),
            "operator": system.token("operator"),
        }
        yield {"tap": tap, **{who: Client(provisioning.url, t) for who, t in tokens.items()}}


def test_coordinators_set_a_schools_budget_and_every_change_is_published(
    people: dict[str, Any],
) -> None:
    municipal, national, tap = people["municipal"], people["national"], people["tap"]
    assert people["teacher"].get(BUDGET).status_code == 404  # nothing set yet

    first = ok(put(municipal, BUDGET, {"amount_eur": "31794.00"}))
    assert first == {
        "school_id": SCHOOL,
        "semester": SEMESTER,
        "allocated": "31794.00",
        "committed": "0.00",
        "spent": "0.00",
        "available": "31794.00",
        "version": 2,
    }
    stale = put(national, BUDGET, {"amount_eur": "30000.00", "expected_version": 1})
    assert stale.status_code == 409
    assert stale.json()["error"]["code"] == "stale_version"
    changed = ok(put(national, BUDGET, {"amount_eur": "30000.50", "expected_version": 2}))
    assert (changed["allocated"], changed["available"], changed["version"]) == (
        "30000.50",
        "30000.50",
        3,
    )
    again = ok(put(national, BUDGET, {"amount_eur": "30000.50"}))
    assert again["version"] == 3  # the same amount again is no change

    # Everyone in the school's tenant reads it; nobody else finds it.
    for reader in ("teacher", "director", "municipal", "national", "auditor"):
        assert ok(people[reader].get(BUDGET))["allocated"] == "30000.50"
    for outsider in ("stranger", "riga"):
        hidden = people[outsider].get(BUDGET)
        assert hidden.status_code == 404
        assert hidden.json()["error"]["code"] == "budget_not_found"
    assert people["operator"].get(BUDGET).status_code == 403

    # Only the school's own coordinators set it.
    for who, status in (("riga", 403), ("director", 403), ("teacher", 403), ("auditor", 403)):
        assert put(people[who], BUDGET, {"amount_eur": "1.00"}).status_code == status
    assert ok(national.get(BUDGET))["version"] == 3

    history = ok(people["auditor"].get(f"{BUDGET}/history"))["items"]
    assert [(h["event"], h["by"], h["changes"].get("amount_eur")) for h in history] == [
        ("budget_opened", "test-municipal_coordinator", None),
        ("budget_set", "test-municipal_coordinator", "31794.00"),
        ("budget_set", "test-national_coordinator", "30000.50"),
    ]

    wait_until(lambda: len(tap.of_type("budget_set")) == 2, timeout=20)
    published = tap.of_type("budget_opened", "budget_set")
    assert [(m["event_type"], m["aggregate_version"]) for m in published] == [
        ("budget_opened", 1),
        ("budget_set", 2),
        ("budget_set", 3),
    ]
    assert published[2]["payload"] == {
        "school_id": SCHOOL,
        "semester": SEMESTER,
        "amount_eur": "30000.50",
        "previous_eur": "31794.00",
    }
    assert published[2]["actor"] == "test-national_coordinator"


INVALID = [
    ({"amount_eur": "12.345"}, "amount_eur"),
    ({"amount_eur": "-1.00"}, "amount_eur"),
    ({"amount_eur": "a lot"}, "amount_eur"),
    ({}, "amount_eur"),
    ({"amount_eur": "10.00", "expected_version": "2"}, "expected_version"),
]


def test_an_invalid_budget_is_refused_naming_the_field_and_changes_nothing(
    people: dict[str, Any],
) -> None:
    for body, field in INVALID:
        answer = put(people["national"], BUDGET, body)
        assert answer.status_code == 400
        assert field in answer.json()["error"]["details"]["fields"]
    assert people["national"].get(BUDGET).status_code == 404


def test_a_wrong_semester_or_an_unknown_provision_is_refused(people: dict[str, Any]) -> None:
    national = people["national"]
    wrong = put(national, f"/budgets/{SCHOOL}/2019-2021-1", {"amount_eur": "10.00"})
    assert wrong.status_code == 400
    assert wrong.json()["error"]["code"] == "invalid_semester"
    missing = national.get("/provisions/6f1c1f4e-0c1a-4f57-9a57-5a1d1a0e0b01")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "provision_not_found"
    assert ok(national.get("/provisions", params={"school_id": SCHOOL}))["items"] == []
    bad_status = national.get("/provisions", params={"status": "lost"})
    assert bad_status.status_code == 400
    assert "status" in bad_status.json()["error"]["details"]["fields"]
    assert Client(national.base_url, None).get(BUDGET).status_code == 401
