"""One pupil's journey through the four services, as ``python -m chaos.load`` drives it.

Fifteen commands by four roles (see ``chaos.load``), each a ``Step``: it calls one service as
the role would, carries what the next step needs in the ``Journey``, and returns the seconds
it waited for a consumer to have acted. Calls go over a fixed pool of keep-alive connections
per service (``Caller``).
"""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import load
from bench.e2e import Watcher
from shared.schools import reference_schools
from shared.testing import token_for

MUNICIPALITY, SEMESTER = "daugavpils", "2019-2020-1"
# Journeys take the municipality's schools in turn, each with its own staff and budget.
SCHOOLS = tuple(s.school_id for s in reference_schools().values() if s.municipality == MUNICIPALITY)
SCHOOL_ROLES = ("teacher", "director")  # their tokens name the school
MEALS_EUR = "90.00"
CONSUMER_WAIT_SECONDS = 15.0  # how long a step polls for a consumer before it fails
CONNECTIONS = 16  # per service, shared by every journey


# -- calling the services -------------------------------------------------------------------


class Caller:
    """HTTP calls as the four roles make them, over a fixed pool of keep-alive connections
    per service, as bench.load's open loop has a fixed pool of clients: a call waits for a
    free connection (its latency counts the wait), and the services' memory is compared
    with the same number of connections open at the start and at the end."""

    def __init__(self, ports: dict[str, int], keys_dir: Path) -> None:
        self.ports = ports
        self.tokens = {
            "municipal": token_for("municipal_coordinator", keys_dir, municipality=MUNICIPALITY),
            "national": token_for("national_coordinator", keys_dir),
        }
        for school in SCHOOLS:
            for role in SCHOOL_ROLES:
                self.tokens[f"{role}@{school}"] = token_for(role, keys_dir, school=school)
        self.watcher: Watcher | None = None
        self.provisions: Watcher | None = None
        self._pools: dict[str, queue.LifoQueue[load.Http]] = {}
        for name, port in ports.items():
            self._pools[name] = queue.LifoQueue()
            for _ in range(CONNECTIONS):
                self._pools[name].put(load.Http(port, None))

    def raw(
        self, service: str, role: str, method: str, path: str, body: Any = None
    ) -> tuple[int, dict[str, Any]]:
        http = self._pools[service].get()
        http.headers["Authorization"] = f"Bearer {self.tokens[role]}"
        data = None if body is None else json.dumps(body).encode()
        try:
            status, raw = http.request(method, path, data)
        except Exception:
            http.close()  # the next call on it connects afresh
            raise
        finally:
            self._pools[service].put(http)
        return status, (json.loads(raw) if raw else {})

    def ok(
        self, service: str, role: str, method: str, path: str, body: Any = None
    ) -> dict[str, Any]:
        status, answer = self.raw(service, role, method, path, body)
        if not 200 <= status < 300:
            code = answer.get("error", {}).get("code") if isinstance(answer, dict) else None
            raise load.HttpError(
                f"{method} {service} {path.split('/')[1]} answered {status} {code}"
            )
        return answer

    def close(self) -> None:
        for pool in self._pools.values():
            while not pool.empty():
                pool.get().close()


# -- one pupil's journey ----------------------------------------------------------------------


@dataclass
class Journey:
    """What a journey carries from one command to the next."""

    school: str
    pupil_id: str = ""
    pupil_version: int = 0
    plan_id: str = ""
    plan_version: int = 0
    talks_id: str = ""
    consultation_id: str = ""
    provision_id: str = ""
    provision_version: int = 0
    failed: bool = False

    def role(self, role: str) -> str:
        """The caller's token: a teacher or director of this journey's school."""
        return f"{role}@{self.school}" if role in SCHOOL_ROLES else role


Step = Callable[[Caller, Journey], float]  # the seconds it waited for a consumer


def _pupil(call: Caller, j: Journey, path: str, body: dict[str, Any]) -> float:
    body = {**body, "expected_version": j.pupil_version}
    j.pupil_version = call.ok("identification", j.role("teacher"), "POST", path, body)["version"]
    return 0.0


def _plan(call: Caller, j: Journey, role: str, action: str, **body: Any) -> dict[str, Any]:
    body = {**body, "expected_version": j.plan_version}
    answer = call.ok("planning", j.role(role), "POST", f"/plans/{j.plan_id}/{action}", body)
    j.plan_version = answer["version"]
    return answer


def register(call: Caller, j: Journey) -> float:
    body = {**load.register_payload(), "school_id": j.school}
    answer = call.ok("identification", j.role("teacher"), "POST", "/pupils", body)
    j.pupil_id, j.pupil_version = answer["pupil_id"], answer["version"]
    if call.watcher is not None:
        call.watcher.expect(j.pupil_id)
    return 0.0


def sign(code: str) -> Step:
    def record(call: Caller, j: Journey) -> float:
        body = {"code": code, "observed_on": "2019-10-01", "evidence": "seen in class"}
        return _pupil(call, j, f"/pupils/{j.pupil_id}/risk-signs", body)

    return record


def resolve(call: Caller, j: Journey) -> float:
    path = f"/pupils/{j.pupil_id}/risk-signs/economic.low_income/resolve"
    return _pupil(call, j, path, {"reason": "free lunches granted"})


