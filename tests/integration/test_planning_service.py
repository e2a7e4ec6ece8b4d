"""Planning as a process beside identification, on a real broker and the store under test.

The tests share one running pair of services: each registers pupils of its own and asserts
on their plans (the lists test has a school of its own). The test that kills planning has
its own pair.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
from kombu import Connection, Exchange, Queue

from shared.testing import Client, ServiceProcess, running, wait_until
from shared.topology import EVENTS_EXCHANGE

SCHOOL = "daugavpils-10-vsk"
OTHER_SCHOOL = "daugavpils-12-vsk"
LISTS_SCHOOL = "daugavpils-16-vsk"  # only the lists test plans there
SEMESTER = "2019-2020-1"
CONSENT = {"given_by": "parent", "signed_on": "2019-09-02"}


# -- what users do (shared with tests/e2e) ---------------------------------------------------


def ok(answer: Any, status: int = 200) -> dict[str, Any]:
    assert answer.status_code == status, f"{answer.status_code}: {answer.text}"
    return dict(answer.json())


CODES = ("learning.absences", "economic.low_income")


def register_at_risk(
    identification: Client,
    school: str = SCHOOL,
    grade: int = 7,
    codes: tuple[str, ...] = CODES,
    born: str = "2008-03-01",
) -> str:
    """Register a pupil in identification and record risk signs; the pupil id."""
    code = f"32{random.randrange(10**4):04d}-{random.randrange(10**5):05d}"
    pupil = ok(
        identification.post(
            "/pupils",
            {
                "school_id": school,
                "grade": grade,
                "given_name": "Anna",
                "family_name": "Bērziņa",
                "personal_code": code,
                "birth_date": born,
                "gender": "F",
            },
        ),
        201,
    )
    version = pupil["version"]
    for sign in codes:
        version = ok(
            identification.post(
                f"/pupils/{pupil['pupil_id']}/risk-signs",
                {
                    "code": sign,
                    "observed_on": "2019-09-20",
                    "evidence": "seen by the class teacher",
                    "expected_version": version,
                },
            ),
            201,
        )["version"]
    return str(pupil["pupil_id"])


def transfer(
    old_school: Client, new_school: Client, pupil_id: str, to: str, sign: str
) -> dict[str, Any]:
    """The pupil leaves for school ``to``, which registers the pupil again (the same
    personal code and birth date) and records ``sign``: its answer to the registration."""
    pupil = ok(old_school.get(f"/pupils/{pupil_id}"))
    departure = {
        "reason": "transferred",
        "on": "2019-11-15",
        "to_school_id": to,
        "expected_version": pupil["version"],
    }
    ok(old_school.post(f"/pupils/{pupil_id}/departure", departure))
    kept = ("given_name", "family_name", "personal_code", "birth_date", "gender")
    form = {key: pupil[key] for key in kept}
    again = ok(new_school.post("/pupils", {**form, "school_id": to, "grade": 8}), 201)
    recorded = {
        "code": sign,
        "observed_on": "2019-11-20",
        "evidence": "seen by the new class teacher",
        "expected_version": again["version"],
    }
    ok(new_school.post(f"/pupils/{pupil_id}/risk-signs", recorded), 201)
    return again


def known_at_risk(
    planning: Client, pupil_id: str, school: str = SCHOOL, codes: tuple[str, ...] = CODES
) -> None:
    """Wait until planning's read model has the pupil at risk with every one of ``codes``
    (the pupil is flagged with the first sign: the others may still be on their way)."""

    def seen() -> bool:
        answer = planning.get("/pupils-at-risk", params={"school_id": school})
        items = {item["pupil_id"]: item for item in answer.json().get("items", [])}
        return pupil_id in items and set(codes) <= set(items[pupil_id]["risk_codes"])

    wait_until(seen, timeout=20)


def draft_plan(planning: Client, pupil_id: str, semester: str = SEMESTER) -> dict[str, Any]:
    return ok(
        planning.post("/plans", {"pupil_id": pupil_id, "semester": semester, "consent": CONSENT}),
        201,
    )


def add_measure(planning: Client, plan_id: str, version: int, **fields: Any) -> dict[str, Any]:
    body = {
        "kind": "psychologist",
        "risk_code": "learning.absences",
        "justification": "weekly talks about attendance",
        "hours": 10,
        **fields,
        "expected_version": version,
    }
    return ok(planning.post(f"/plans/{plan_id}/measures", body), 201)


def command(
    client: Client, plan_id: str, action: str, version: int, status: int = 200, **body: Any
) -> dict[str, Any]:
    return ok(
        client.post(f"/plans/{plan_id}/{action}", {**body, "expected_version": version}), status
    )


def delete(client: Client, path: str, version: int) -> Any:
    return client.session.delete(
        client.base_url + path, params={"expected_version": version}, timeout=30
    )


def put(client: Client, path: str, body: dict[str, Any]) -> Any:
    return client.session.put(client.base_url + path, json=body, timeout=30)


def plan_of(client: Client, plan_id: str) -> dict[str, Any]:
    return ok(client.get(f"/plans/{plan_id}"))


# -- the fixture ------------------------------------------------------------------------------


class Tap:
    """A durable queue bound to every planning event, declared before planning publishes."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.queue = Queue(
            "test.planning-tap",
            exchange=Exchange(EVENTS_EXCHANGE, "topic", durable=True),
            routing_key="planning.#",
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

    def types_of(self, plan_id: str) -> list[str]:
        return [m["event_type"] for m in self.drain() if m["aggregate_id"] == plan_id]


