"""Reporting's use cases: receive events, rebuild, report (now or as of a past moment).

Each received event commits, in one transaction, its journal entry, the read-model rows
it changes and the inbox's tracking record: a duplicate is refused by the tracking
record and changes nothing.

Rebuild (``pumpurs reporting rebuild``, or at start-up when ``READ_MODEL_VERSION``
changed) is one transaction: it drops the read-model tables, folds the whole journal in
memory and writes the rows back, so readers see the old rows or the new ones, never a
mix. It holds the journal's lock meanwhile: on PostgreSQL the service's inbox waits for
it; on SQLite the inbox's writes wait up to ``SQLITE_LOCK_TIMEOUT`` (10 s) and are then
retried (the message is redelivered, and the periodic catch-up applies anything
missed). So the service need not be stopped; on SQLite with a large journal (a rebuild
longer than about 10 s: several hundred thousand entries) stop it first, or expect
retried deliveries in its metrics. Inside the service ``pause`` yields to the eventlet
hub between pages.
"""

from __future__ import annotations

import gc
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from services.reporting.domain import (
    AGE_BAND_ANSWERED,
    BUDGET_STATES,
    REPORTING,
    RULE_OF,
    age_enquiry,
    project,
)
from services.reporting.enquiries import AgeEnquiries, Enquiry
from services.reporting.journal import APPEND_LOCK, Journal, stamp
from services.reporting.readmodel import READ_MODEL_VERSION, MemoryState, ReadModels, SqlState
from services.reporting.report import (
    EsfReport,
    Explainer,
    Period,
    School,
    Scope,
    directory,
    figure,
    scope_of,
)
from shared.auth import (
    AUDITOR,
    MUNICIPAL_COORDINATOR,
    NATIONAL_COORDINATOR,
    SCHOOL_ROLES,
    Principal,
)
from shared.contracts import Envelope
from shared.errors import ForbiddenError
from shared.store import POSTGRES, SQLITE, ServiceApplication, Sql, guard_append_only
from shared.vocabulary import PLAN_STATUSES

if TYPE_CHECKING:  # the inbox brings eventlet, which the command line does without
    from shared.inbox import IncomingEvent

Query = Callable[..., list[Any]]
# Sends age enquiries (pupil_id, on) and gives identification's answers (pupil_id, on, band).
AskAges = Callable[[list[dict[str, str]]], list[dict[str, str]]]
NATIONWIDE = (AUDITOR, NATIONAL_COORDINATOR)
# A rebuild or a replay pauses between statements to fold pages in memory; PostgreSQL's
# default here (eventsourcing's 5 s) would end it under load.
LONG_TRANSACTION = "SET LOCAL idle_in_transaction_session_timeout = '120s'"


def no_pause() -> None:
    """Outside the service nothing else waits for this thread."""


@dataclass(frozen=True)
class ReportRequest:
    period: Period
    municipality: str | None = None
    school_id: str | None = None
    as_of: datetime | None = None
    explain: str | None = None


@dataclass(frozen=True)
class Rebuilt:
    entries: int
    rows: int
    seconds: float
    digest: str


