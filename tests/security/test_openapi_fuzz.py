"""Schemathesis against each service's /openapi.json: no answer is a 5xx, and every answer has
the status, media type and shape the document declares.

Schemathesis runs from var/tools-venv (scripts/tools.sh installs it from requirements-tools.txt;
its dependencies would clash with the services' pins in .venv), as `st run` subprocesses started
together, with a fixed seed and a few examples per operation. The pupil, plan, measure and
provision of the security scenario are offered as path, query and body values half of the time,
so the runs reach real aggregates and not only 404s; the runs change them (order, cancel ...).
Every operation is called by a role that may call it: the data protection officer's run (the
personal-data reads and the erasure) is offered a pupil of its own, since it may erase it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.testing import REPO
from tests.security.scenario import (
    MUNICIPALITY,
    SCHOOL,
    SEMESTER,
    Scenario,
    build,
    four_services,
    register_pupil,
)

TOOLS_VENV = Path(os.environ.get("PUMPURS_TOOLS_VENV") or REPO / "var" / "tools-venv")
CHECKS = (
    "not_a_server_error",
    "response_schema_conformance",
    "status_code_conformance",
    "content_type_conformance",
)
SEED = 20191
MAX_EXAMPLES = 5
PERSON = {
    "given_name": "Fuzzelda",
    "family_name": "Schemate",
    "personal_code": "328807-12345",
    "gender": "F",
}
ERASABLE = {**PERSON, "given_name": "Fuzzbert", "personal_code": "328807-12346", "gender": "M"}
# Who calls each service: between them, a role that may call each route, within its own tenant.
CALLERS = (
    ("identification", "director"),
    ("identification", "national_coordinator"),
    ("identification", "data_protection_officer"),
    ("planning", "director"),
    ("planning", "national_coordinator"),
    ("provisioning", "municipal_coordinator"),
    ("reporting", "national_coordinator"),
)


@pytest.fixture(scope="module")
def scenario(module_system: Any) -> Iterator[Scenario]:
    with four_services(module_system) as services:
        yield build(module_system, services, PERSON)


@pytest.fixture(scope="module")
def erasable_pupil(module_system: Any, scenario: Scenario) -> str:
    teacher = scenario.client("identification", module_system.token("teacher", school=SCHOOL))
    pupil_id, _ = register_pupil(teacher, ERASABLE, "missed many lessons")
    return pupil_id


def schemathesis() -> Path:
    st = TOOLS_VENV / "bin" / "st"
    if not st.exists():
        pytest.fail(
            f"{st} is missing: run scripts/tools.sh (make tools), which installs "
            "schemathesis from requirements-tools.txt",
            pytrace=False,
        )
    return st


def config(scenario: Scenario, pupil_id: str) -> str:
    """Known ids and tenants as dictionaries schemathesis draws path and body values from."""
    known = {
        "pupils": [pupil_id],
        "plans": [scenario.plan_id],
        "measures": [scenario.measure_id],
        "consultations": [scenario.consultation_id],
        "provisions": [scenario.provision_id],
        "schools": [SCHOOL],
        "semesters": [SEMESTER],
        "municipalities": [MUNICIPALITY],
    }
    bindings = {
        "pupil_id": "pupils",
        "plan_id": "plans",
        "measure_id": "measures",
        "consultation_id": "consultations",
        "provision_id": "provisions",
        "school_id": "schools",
        "semester": "semesters",
        "municipality": "municipalities",
    }
    # One undeclared method per path shows the 405 answer; all seven cost a sixth of the run.
    lines = ["[phases.coverage]", 'unexpected-methods = ["PATCH"]']
    for name, values in known.items():
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps(values)}"]
    lines.append("[parameters]")
    for field, dictionary in bindings.items():
        for location in ("path", "query", "body"):
            binding = f'{{ dictionary = "{dictionary}", probability = 0.5 }}'
            lines.append(f'"{location}.{field}" = {binding}')
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def runs(
    module_system: Any,
    scenario: Scenario,
    erasable_pupil: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[tuple[str, str], subprocess.Popen[str]]]:
    """Every caller's run started at once: they wait on the services more than they compute."""
    configs = {}
    for name, pupil_id in (("shared", scenario.pupil_id), ("erasable", erasable_pupil)):
        configs[name] = tmp_path_factory.mktemp(f"schemathesis-{name}") / "schemathesis.toml"
        configs[name].write_text(config(scenario, pupil_id))
    started = {
        (service, role): start(
            module_system,
            scenario,
            service,
            role,
            configs["erasable" if role == "data_protection_officer" else "shared"],
        )
        for service, role in CALLERS
    }
    try:
        yield started
    finally:
        for process in started.values():
            if process.poll() is None:
                process.kill()
                process.communicate()


