"""The history of a fault run: every command clients sent and how it ended, then the checks.

Clients (threads, one ``requests`` session each) drive pupils through identification
(register, record a risk sign so they are flagged, resolve it) and plans through
planning (draft, a psychologist's hours and a material measure, submit, approval at
every level, on which provisioning requests the material) while faults are injected.
Each command is recorded with its outcome: ``ack`` (2xx), ``4xx``, ``5xx`` or
``unknown`` (no answer: the connection failed or timed out, so the command may or may
not have happened).

Afterwards, reading the real stores and HTTP:
- every acknowledged command is stored: its aggregate has an event at the version the
  answer gave (otherwise the command is *lost*);
- every event each source stored reached each consumer that subscribes to it once:
  the consumer's tracking records for the source are exactly the source's notification
  ids (one missing is *lost*, one doubled or unknown to the source is *duplicated*), and
  so are the effects that count events (planning's ``applied_events`` per pupil,
  reporting's journal, provisioning's one request per approved material measure);
- identification and planning agree on who is at risk, and reporting's read models
  equal a rebuild from its journal (``pumpurs reporting rebuild`` says ``unchanged``).
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import requests

from bench import load
from shared.brokeraccess import SUBSCRIBES
from shared.store import POSTGRES, SQLITE, stored_originator_id
from shared.testing import REPO, Stores

SCHOOL = load.SCHOOL
SEMESTER = "2019-2020-1"
SIGN = "learning.absences"
FULLY_APPROVED = "approve_plan_national"  # the last approval: provisioning acts on it

SERVICES = ("identification", "planning", "provisioning", "reporting")


# -- recording ------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    name: str
    service: str
    outcome: str  # ack | 4xx | 5xx | unknown
    status: int | None
    aggregate_id: str | None
    version: int | None


@dataclass
class History:
    commands: list[Command] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, command: Command) -> None:
        with self._lock:
            self.commands.append(command)

    def acknowledged(self) -> list[Command]:
        with self._lock:
            return [c for c in self.commands if c.outcome == "ack"]

    def by_name(self) -> Counter[str]:
        with self._lock:
            return Counter(f"{c.name} {c.outcome}" for c in self.commands)

    def outcomes(self) -> Counter[str]:
        with self._lock:
            return Counter(c.outcome for c in self.commands)


class Stalled(Exception):
    """A command was not acknowledged: this pupil or plan goes no further."""


class Actor:
    """One user's session against one service; every command goes into the history."""

    def __init__(
        self, history: History, service: str, url: str, token: str, pace: float = 0.0
    ) -> None:
        self.history, self.service, self.url, self.pace = history, service, url, pace
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def command(self, name: str, path: str, body: dict[str, Any], aggregate: str | None) -> Any:
        time.sleep(self.pace)  # a user's pace, so consumers are not just buried in a backlog
        try:
            answer = self.session.post(self.url + path, json=body, timeout=20)
        except requests.RequestException:
            self.history.record(Command(name, self.service, "unknown", None, aggregate, None))
            raise Stalled(name) from None
        status = answer.status_code
        if not 200 <= status < 300:
            outcome = "4xx" if status < 500 else "5xx"
            self.history.record(Command(name, self.service, outcome, status, aggregate, None))
            raise Stalled(name)
        data = answer.json()
        aggregate = str(data.get("pupil_id") or data.get("plan_id") or aggregate)
        self.history.record(
            Command(name, self.service, "ack", status, aggregate, data.get("version"))
        )
        return data

    def get(self, path: str, **params: str) -> Any:
        answer = self.session.get(self.url + path, params=params, timeout=20)
        answer.raise_for_status()
        return answer.json()


@dataclass
class People:
    """The actors of one client thread."""

    teacher_id: Actor
    teacher: Actor
    director: Actor
    municipal: Actor
    national: Actor


def pupil_flagged(people: People) -> tuple[str, int]:
    actor = people.teacher_id
    payload = load.register_payload(random.choice("FM"))
    registered = actor.command("register_pupil", "/pupils", payload, None)
    pupil = str(registered["pupil_id"])
    flagged = actor.command(
        "record_risk_sign",
        f"/pupils/{pupil}/risk-signs",
        {"code": SIGN, "observed_on": "2019-10-01", "evidence": "25 unexcused lessons"}
        | {"expected_version": registered["version"]},
        pupil,
    )
    return pupil, int(flagged["version"])


def pupil_lifecycle(people: People) -> None:
    """Register, flag, resolve."""
    pupil, version = pupil_flagged(people)
    people.teacher_id.command(
        "resolve_risk_sign",
        f"/pupils/{pupil}/risk-signs/{SIGN}/resolve",
        {"reason": "attends again", "expected_version": version},
        pupil,
    )


