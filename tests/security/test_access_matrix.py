"""Every route of every service, called by every role from its own and from another tenant,
against the table in expected_access.json.

Routes come from the services' own ``@route`` declarations, so a new route without a line in
the table fails here. The resources probed (a pupil, plan, measure, consultation, provision and
budget) all belong to one school; a tenant-scoped role is tried from that school (or its
municipality) and from another one. Writes carry a stale ``expected_version`` or repeat
something that exists, so an allowed caller gets 409 and nothing changes either way; a denied
write is checked to have stored nothing.

Outcomes: ``allow`` (2xx, or a 4xx other than 401/403/404), ``filtered`` (a 2xx list without
any of the probed school's resources), ``deny`` (403), ``hidden`` (404), ``unauthenticated``
(401).
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR
from nameko.standalone.rpc import ClusterRpcProxy

from shared.auth import (
    DIRECTOR,
    MUNICIPAL_COORDINATOR,
    ROLES,
    TEACHER,
)
from shared.cli import SERVICES
from shared.web import Route, openapi_path
from tests.security.scenario import (
    MUNICIPALITY,
    OTHER_MUNICIPALITY,
    OTHER_SCHOOL,
    SCHOOL,
    SEMESTER,
    Scenario,
    build,
    four_services,
)

EXPECTED = Path(__file__).with_name("expected_access.json")
STALE = 999_999
ANONYMOUS = "anonymous"
TENANT_ROLES = (TEACHER, DIRECTOR, MUNICIPAL_COORDINATOR)
TENANT_KEYS = ("pupil_id", "plan_id", "provision_id")
PERSON = {
    "given_name": "Marta",
    "family_name": "Kalniņa",
    "personal_code": "321234-56789",
    "gender": "F",
}


def declared_routes() -> list[tuple[str, Route]]:
    """(service, route) for every ``@route`` of every service class."""
    found = []
    for service, (module, cls, _port) in SERVICES.items():
        service_cls = getattr(importlib.import_module(module), cls)
        for _name, member in inspect.getmembers(service_cls):
            for entry in getattr(member, ENTRYPOINT_EXTENSIONS_ATTR, ()):
                if isinstance(entry, Route):
                    found.append((service, entry))
    return sorted(found, key=lambda pair: key_of(*pair))


def key_of(service: str, entry: Route) -> str:
    return f"{service} {entry.method} {openapi_path(entry.url)}"


def principals() -> list[tuple[str, str | None, dict[str, str] | None]]:
    """(role, tenant: own / other / None, claims); claims None means no token at all."""
    found: list[tuple[str, str | None, dict[str, str] | None]] = [(ANONYMOUS, None, None)]
    for role in sorted(ROLES):
        if role in (TEACHER, DIRECTOR):
            found += [(role, "own", {"school": SCHOOL}), (role, "other", {"school": OTHER_SCHOOL})]
        elif role == MUNICIPAL_COORDINATOR:
            found += [
                (role, "own", {"municipality": MUNICIPALITY}),
                (role, "other", {"municipality": OTHER_MUNICIPALITY}),
            ]
        else:
            found.append((role, None, {}))
    return found


# -- what each route is called with -----------------------------------------------------------

REASON = {"reason": "probe", "expected_version": STALE}
VERSIONED = {"expected_version": STALE}


def bodies(s: Scenario) -> dict[str, Any]:
    measure = {
        "kind": "psychologist",
        "risk_code": "learning.absences",
        "justification": "probe",
        "hours": 2,
        "expected_version": STALE,
    }
    return {
        "POST /pupils": {
            "school_id": SCHOOL,
            "grade": 7,
            "birth_date": "2008-03-01",
            **PERSON,  # already registered: 409
        },
        "POST /schools": {
            "school_id": SCHOOL,  # exists already: 409
            "name": "probe",
            "municipality": MUNICIPALITY,
            "kind": "general",
            "owner": "municipal",
            "grade_from": 1,
            "grade_to": 12,
        },
        "POST /pupils/{pupil_id}/risk-signs": {
            "code": "learning.gaps",
            "observed_on": "2019-10-01",
            "evidence": "probe",
            "expected_version": STALE,
        },
        "POST /pupils/{pupil_id}/risk-signs/{code}/resolve": REASON,
        "POST /pupils/{pupil_id}/departure": {
            "reason": "dropped_out",
            "on": "2019-12-01",
            "expected_version": STALE,
        },
        "POST /pupils/{pupil_id}/erasure": VERSIONED,
        "POST /plans": {
            "pupil_id": s.pupil_id,  # has a plan this semester already: 409
            "semester": SEMESTER,
            "consent": {"given_by": "parent", "signed_on": "2019-09-02"},
        },
        "POST /plans/{plan_id}/measures": measure,
        "PUT /plans/{plan_id}/measures/{measure_id}": measure,
        "POST /plans/{plan_id}/evaluate": {
            "risk_outcomes": {"learning.absences": "resolved"},
            "outcome": "continues_learning",
            "expected_version": STALE,
        },
        "POST /plans/{plan_id}/continue": {"semester": "2019-2020-2", "expected_version": STALE},
        "POST /plans/{plan_id}/consultations": {
            "measure_id": s.measure_id,
            "date": "2019-10-02",
            "hours": 1,
            "provider": "probe",
            "topic": "probe",
            "remote": False,
            "expected_version": STALE,
        },
        "POST /plans/{plan_id}/consultations/{consultation_id}/confirm": {
            "confirmed_on": "2019-10-02",
            "expected_version": STALE,
        },
        "PUT /budgets/{school_id}/{semester}": {"amount_eur": "100.00", "expected_version": STALE},
        "POST /provisions/{provision_id}/order": {
            "supplier": "probe",
            "amount_eur": "10.00",
            "expected_version": STALE,
        },
        "POST /provisions/{provision_id}/deliver": {
            "delivered_on": "2019-10-02",
            "amount_eur": "10.00",
            "receipt_no": "R-1",
            "expected_version": STALE,
        },
        "POST /provisions/{provision_id}/cancel": REASON,
    }


QUERIES: dict[str, dict[str, Any]] = {
    "GET /pupils": {"school_id": SCHOOL},
    "GET /plans": {"school_id": SCHOOL},
    "GET /pupils-at-risk": {"school_id": SCHOOL},
    "GET /provisions": {"school_id": SCHOOL},
    "GET /reports/esf": {"semester": SEMESTER, "school_id": SCHOOL},
    "POST /imports/journal": {"school_id": SCHOOL, "semester": SEMESTER},
    "DELETE /plans/{plan_id}/measures/{measure_id}": {"expected_version": STALE},
}


def request_of(s: Scenario, entry: Route) -> dict[str, Any]:
    path = openapi_path(entry.url)
    values = {
        "pupil_id": s.pupil_id,
        "plan_id": s.plan_id,
        "measure_id": s.measure_id,
        "consultation_id": s.consultation_id,
        "provision_id": s.provision_id,
        "school_id": SCHOOL,
        "semester": SEMESTER,
        "code": "learning.absences",
    }
    template = f"{entry.method} {path}"
    request: dict[str, Any] = {
        "method": entry.method,
        "path": path.format(**values),
        "params": QUERIES.get(template, {}),
    }
    if template == "POST /imports/journal":
        # A header without rows: an allowed caller gets a report of nothing imported.
        header = "personal_code,given_name,family_name,grade,birth_date,gender,unexcused_lessons\n"
        request["data"] = header.encode()
        request["headers"] = {"Content-Type": "text/csv"}
    elif entry.body_schema is not None:
        default = REASON if "reason" in entry.body_schema._declared_fields else VERSIONED
        request["json"] = bodies(s).get(template, default)
    return request


# -- what the caller saw ------------------------------------------------------------------------


def outcome(answer: requests.Response, s: Scenario) -> str:
    status = answer.status_code
    if status == 401:
        return "unauthenticated"
    if status == 403:
        return "deny"
    if status == 404:
        return "hidden"
    if status >= 500:
        return f"error {status}"
    if status < 300 and answer.request.method == "GET" and is_filtered(answer, s):
        return "filtered"
    return "allow"


def is_filtered(answer: requests.Response, s: Scenario) -> bool:
    """A page of tenant data that holds none of the probed school's resources."""
    if not answer.headers.get("Content-Type", "").startswith("application/json"):
        return False
    body = answer.json()
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return False
    tenant_data = not items or any(k in items[0] for k in TENANT_KEYS if isinstance(items[0], dict))
    return tenant_data and not any(i in answer.text for i in s.ids())