class ReportingApplication(ServiceApplication):
    name = "reporting"

    def __init__(self, env: Any = None, pause: Callable[[], None] = no_pause) -> None:
        super().__init__(env)
        self.pause = pause
        self.journal = Journal(self.table_prefix)
        self.models = ReadModels(self.table_prefix)
        self.enquiries = AgeEnquiries(self.table_prefix)
        # A replay holds a whole model in memory: one at a time per process.
        self._replaying = threading.Lock()
        with self.transaction() as sql:
            self.journal.create_table(sql)
            self.models.create_meta(sql)
            self.enquiries.create_table(sql)
        guard_append_only(self, self.journal.table)
        # A new store, or read models of an earlier definition: built from the journal.
        self.rebuild(only_if_outdated=True)

    # -- the inbox -----------------------------------------------------------------------
    def receive(self, event: IncomingEvent) -> None:
        self.receive_all([event])

    def receive_all(self, events: Sequence[IncomingEvent]) -> None:
        """Journal and project consecutive events of one source in one transaction."""

        def effect(sql: Sql) -> None:
            self.journal.append_all(sql, [event.envelope for event in events])
            state = SqlState(sql, self.models)
            for event in events:
                self._project(sql, state, event.envelope)
            state.flush()

        self.save_tracked(tracking=[event.tracking for event in events], effects=[effect])

    def _project(self, sql: Sql, state: SqlState, envelope: Envelope) -> None:
        source, event_type = envelope.source, envelope.event_type
        occurred_at = envelope.occurred_at.isoformat()
        project(state, source, event_type, envelope.aggregate_id, envelope.payload, occurred_at)
        if event_type == "plan_fully_approved" and source == "planning":
            enquiry = age_enquiry(state, envelope.aggregate_id)
            self.enquiries.add(sql, [enquiry] if enquiry else [])

    # -- age enquiries -------------------------------------------------------------------
    def ask_ages(self, ask: AskAges, batch: int = 100) -> int:
        """Claim the oldest age enquiries no replica is asking, send them through ``ask``
        and journal each answer; how many were journalled. An error of ``ask`` leaves every
        enquiry waiting, free to be asked again."""
        with self.transaction() as sql:
            waiting = self.enquiries.claim(sql, batch, datetime.now(UTC))
        if not waiting:
            return 0
        answers = self._asked(ask, waiting)
        asked = set(waiting)
        return sum(self._journal_answer(a) for a in answers if (a["pupil_id"], a["on"]) in asked)

    def _asked(self, ask: AskAges, enquiries: list[Enquiry]) -> list[dict[str, str]]:
        try:
            return ask([{"pupil_id": pupil_id, "on": on} for pupil_id, on in enquiries])
        except Exception:
            with self.transaction() as sql:
                self.enquiries.unclaim(sql, enquiries)  # for the next tick, of any replica
            raise

    def _journal_answer(self, answer: dict[str, str]) -> bool:
        enquiry: Enquiry = (answer["pupil_id"], answer["on"])
        payload = {"pupil_id": enquiry[0], "on": enquiry[1], "band": answer["band"]}
        with self.transaction() as sql:
            self.journal.lock(sql)
            if not self.enquiries.settle(sql, enquiry):
                return False  # answered already, by another replica
            self.journal.append_own(sql, REPORTING, AGE_BAND_ANSWERED, enquiry[0], payload)
            state = SqlState(sql, self.models)
            now = datetime.now(UTC).isoformat()
            project(state, REPORTING, AGE_BAND_ANSWERED, enquiry[0], payload, now)
            state.flush()
        return True

    def age_enquiries_waiting(self) -> int:
        return self.enquiries.count(self.query)

    # -- rebuild -------------------------------------------------------------------------
    def rebuild(self, only_if_outdated: bool = False) -> Rebuilt | None:
        """Drop the read models and replay the journal into them (None: nothing to do)."""
        if only_if_outdated and self._version() == READ_MODEL_VERSION:
            return None
        started = time.perf_counter()
        with self.transaction() as sql:
            self._lock_journal(sql)
            if only_if_outdated and self.models.version(sql) == READ_MODEL_VERSION:
                return None  # another replica rebuilt meanwhile
            self.models.drop_tables(sql)
            self.models.create_tables(sql)
            state, entries = self.fold(_bound(sql))
            self.models.write_all(sql, state, self.pause)
            self.models.set_version(sql)
            # Only those not waiting already: a rebuild of an unchanged journal adds none.
            waiting = self.enquiries.all(_bound(sql))
            self.enquiries.add(sql, sorted(_unanswered(state) - waiting))
        return Rebuilt(entries, state.size(), time.perf_counter() - started, self.digest())

    def _version(self) -> int | None:
        with self.reading() as query:
            rows = query(f"SELECT value FROM {self.models.meta} WHERE name = 'version'")
        return int(rows[0]["value"]) if rows else None

    def _lock_journal(self, sql: Sql) -> None:
        """Keep appends out until commit: PostgreSQL's advisory lock, SQLite's write lock
        (taken by the first write, here the time the rebuild started)."""
        if sql.dialect == POSTGRES:
            sql.execute(APPEND_LOCK)
            sql.execute(LONG_TRANSACTION)
        sql.execute(
            f"INSERT INTO {self.models.meta} (name, value) VALUES ('rebuilt_at', ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (stamp(datetime.now(UTC)),),
        )

    def fold(self, query: Query, until: str | None = None) -> tuple[MemoryState, int]:
        """The read models as the journal's entries (received until ``until``) give them."""
        state, entries, loads, rules = MemoryState(), 0, json.loads, RULE_OF
        with _no_cycle_collection():
            for page in self.journal.entries(query, until=until, pause=self.pause):
                for _, source, event_type, aggregate_id, occurred_at, payload in page:
                    # As ``project`` does; an entry no rule reads is not even decoded.
                    rule = rules.get((source, event_type))
                    if rule is not None:
                        rule(state, aggregate_id, loads(payload), occurred_at)
                entries += len(page)
        return state, entries

    def digest(self) -> str:
        with self.reading() as query:
            return self.models.digest(query)

    # -- reading -------------------------------------------------------------------------
    @contextmanager
    def reading(self) -> Iterator[Query]:
        """Queries that all see one snapshot of the database, and cannot write."""
        datastore = self.recorder.datastore  # type: ignore[attr-defined]
        postgres = self.dialect == POSTGRES
        # On PostgreSQL a read-only transaction ends in COMMIT: psycopg answers a ROLLBACK
        # by dropping every statement the connection had prepared.
        with datastore.transaction(commit=postgres) as cursor:
            sql = Sql(cursor, self.dialect)
            if postgres:
                sql.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                sql.execute(LONG_TRANSACTION)
            yield _bound(sql)

    @contextmanager
    def replayed(self, until: datetime) -> Iterator[Query]:
        """The read models as of ``until``, rebuilt in a private in-memory database."""
        with self._replaying:
            with self.reading() as query:
                state, _ = self.fold(query, until=stamp(until))
            connection = sqlite3.connect(":memory:")
            connection.row_factory = sqlite3.Row
            try:
                sql = Sql(connection.cursor(), SQLITE)
                self.models.create_tables(sql)
                self.models.write_all(sql, state, self.pause)
                del state
                yield _bound(sql)
            finally:
                connection.close()

    # -- the ESF report ------------------------------------------------------------------
    def esf_report(self, request: ReportRequest, user: Principal) -> dict[str, Any]:
        if request.as_of is None:
            with self.reading() as query:
                return self._report(query, request, user, self.journal.latest(query))
        with self.replayed(request.as_of) as query:
            return self._report(query, request, user, stamp(request.as_of))

    def _report(
        self, query: Query, request: ReportRequest, user: Principal, as_of: str | None
    ) -> dict[str, Any]:
        schools = directory(query, self.models)
        municipality, school_id = tenant_scope(user, request, schools)
        report = EsfReport(
            query, self.models, schools, request.period, scope_of(schools, municipality, school_id)
        )
        document = report.document(as_of)
        if request.explain is None:
            return document
        value = figure(document["indicators"], request.explain)
        ids = Explainer(report).explain(request.explain).view()
        del document["indicators"]
        return {**document, "explain": {"indicator": request.explain, "value": value, **ids}}

    # -- the programme's gauges ----------------------------------------------------------
    def programme_figures(self) -> dict[str, Any]:
        """Pupils at risk now, plans by status and the budgets' money (EUR), all schools; and
        the age enquiries waiting for identification's answer, and how long the oldest has."""
        m = self.models
        with self.reading() as query:
            at_risk = query(
                f"SELECT COUNT(DISTINCT pupil_id) AS n FROM {m['signs']} WHERE resolved_on IS NULL"
            )
            plans = query(f"SELECT status, SUM(plans) AS n FROM {m['plan_counts']} GROUP BY status")
            money = query(
                "SELECT SUM(allocated_eur) AS allocated, SUM(committed_eur) AS committed, "
                f"SUM(spent_eur) AS spent FROM {m['budgets']}"
            )
            waiting = self.enquiries.count(query)
            oldest = self.enquiries.oldest_age_seconds(query, datetime.now(UTC))
        statuses = dict.fromkeys(PLAN_STATUSES, 0)
        statuses.update({row["status"]: int(row["n"]) for row in plans})
        return {
            "pupils_at_risk": int(at_risk[0]["n"]),
            "plans": statuses,
            "budget_eur": {s: int(money[0][s] or 0) / 100 for s in BUDGET_STATES},
            "age_enquiries_waiting": waiting,
            "age_enquiry_oldest_seconds": oldest,
        }