def plan_lifecycle(people: People, stop: threading.Event) -> None:
    """A flagged pupil's plan: drafted, two measures, submitted, approved at every level."""
    pupil, _ = pupil_flagged(people)
    _wait_known_at_risk(people.teacher, pupil, stop)
    plan = people.teacher.command(
        "draft_plan",
        "/plans",
        {
            "pupil_id": pupil,
            "semester": SEMESTER,
            "consent": {"given_by": "parent", "signed_on": "2019-09-02"},
        },
        None,
    )
    plan_id, version = str(plan["plan_id"]), int(plan["version"])
    measures = (
        {"kind": "psychologist", "hours": 4, "justification": "weekly talks"},
        {"kind": "meals", "amount_eur": "30.00", "justification": "lunch at school"},
    )
    for measure in measures:
        body = {**measure, "risk_code": SIGN, "expected_version": version}
        version = people.teacher.command(
            "add_measure", f"/plans/{plan_id}/measures", body, plan_id
        )["version"]
    steps = (
        (people.teacher, "submit", "submit_plan"),
        (people.director, "approve", "approve_plan"),
        (people.municipal, "approve", "approve_plan"),
        (people.national, "approve", FULLY_APPROVED),
    )
    for actor, action, name in steps:
        path = f"/plans/{plan_id}/{action}"
        version = actor.command(name, path, {"expected_version": version}, plan_id)["version"]


def _wait_known_at_risk(planning: Actor, pupil: str, stop: threading.Event) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not stop.is_set():
        try:
            items = planning.get("/pupils-at-risk", school_id=SCHOOL)["items"]
            if any(item["pupil_id"] == pupil for item in items):
                return
        except (requests.RequestException, ValueError):
            pass
        time.sleep(0.3)
    raise Stalled("planning never learnt of the pupil")


def drive(people: People, stop: threading.Event, plans: bool) -> None:
    """One client: lifecycles back to back until told to stop."""
    while not stop.is_set():
        try:
            if plans:
                plan_lifecycle(people, stop)
            else:
                pupil_lifecycle(people)
        except Stalled:
            time.sleep(0.2)  # the service is having a bad moment; start a new one


