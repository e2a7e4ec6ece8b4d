"""The four services running, with one pupil, plan, consultation and provision in one school:
the resources the security suites probe. Built over HTTP, as users build them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from shared.testing import Client, ServiceProcess, running, wait_until

SCHOOL = "daugavpils-10-vsk"
OTHER_SCHOOL = "daugavpils-12-vsk"
MUNICIPALITY = "daugavpils"
OTHER_MUNICIPALITY = "riga"
SEMESTER = "2019-2020-1"
SERVICES = ("identification", "planning", "provisioning", "reporting")


def ok(answer: Any, status: int = 200) -> dict[str, Any]:
    assert answer.status_code == status, f"{answer.request.url}: {answer.status_code} {answer.text}"
    return dict(answer.json())


@dataclass
class Scenario:
    services: dict[str, ServiceProcess]
    pupil_id: str = ""
    personal_code: str = ""
    plan_id: str = ""
    plan_version: int = 0
    measure_id: str = ""
    consultation_id: str = ""
    provision_id: str = ""

    def client(self, service: str, token: str | None) -> Client:
        return Client(self.services[service].url, token)

    def ids(self) -> tuple[str, ...]:
        return (self.pupil_id, self.plan_id, self.provision_id)


@contextlib.contextmanager
def four_services(system: Any) -> Iterator[dict[str, ServiceProcess]]:
    processes = {name: system.service(name) for name in SERVICES}
    with running(*processes.values()):
        yield processes


def register_pupil(
    identification: Client, person: dict[str, str], evidence: str, school: str = SCHOOL
) -> tuple[str, int]:
    pupil = ok(
        identification.post(
            "/pupils",
            {"school_id": school, "grade": 7, "birth_date": "2008-03-01", **person},
        ),
        201,
    )
    version = pupil["version"]
    for code in ("learning.absences", "economic.low_income"):
        sign = {"code": code, "observed_on": "2019-09-20", "evidence": evidence}
        version = ok(
            identification.post(
                f"/pupils/{pupil['pupil_id']}/risk-signs", {**sign, "expected_version": version}
            ),
            201,
        )["version"]
    return pupil["pupil_id"], version


def approved_plan(system: Any, scenario: Scenario, pupil_id: str) -> None:
    """Draft a plan with a consultation and a material measure, approve it at every level,
    log one consultation and wait for provisioning's provision of the material measure."""
    teacher = scenario.client("planning", system.token("teacher", school=SCHOOL))
    wait_until(
        lambda: (
            pupil_id
            in {p["pupil_id"] for p in teacher.get("/pupils-at-risk").json().get("items", [])}
        ),
        timeout=30,
    )
    consent = {"given_by": "parent", "signed_on": "2019-09-02"}
    plan = ok(
        teacher.post("/plans", {"pupil_id": pupil_id, "semester": SEMESTER, "consent": consent}),
        201,
    )
    plan_id, version = plan["plan_id"], plan["version"]
    measures = {}
    for kind, extra in (("psychologist", {"hours": 4}), ("meals", {"amount_eur": "90.00"})):
        body = {"kind": kind, "risk_code": "learning.absences", "justification": "support"}
        if kind == "meals":
            body["risk_code"] = "economic.low_income"
        answer = ok(
            teacher.post(
                f"/plans/{plan_id}/measures", {**body, **extra, "expected_version": version}
            ),
            201,
        )
        measures[kind], version = answer["measure_id"], answer["version"]
    version = ok(teacher.post(f"/plans/{plan_id}/submit", {"expected_version": version}))["version"]
    for token in (
        system.token("director", school=SCHOOL),
        system.token("municipal_coordinator", municipality=MUNICIPALITY),
        system.token("national_coordinator"),
    ):
        approver = scenario.client("planning", token)
        version = ok(approver.post(f"/plans/{plan_id}/approve", {"expected_version": version}))[
            "version"
        ]
    consultation = ok(
        teacher.post(
            f"/plans/{plan_id}/consultations",
            {
                "measure_id": measures["psychologist"],
                "date": "2019-10-01",
                "hours": 1,
                "provider": "school psychologist",
                "topic": "absences",
                "remote": False,
                "expected_version": version,
            },
        ),
        201,
    )
    scenario.plan_id, scenario.plan_version = plan_id, consultation["version"]
    scenario.measure_id = measures["psychologist"]
    scenario.consultation_id = consultation["consultation_id"]
    director = scenario.client("provisioning", system.token("director", school=SCHOOL))
    provisions = wait_until(
        lambda: director.get("/provisions", params={"plan_id": plan_id}).json().get("items"),
        timeout=30,
    )
    scenario.provision_id = provisions[0]["provision_id"]


def build(system: Any, services: dict[str, ServiceProcess], person: dict[str, str]) -> Scenario:
    scenario = Scenario(services, personal_code=person["personal_code"])
    identification = scenario.client("identification", system.token("teacher", school=SCHOOL))
    scenario.pupil_id, _ = register_pupil(identification, person, "missed many lessons")
    approved_plan(system, scenario, scenario.pupil_id)
    budget = scenario.client(
        "provisioning", system.token("municipal_coordinator", municipality=MUNICIPALITY)
    )
    ok(
        budget.session.put(
            f"{budget.base_url}/budgets/{SCHOOL}/{SEMESTER}",
            json={"amount_eur": "5000.00"},
            timeout=30,
        )
    )
    return scenario