def tenant_scope(
    user: Principal, request: ReportRequest, schools: dict[str, School]
) -> tuple[str | None, str | None]:
    """The municipality and school a caller may report on (their own unless nationwide)."""
    municipality, school_id = request.municipality, request.school_id
    if user.role in NATIONWIDE:
        return municipality, school_id
    if user.role == MUNICIPAL_COORDINATOR:
        school = schools.get(school_id or "")
        if municipality not in (None, user.municipality) or (
            school is not None and school.municipality != user.municipality
        ):
            raise ForbiddenError("this report is outside your municipality")
        if school_id is None:
            return municipality or user.municipality, None
        return municipality, school_id
    if user.role in SCHOOL_ROLES and user.school:
        if school_id not in (None, user.school) or (municipality and school_id is None):
            raise ForbiddenError("this report is outside your school")
        return municipality, user.school
    raise ForbiddenError(f"role {user.role} may not read reports")


def _unanswered(state: MemoryState) -> set[Enquiry]:
    """The age enquiries the supported plans need that the journal holds no answer to."""
    needed = (age_enquiry(state, plan_id) for (plan_id,) in state.tables["plans"])
    return {enquiry for enquiry in needed if enquiry is not None}


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """The fold makes millions of small lists and no cycles: Python's cycle collector would
    walk all of them again and again as they accumulate (seconds at a million entries)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _bound(sql: Sql) -> Query:
    def query(statement: str, params: Any = ()) -> list[Any]:
        return sql.execute(statement, params).fetchall()

    return query


__all__ = ["Rebuilt", "ReportRequest", "ReportingApplication", "Scope", "no_pause"]