class Clients:
    """N client threads against the running services."""

    def __init__(self, make_people: Callable[[], People], count: int) -> None:
        self.stop_event = threading.Event()
        self.threads = [
            threading.Thread(
                target=drive, args=(make_people(), self.stop_event, i % 2 == 1), daemon=True
            )
            for i in range(count)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(60)


# -- checking ---------------------------------------------------------------------------


@dataclass
class Verdict:
    lost: int = 0
    duplicated: int = 0
    failures: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.failures.append(message)

    @property
    def ok(self) -> bool:
        return not self.lost and not self.duplicated and not self.failures


class Checker:
    """Reads the stores (as an operator could) and asks the services over HTTP."""

    def __init__(self, stores: Stores) -> None:
        self.stores = stores

    def _q(self, service: str, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        return self.stores.query(service, statement, params)

    def notification_ids(self, service: str) -> list[int]:
        column = "notification_id" if self.stores.kind == POSTGRES else "rowid"
        table = self.stores.events_table(service)
        return [int(r["id"]) for r in self._q(service, f"SELECT {column} AS id FROM {table}")]

    def tracked(self, consumer: str, source: str) -> list[int]:
        table = self.stores.tracking_table(consumer)
        rows = self._q(
            consumer,
            f"SELECT notification_id FROM {table} WHERE application_name = ?",
            (source,),
        )
        return [int(r["notification_id"]) for r in rows]

    def behind(self) -> dict[str, int]:
        """How many events of each source each consumer has still to apply (and how
        many age enquiries reporting has still to have answered)."""
        missing = {}
        for source in SERVICES:
            ids = set(self.notification_ids(source))
            for consumer, sources in SUBSCRIBES.items():
                if source in sources:
                    tracked = set(self.tracked(consumer, source))
                    missing[f"{consumer}<-{source}"] = len(ids - tracked)
        # Reporting asks identification for the ages of pupils of fully approved plans
        # and journals each answer: a rebuild is comparable once none is waiting.
        rows = self._q("reporting", "SELECT COUNT(*) AS n FROM reporting_age_enquiries")
        missing["reporting age enquiries"] = int(rows[0]["n"])
        return missing

    def wait_settled(self, stall: float, cap: float) -> bool:
        """Wait while the consumers catch up: False once they make no progress for
        ``stall`` seconds (stuck, not merely slow), or after ``cap`` seconds in all."""
        started = progressed = shown = time.monotonic()
        last: dict[str, int] = {}
        least: int | None = None
        while time.monotonic() - started < cap and time.monotonic() - progressed < stall:
            with contextlib.suppress(Exception):  # a store may still be coming back
                last = self.behind()
                if not any(last.values()):
                    return True
                if least is None or sum(last.values()) < least:
                    least, progressed = sum(last.values()), time.monotonic()
            if time.monotonic() - shown > 20:
                print(f"  behind: {last}", flush=True)
                shown = time.monotonic()
            time.sleep(1.0)
        print(f"  stuck or too slow, still behind: {last}", flush=True)
        return False

    # -- the checks ---------------------------------------------------------------------
    def check(self, history: History, verdict: Verdict) -> None:
        self.acknowledged_are_stored(history, verdict)
        self.every_event_delivered_once(verdict)
        self.effects_count_each_event_once(verdict)
        self.provisions_once(history, verdict)

    def acknowledged_are_stored(self, history: History, verdict: Verdict) -> None:
        dialect = POSTGRES if self.stores.kind == POSTGRES else SQLITE
        stored: dict[str, set[tuple[str, int]]] = {}
        for command in history.acknowledged():
            if command.service not in stored:
                table = self.stores.events_table(command.service)
                rows = self._q(
                    command.service, f"SELECT originator_id, originator_version FROM {table}"
                )
                stored[command.service] = {
                    (str(r["originator_id"]), int(r["originator_version"])) for r in rows
                }
            assert command.aggregate_id is not None and command.version is not None
            key = (stored_originator_id(UUID(command.aggregate_id), dialect), command.version)
            if key not in stored[command.service]:
                verdict.lost += 1
                verdict.fail(f"acknowledged {command.name} v{command.version} not stored")

    def every_event_delivered_once(self, verdict: Verdict) -> None:
        for consumer, sources in SUBSCRIBES.items():
            for source in sources:
                ids = set(self.notification_ids(source))
                tracked = self.tracked(consumer, source)
                missing = ids - set(tracked)
                doubled = len(tracked) - len(set(tracked))
                unknown = set(tracked) - ids
                verdict.lost += len(missing)
                verdict.duplicated += doubled + len(unknown)
                if missing or doubled or unknown:
                    verdict.fail(
                        f"{consumer} from {source}: {len(missing)} missing, {doubled} doubled, "
                        f"{len(unknown)} not in the source"
                    )

    def effects_count_each_event_once(self, verdict: Verdict) -> None:
        # Planning counts each identification event of a pupil in applied_events.
        table = self.stores.events_table("identification")
        per_pupil = Counter(
            str(r["originator_id"]).replace("-", "")
            for r in self._q("identification", f"SELECT originator_id FROM {table}")
        )
        for row in self._q("planning", "SELECT pupil_id, applied_events FROM planning_pupils"):
            expected = per_pupil[str(row["pupil_id"]).replace("-", "")]
            applied = int(row["applied_events"])
            if applied != expected:
                verdict.fail(f"planning applied {applied} of a pupil's {expected} events")
                verdict.duplicated += max(applied - expected, 0)
                verdict.lost += max(expected - applied, 0)
        # Reporting's journal holds each event of each source once.
        rows = self._q("reporting", "SELECT source, notification_id FROM reporting_journal")
        journal = Counter((str(r["source"]), int(r["notification_id"])) for r in rows)
        for source in SUBSCRIBES["reporting"]:
            ids = set(self.notification_ids(source))
            entries = {n for (s, n) in journal if s == source}
            doubled = sum(c - 1 for (s, _), c in journal.items() if s == source)
            if ids - entries or doubled:
                verdict.fail(
                    f"reporting's journal from {source}: {len(ids - entries)} missing, "
                    f"{doubled} doubled"
                )
                verdict.lost += len(ids - entries)
                verdict.duplicated += doubled

    def provisions_once(self, history: History, verdict: Verdict) -> None:
        """Each fully approved plan's material measure (meals) was requested once."""
        rows = self._q("provisioning", "SELECT plan_id, measure_id FROM provisioning_provisions")
        per_measure = Counter((str(r["plan_id"]), str(r["measure_id"])) for r in rows)
        doubled = sum(count - 1 for count in per_measure.values())
        requested = {plan for plan, _ in per_measure}
        approved = {c.aggregate_id for c in history.acknowledged() if c.name == FULLY_APPROVED}
        if doubled or approved - requested:
            verdict.fail(
                f"provisioning: {doubled} measures requested twice, "
                f"{len(approved - requested)} approved plans with no request"
            )
            verdict.duplicated += doubled
            verdict.lost += len(approved - requested)

    def at_risk_agrees(self, identification: Actor, planning: Actor, verdict: Verdict) -> None:
        source = {
            p["pupil_id"] for p in _all(identification, "/pupils", school_id=SCHOOL, at_risk="true")
        }
        at_risk = planning.get("/pupils-at-risk", school_id=SCHOOL)["items"]
        seen = {p["pupil_id"] for p in at_risk if p.get("at_risk", True)}
        if source != seen:
            verdict.fail(
                f"at risk: identification {len(source)}, planning {len(seen)}, "
                f"{len(source ^ seen)} differ"
            )


def _all(actor: Actor, path: str, **params: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        page = actor.get(path, **params, limit="500", **({"after": after} if after else {}))
        items += page["items"]
        after = page.get("next")
        if not page["items"] or not after:
            return items


def rebuild_unchanged(env: Mapping[str, str]) -> tuple[bool, str]:
    """``pumpurs reporting rebuild`` against reporting's store: True when it says unchanged."""
    done = subprocess.run(
        [sys.executable, "-m", "shared.cli", "reporting", "rebuild"],
        env={**os.environ, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = done.stdout.strip()
    return done.returncode == 0 and out.splitlines()[-1:] == ["unchanged"], out or done.stderr