def polled(attempt: Callable[[], dict[str, Any] | None], what: str) -> tuple[dict[str, Any], float]:
    """Repeat ``attempt`` until it answers (a consumer has acted); the answer and the
    seconds waited."""
    started = time.monotonic()
    deadline = started + CONSUMER_WAIT_SECONDS
    polls = 0
    while True:
        answer = attempt()
        if answer is not None:
            return answer, time.monotonic() - started
        if time.monotonic() > deadline:
            raise load.HttpError(f"{what} not seen within {CONSUMER_WAIT_SECONDS:.0f}s")
        polls += 1
        # Backing off keeps the polls from loading the consumer they wait for.
        time.sleep(min(0.05 * 2**polls, 0.5))


def draft(call: Caller, j: Journey) -> float:
    """Once planning's read model has the pupil at risk (watched in its database, as
    bench.e2e does: asking planning's API would load the service being measured).

    The journey sleeps until the watcher has seen the row: polling every 10 ms from each
    waiting journey's thread doubled the client's CPU whenever planning fell a little
    behind, on the same two cores as the services it measures."""
    started = time.monotonic()
    if call.watcher is not None and not call.watcher.wait_seen(j.pupil_id, CONSUMER_WAIT_SECONDS):
        raise load.HttpError(
            f"the pupil at risk in planning not seen within {CONSUMER_WAIT_SECONDS:.0f}s"
        )
    waited = time.monotonic() - started
    consent = {"given_by": "parent", "signed_on": "2019-09-02"}
    body = {"pupil_id": j.pupil_id, "semester": SEMESTER, "consent": consent}
    answer = call.ok("planning", j.role("teacher"), "POST", "/plans", body)
    j.plan_id, j.plan_version = answer["plan_id"], answer["version"]
    if call.provisions is not None:
        call.provisions.expect(j.plan_id)
    return waited


def talks(call: Caller, j: Journey) -> float:
    j.talks_id = _plan(
        call,
        j,
        "teacher",
        "measures",
        kind="psychologist",
        risk_code="learning.absences",
        justification="weekly talks about attendance",
        hours=8,
    )["measure_id"]
    return 0.0


def meals(call: Caller, j: Journey) -> float:
    _plan(
        call,
        j,
        "teacher",
        "measures",
        kind="meals",
        risk_code="learning.absences",
        justification="lunch at school",
        amount_eur=MEALS_EUR,
    )
    return 0.0


def plan_action(role: str, action: str) -> Step:
    def act(call: Caller, j: Journey) -> float:
        _plan(call, j, role, action)
        return 0.0

    return act


def consultation(call: Caller, j: Journey) -> float:
    j.consultation_id = _plan(
        call,
        j,
        "teacher",
        "consultations",
        measure_id=j.talks_id,
        date="2019-10-07",
        hours=1,
        provider="school psychologist",
        topic="attendance",
        remote=False,
    )["consultation_id"]
    return 0.0


def confirm(call: Caller, j: Journey) -> float:
    _plan(
        call, j, "teacher", f"consultations/{j.consultation_id}/confirm", confirmed_on="2019-10-08"
    )
    return 0.0


def order(call: Caller, j: Journey) -> float:
    """Once provisioning's read model has the provision it requested on the plan's approval
    (watched in its database, as ``draft`` watches planning's: polling its API from every
    waiting journey was a sixth of provisioning's work at 100/s, and grew as it fell behind),
    the director reads it, with its version, and orders."""
    started = time.monotonic()
    what = "the provision requested on approval"
    seen = call.provisions is None or call.provisions.wait_seen(j.plan_id, CONSUMER_WAIT_SECONDS)
    if not seen:
        raise load.HttpError(f"{what} not seen within {CONSUMER_WAIT_SECONDS:.0f}s")

    def attempt() -> dict[str, Any] | None:
        path = f"/provisions?plan_id={j.plan_id}"
        items = call.ok("provisioning", j.role("director"), "GET", path)["items"]
        return items[0] if items else None

    provision, _ = polled(attempt, what)
    waited = time.monotonic() - started
    body = {"supplier": "school canteen", "amount_eur": MEALS_EUR}
    answer = _provision(call, j, provision["provision_id"], provision["version"], "order", body)
    j.provision_id, j.provision_version = answer["provision_id"], answer["version"]
    return waited


def deliver(call: Caller, j: Journey) -> float:
    body = {"delivered_on": "2019-10-20", "amount_eur": MEALS_EUR, "receipt_no": "R-1"}
    answer = _provision(call, j, j.provision_id, j.provision_version, "deliver", body)
    j.provision_version = answer["version"]
    return 0.0


def _provision(
    call: Caller, j: Journey, provision_id: str, version: int, action: str, body: dict[str, Any]
) -> dict[str, Any]:
    path = f"/provisions/{provision_id}/{action}"
    body = {**body, "expected_version": version}
    return call.ok("provisioning", j.role("director"), "POST", path, body)


# A material delivery changes the plan (planning records it), so every plan command comes
# before the provisioning steps, and the plan's version stays the one this journey knows.
STEPS: list[tuple[str, Step]] = [
    ("identification register pupil", register),
    ("identification record risk sign", sign("learning.absences")),
    ("planning draft plan", draft),
    ("planning add consultation measure", talks),
    ("planning add material measure", meals),
    ("planning submit", plan_action("teacher", "submit")),
    ("planning approve school", plan_action("director", "approve")),
    ("planning approve municipality", plan_action("municipal", "approve")),
    ("planning approve national", plan_action("national", "approve")),
    ("planning log consultation", consultation),
    ("planning confirm consultation", confirm),
    ("identification record 2nd sign", sign("economic.low_income")),
    ("provisioning order", order),
    ("provisioning deliver", deliver),
    ("identification resolve sign", resolve),
]