def start(
    system: Any, scenario: Scenario, service: str, role: str, config_file: Path
) -> subprocess.Popen[str]:
    claims = {
        "director": {"school": SCHOOL},
        "municipal_coordinator": {"municipality": MUNICIPALITY},
    }
    token = system.token(role, **claims.get(role, {}))
    command = [
        str(schemathesis()),
        "--config-file",
        str(config_file),
        "run",
        f"{scenario.services[service].url}/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        ",".join(CHECKS),
        "--phases",
        "coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-database",
        "none",
        "--workers",
        "1",
        "--no-color",
    ]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=config_file.parent,
    )


@pytest.mark.parametrize(("service", "role"), CALLERS, ids=[f"{s}-{r}" for s, r in CALLERS])
def test_every_answer_is_what_the_openapi_document_says(
    runs: dict[tuple[str, str], subprocess.Popen[str]], service: str, role: str
) -> None:
    report, _ = runs[service, role].communicate(timeout=900)
    code = runs[service, role].returncode
    assert code == 0, f"schemathesis found failures in {service} as {role}:\n{report[-20000:]}"
    generated = re.search(r"(\d+) generated", report)
    assert generated and int(generated.group(1)) > 0, f"schemathesis tested nothing:\n{report}"


def test_every_route_is_fuzzed_by_a_role_that_may_call_it() -> None:
    """A route no caller may call would be fuzzed only as far as its 403."""
    expected = json.loads((Path(__file__).parent / "expected_access.json").read_text())
    unreached = [
        route
        for route, access in expected.items()
        if not any(
            allowed(access[role]) for service, role in CALLERS if route.startswith(f"{service} ")
        )
    ]
    assert unreached == []


def allowed(access: str | dict[str, str]) -> bool:
    """Allowed outright, or within the caller's own school or municipality."""
    return access == "allow" or (isinstance(access, dict) and access["own"] == "allow")


@pytest.mark.parametrize(
    ("service", "path"), [("planning", "plans"), ("provisioning", "provisions")]
)
def test_a_history_asked_after_a_version_no_store_holds_is_refused(
    module_system: Any, scenario: Scenario, service: str, path: str
) -> None:
    """Schemathesis's find: ?after= past a 64-bit integer reached SQLite and answered 500."""
    client = scenario.client(service, module_system.token("national_coordinator"))
    aggregate = scenario.plan_id if service == "planning" else scenario.provision_id
    history = f"/{path}/{aggregate}/history"
    refused = client.get(history, params={"after": 2**64})
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "invalid_input"
    last = client.get(history, params={"after": 2**63 - 1})
    assert last.status_code == 200, last.text
    assert last.json()["items"] == []


def test_an_amount_too_large_to_count_in_cents_is_refused_and_changes_nothing(
    module_system: Any, scenario: Scenario
) -> None:
    """Schemathesis's find: hours of 1.7e307 broke the two-decimals check (500)."""
    director = scenario.client("planning", module_system.token("director", school=SCHOOL))
    plan = director.get(f"/plans/{scenario.plan_id}").json()
    measure = {
        "kind": "psychologist",
        "risk_code": "learning.absences",
        "justification": "support",
        "hours": 1.76755943214806e307,
        "expected_version": plan["version"],
    }
    changed = director.session.put(
        f"{director.base_url}/plans/{scenario.plan_id}/measures/{scenario.measure_id}",
        json=measure,
        timeout=30,
    )
    assert changed.status_code == 400, changed.text
    assert "hours" in changed.json()["error"]["details"]["fields"]
    order = {"supplier": "Fuzz Ltd", "amount_eur": "1e400", "expected_version": 1}
    ordered = scenario.client("provisioning", module_system.token("national_coordinator")).post(
        f"/provisions/{scenario.provision_id}/order", order
    )
    assert ordered.status_code == 400, ordered.text
    assert "amount_eur" in ordered.json()["error"]["details"]["fields"]
    assert director.get(f"/plans/{scenario.plan_id}").json() == plan