@contextlib.contextmanager
def planning_beside_identification(system: Any) -> Iterator[dict[str, Any]]:
    tap = Tap(system.broker.uri)
    identification = system.service("identification")
    planning = system.service("planning")
    with running(identification, planning):
        mint = system.token
        tokens = {
            "teacher": mint("teacher", school=SCHOOL),
            "director": mint("director", school=SCHOOL),
            "municipal": mint(
                "municipal_coordinator", "test-municipal_coordinator", municipality="daugavpils"
            ),
            "national": mint("national_coordinator", "test-national_coordinator"),
            "stranger": mint("teacher", school=OTHER_SCHOOL),
            "auditor": mint("auditor"),
        }
        yield {
            "system": system,
            "tap": tap,
            "planning_process": planning,
            "identification_process": identification,
            "identification": Client(identification.url, tokens["teacher"]),
            **{role: Client(planning.url, token) for role, token in tokens.items()},
        }


@pytest.fixture(scope="module")
def services(module_system: Any) -> Iterator[dict[str, Any]]:
    with planning_beside_identification(module_system) as services:
        yield services


@pytest.fixture
def own_services(system: Any) -> Iterator[dict[str, Any]]:
    with planning_beside_identification(system) as services:
        yield services


def approved_plan(s: dict[str, Any]) -> tuple[str, int, str]:
    pupil_id = register_at_risk(s["identification"])
    known_at_risk(s["teacher"], pupil_id)
    plan = draft_plan(s["teacher"], pupil_id)
    measure = add_measure(s["teacher"], plan["plan_id"], plan["version"])
    version = command(s["teacher"], plan["plan_id"], "submit", measure["version"])["version"]
    for role in ("director", "municipal", "national"):
        version = command(s[role], plan["plan_id"], "approve", version)["version"]
    return plan["plan_id"], version, measure["measure_id"]


# -- the tests ---------------------------------------------------------------------------------


def test_a_pupil_flagged_in_identification_gets_a_plan_with_its_active_signs(
    services: dict[str, Any],
) -> None:
    teacher = services["teacher"]
    pupil_id = register_at_risk(services["identification"])
    known_at_risk(teacher, pupil_id)
    plan = draft_plan(teacher, pupil_id)
    shown = plan_of(teacher, plan["plan_id"])
    assert (shown["pupil_id"], shown["school_id"], shown["status"]) == (pupil_id, SCHOOL, "draft")
    assert shown["risk_codes"] == ["economic.low_income", "learning.absences"]
    assert shown["approval_levels"] == ["school", "municipality", "national"]
    assert shown["consent"] == CONSENT
    assert (shown["spent_eur"], shown["version"]) == ("0.00", 1)
    second = teacher.post(
        "/plans", {"pupil_id": pupil_id, "semester": SEMESTER, "consent": CONSENT}
    )
    assert second.status_code == 409
    assert second.json()["error"]["details"] == {"plan_id": plan["plan_id"]}