# -- the table ------------------------------------------------------------------------------------


def table_lines(observed: dict[str, dict[str, Any]]) -> str:
    """The table as kept in the repository: one line per route and role."""
    lines = ["{"]
    for i, (route_key, roles) in enumerate(sorted(observed.items())):
        lines.append(f"  {json.dumps(route_key)}: {{")
        entries = [
            f"    {json.dumps(role)}: {json.dumps(value, separators=(', ', ': '))}"
            for role, value in roles.items()
        ]
        lines.append(",\n".join(entries))
        lines.append("  }" + ("," if i < len(observed) - 1 else ""))
    lines.append("}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def scenario(module_system: Any) -> Iterator[Scenario]:
    with four_services(module_system) as services:
        yield build(module_system, services, PERSON)


def rpc_proxy(services: dict[str, Any]) -> Any:
    amqp = next(iter(services.values())).operator_amqp_uri
    return ClusterRpcProxy({"AMQP_URI": amqp}, timeout=15)


def head(rpc: Any, service: str) -> int:
    return int(getattr(rpc, service).notifications(after=0, limit=1)["head"])


def observe(
    s: Scenario, rpc: Any, service: str, entry: Route, tokens: dict[Any, str | None]
) -> tuple[dict[str, Any], list[str]]:
    """What each principal gets from one route, and anything wrong on the way."""
    request, writes = request_of(s, entry), entry.method != "GET"
    seen: dict[str, Any] = {}
    problems = []
    for (role, tenant), token in tokens.items():
        headers = dict(request.get("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        before = head(rpc, service) if writes else None
        answer = requests.request(
            request["method"],
            s.services[service].url + request["path"],
            params=request["params"],
            json=request.get("json"),
            data=request.get("data"),
            headers=headers,
            timeout=30,
        )
        got = outcome(answer, s)
        who = f"{key_of(service, entry)} as {role}@{tenant or 'all'}"
        if answer.status_code == 400 or got.startswith("error"):
            # A probe the route refuses as invalid would hide its tenancy check.
            problems.append(f"{who}: {answer.status_code} {answer.text[:300]}")
        if writes and got in ("deny", "hidden", "unauthenticated") and head(rpc, service) != before:
            problems.append(f"{who}: {got}, but events were stored")
        if tenant:
            seen.setdefault(role, {})[tenant] = got
        else:
            seen[role] = got
    return seen, problems


def test_every_route_answers_every_role_and_tenant_as_the_table_says(
    module_system: Any, scenario: Scenario
) -> None:
    expected = json.loads(EXPECTED.read_text())
    tokens = {
        (role, tenant): module_system.token(role, **claims) if claims is not None else None
        for role, tenant, claims in principals()
    }
    observed: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    with rpc_proxy(scenario.services) as rpc:
        for service, entry in declared_routes():
            observed[key_of(service, entry)], found = observe(scenario, rpc, service, entry, tokens)
            problems += found
    written = module_system.log_dir / "observed_access.json"
    written.write_text(table_lines(observed))
    missing = sorted(set(observed) - set(expected))
    assert not missing, (
        f"routes without a line in {EXPECTED.name}: add them after checking what each role "
        f"should get (the whole observed table is in {written}):\n"
        + table_lines({k: observed[k] for k in missing})
    )
    gone = sorted(set(expected) - set(observed))
    assert not gone, f"{EXPECTED.name} names routes that no service declares: {gone}"
    assert not problems, "\n".join(problems)
    differences = [
        f"{route_key} {role}: expected {expected[route_key].get(role)}, observed {value}"
        for route_key, roles in observed.items()
        for role, value in roles.items()
        if expected[route_key].get(role) != value
    ]
    assert not differences, "\n".join(differences)