def test_refusals_name_what_is_wrong_and_change_nothing(services: dict[str, Any]) -> None:
    teacher, tap = services["teacher"], services["tap"]
    plan_id, version, measure_id = approved_plan(services)
    before = tap.types_of(plan_id)

    stale = teacher.post(f"/plans/{plan_id}/suspend", {"reason": "ill", "expected_version": 1})
    assert stale.status_code == 409
    assert stale.json()["error"]["code"] == "stale_version"

    not_now = teacher.post(f"/plans/{plan_id}/submit", {"expected_version": version})
    assert not_now.status_code == 409
    assert not_now.json()["error"]["code"] == "transition_not_allowed"
    assert "approved" in not_now.json()["error"]["message"]
    assert not_now.json()["error"]["details"]["status"] == "approved"

    frozen = delete(teacher, f"/plans/{plan_id}/measures/{measure_id}", version)
    assert frozen.status_code == 409

    too_many = teacher.post(
        f"/plans/{plan_id}/consultations",
        {
            "measure_id": measure_id,
            "date": "2019-10-01",
            "hours": 10.5,
            "provider": "J. Ozola",
            "topic": "attendance",
            "remote": False,
            "expected_version": version,
        },
    )
    assert too_many.status_code == 422
    assert too_many.json()["error"]["code"] == "planned_hours_exceeded"

    invalid = teacher.post(f"/plans/{plan_id}/measures", {"kind": "pony", "expected_version": 1})
    assert invalid.status_code == 400
    assert {"kind", "risk_code", "justification"} <= set(
        invalid.json()["error"]["details"]["fields"]
    )

    assert services["stranger"].get(f"/plans/{plan_id}").status_code == 404
    hidden = services["stranger"].post(
        f"/plans/{plan_id}/suspend", {"reason": "x", "expected_version": version}
    )
    assert hidden.status_code == 404
    assert (
        services["auditor"]
        .post(f"/plans/{plan_id}/approve", {"expected_version": version})
        .status_code
        == 403
    )
    assert (
        services["teacher"]
        .post(f"/plans/{plan_id}/approve", {"expected_version": version})
        .status_code
        == 403
    )

    assert plan_of(teacher, plan_id)["version"] == version
    wait_until(lambda: len(tap.types_of(plan_id)) >= len(before), timeout=5)
    assert tap.types_of(plan_id) == before  # nothing was published for the refusals


def test_every_step_is_published_in_order_without_free_text(services: dict[str, Any]) -> None:
    teacher, tap = services["teacher"], services["tap"]
    plan_id, version, measure_id = approved_plan(services)
    consultation = command(
        teacher,
        plan_id,
        "consultations",
        version,
        201,
        measure_id=measure_id,
        date="2019-10-01",
        hours=1.5,
        provider="J. Ozola",
        topic="attendance at home",
        remote=True,
    )
    version = command(
        teacher,
        plan_id,
        f"consultations/{consultation['consultation_id']}/confirm",
        consultation["version"],
        confirmed_on="2019-10-02",
    )["version"]
    version = command(teacher, plan_id, "suspend", version, reason="hospital stay")["version"]
    version = command(teacher, plan_id, "resume", version)["version"]
    command(
        teacher,
        plan_id,
        "evaluate",
        version,
        risk_outcomes={"learning.absences": "resolved"},
        outcome="continues_learning",
    )
    expected = [
        "plan_drafted",
        "measure_added",
        "plan_submitted",
        "plan_approved",
        "plan_approved",
        "plan_approved",
        "plan_fully_approved",
        "consultation_logged",
        "plan_started",
        "consultation_confirmed",
        "plan_suspended",
        "plan_resumed",
        "plan_evaluated",
    ]
    wait_until(lambda: len(tap.types_of(plan_id)) >= len(expected), timeout=10)
    messages = [m for m in tap.drain() if m["aggregate_id"] == plan_id]
    assert [m["event_type"] for m in messages] == expected
    assert [m["aggregate_version"] for m in messages] == list(range(1, len(expected) + 1))
    assert {m["source"] for m in messages} == {"planning"}
    approved = [m for m in messages if m["event_type"] == "plan_approved"]
    assert [m["payload"]["level"] for m in approved] == ["school", "municipality", "national"]
    assert {m["actor"] for m in approved[1:]} == {
        "test-municipal_coordinator",
        "test-national_coordinator",
    }
    logged = next(m for m in messages if m["event_type"] == "consultation_logged")
    assert logged["payload"]["cost_eur"] == "30.00"  # 1.5 h x the psychologist's rate
    assert logged["payload"]["hours"] == "1.50"
    text = json.dumps(messages, ensure_ascii=False)
    for free_text in ("weekly talks", "J. Ozola", "attendance at home", "hospital stay", "Bērziņa"):
        assert free_text not in text


def test_a_pupil_signs_the_consent_only_as_an_adult_as_identification_knows(
    services: dict[str, Any],
) -> None:
    teacher, identification = services["teacher"], services["identification"]
    minor = register_at_risk(identification)
    adult = register_at_risk(identification, grade=12, born="2001-03-14")
    known_at_risk(teacher, minor)
    known_at_risk(teacher, adult)
    by_pupil = {"given_by": "pupil", "signed_on": "2019-09-02"}
    refused = teacher.post("/plans", {"pupil_id": minor, "semester": SEMESTER, "consent": by_pupil})
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "consent_needs_a_parent"
    assert "2008" not in refused.text  # the birth date stays in identification
    drafted = ok(
        teacher.post("/plans", {"pupil_id": adult, "semester": SEMESTER, "consent": by_pupil}), 201
    )
    assert plan_of(teacher, drafted["plan_id"])["consent"] == by_pupil
    draft_plan(teacher, minor)  # the refusal kept nothing: the parent's consent drafts it


def test_without_identification_a_pupils_own_consent_waits_and_a_parents_does_not(
    own_services: dict[str, Any],
) -> None:
    teacher, identification = own_services["teacher"], own_services["identification"]
    pupils = [register_at_risk(identification, grade=12, born="2001-03-14") for _ in range(2)]
    for pupil_id in pupils:
        known_at_risk(teacher, pupil_id)
    own_services["identification_process"].stop()
    by_pupil = {"given_by": "pupil", "signed_on": "2019-09-02"}
    waiting = teacher.post(
        "/plans", {"pupil_id": pupils[0], "semester": SEMESTER, "consent": by_pupil}
    )
    assert waiting.status_code == 503
    assert waiting.headers["Retry-After"] == "5"
    assert waiting.json()["error"]["code"] == "identification_unavailable"
    draft_plan(teacher, pupils[1])  # a parent's consent needs nobody else
    own_services["identification_process"].start()
    drafted = teacher.post(
        "/plans", {"pupil_id": pupils[0], "semester": SEMESTER, "consent": by_pupil}
    )
    assert drafted.status_code == 201, drafted.text


def test_a_departure_in_identification_closes_the_plan(services: dict[str, Any]) -> None:
    teacher, identification = services["teacher"], services["identification"]
    plan_id, version, _ = approved_plan(services)
    pupil_id = plan_of(teacher, plan_id)["pupil_id"]
    pupil = ok(identification.get(f"/pupils/{pupil_id}"))
    ok(
        identification.post(
            f"/pupils/{pupil_id}/departure",
            {"reason": "dropped_out", "on": "2019-11-15", "expected_version": pupil["version"]},
        )
    )
    wait_until(lambda: plan_of(teacher, plan_id)["status"] == "closed", timeout=20)
    closed = plan_of(teacher, plan_id)
    assert (closed["outcome"], closed["version"]) == ("left_education", version + 1)
    history = ok(teacher.get(f"/plans/{plan_id}/history"))["items"]
    assert history[-1]["event"] == "plan_closed"
    assert history[-1]["changes"] == {"outcome": "left_education", "cause": "pupil_departed"}
    late = teacher.post(
        "/plans", {"pupil_id": pupil_id, "semester": "2019-2020-2", "consent": CONSENT}
    )
    assert late.status_code == 409
    assert late.json()["error"]["code"] == "pupil_departed"


def test_lists_page_within_the_tenant(services: dict[str, Any]) -> None:
    token = services["system"].token("teacher", school=LISTS_SCHOOL)
    teacher = Client(services["teacher"].base_url, token)
    identification = Client(services["identification"].base_url, token)
    pupils = [register_at_risk(identification, school=LISTS_SCHOOL) for _ in range(3)]
    for pupil_id in pupils:
        known_at_risk(teacher, pupil_id, school=LISTS_SCHOOL)
    plans = {draft_plan(teacher, pupil_id)["plan_id"] for pupil_id in pupils}
    first = ok(teacher.get("/plans", params={"school_id": LISTS_SCHOOL, "limit": 2}))
    assert len(first["items"]) == 2 and first["next_after"] == first["items"][-1]["plan_id"]
    rest = ok(teacher.get("/plans", params={"limit": 2, "after": first["next_after"]}))
    assert rest["next_after"] is None
    assert {p["plan_id"] for p in first["items"] + rest["items"]} == plans
    assert ok(teacher.get("/plans", params={"status": "approved"}))["items"] == []
    assert ok(services["stranger"].get("/plans"))["items"] == []
    stranger = services["stranger"]
    assert ok(stranger.get("/plans", params={"school_id": LISTS_SCHOOL}))["items"] == []
    everything = ok(services["national"].get("/plans", params={"semester": SEMESTER}))["items"]
    assert plans <= {p["plan_id"] for p in everything}
    spec = ok(Client(teacher.base_url, None).get("/openapi.json"))
    assert {"/plans", "/plans/{plan_id}/history", "/plans/{plan_id}/continue"} <= set(spec["paths"])


def test_planning_killed_mid_lifecycle_loses_and_repeats_nothing(
    own_services: dict[str, Any],
) -> None:
    teacher, tap = own_services["teacher"], own_services["tap"]
    process: ServiceProcess = own_services["planning_process"]
    plan_id, version, _ = approved_plan(own_services)
    process.kill()
    process.start()
    shown = plan_of(teacher, plan_id)
    assert (shown["status"], shown["version"]) == ("approved", version)
    command(teacher, plan_id, "revise", version, reason="new sign")
    wait_until(lambda: "plan_revision_started" in tap.types_of(plan_id), timeout=20)
    messages = [m for m in tap.drain() if m["aggregate_id"] == plan_id]
    # A batch published but not recorded before the kill may come again; never a gap.
    versions = sorted({m["aggregate_version"] for m in messages})
    assert versions == list(range(1, version + 2))
    assert len({m["event_id"] for m in messages}) == len(versions)
