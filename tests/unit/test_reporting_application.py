"""Reporting's application on the store under test (SQLite, or PostgreSQL in that run), fed
contract-valid envelopes as its inbox would: every ESF indicator against figures computed
here from the scenario, periods and scopes, tenancy, explain, as_of replays, rebuild
digests, the journal's guards, the exports."""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError
from marshmallow import ValidationError

from services.reporting.application import ReportingApplication, ReportRequest
from services.reporting.audit import AsOfQuerySchema
from services.reporting.export import BREAKDOWNS, to_csv, to_xlsx
from services.reporting.report import (
    MunicipalityNotFoundError,
    Period,
    SchoolNotFoundError,
    UnknownIndicatorError,
)
from services.reporting.schemas import EsfQuerySchema
from shared.auth import Principal
from shared.contracts import Envelope, registry
from shared.errors import ForbiddenError
from shared.inbox import IncomingEvent
from shared.store import store_env
from shared.testing import Stores
from shared.web import schema_instance

SEM1, SEM2 = "2019-2020-1", "2019-2020-2"
TEN, ELEVEN = "daugavpils-10-vsk", "daugavpils-11-psk"
TECH = "riga-tehnikums"  # registered through identification: vocational, in riga
AUDITOR = Principal("aina", "auditor")
ON = datetime(2019, 10, 1, 12, tzinfo=UTC)
SEM2_APPROVED = datetime(2020, 2, 1, 9, tzinfo=UTC)


class Feed:
    """Numbered, validated envelopes from each source, applied as the inbox applies them."""

    def __init__(self, app: ReportingApplication) -> None:
        self.app = app
        self.last: dict[str, int] = {}
        self.versions: dict[str, int] = {}

    def envelope(
        self, source: str, event_type: str, aggregate_id: str, payload: dict[str, Any], on: datetime
    ) -> Envelope:
        number = self.last.get(source, 0) + 1
        self.last[source] = number
        self.versions[aggregate_id] = self.versions.get(aggregate_id, 0) + 1
        return Envelope(
            event_id=str(uuid.uuid4()),
            event_type=event_type,
            schema_version=1,
            source=source,
            notification_id=number,
            previous_id=number - 1 or None,
            occurred_at=on,
            aggregate_id=aggregate_id,
            aggregate_version=self.versions[aggregate_id],
            actor="tester",
            payload=payload,
        )

    def send(
        self,
        source: str,
        event_type: str,
        aggregate_id: str,
        payload: dict[str, Any],
        on: datetime = ON,
    ) -> IncomingEvent:
        envelope = self.envelope(source, event_type, aggregate_id, payload, on)
        event = IncomingEvent(envelope, registry.load(envelope))
        self.app.receive(event)
        return event

    # -- identification --------------------------------------------------------------------
    def school(self, school_id: str, municipality: str, kind: str) -> None:
        payload = {
            "school_id": school_id,
            "name": "Rīgas tehnikums",
            "municipality": municipality,
            "kind": kind,
            "owner": "state",
            "grade_from": 1,
            "grade_to": 4,
        }
        self.send("identification", "school_registered", str(uuid.uuid4()), payload)

    def pupil(self, school: str, grade: int, gender: str) -> str:
        pupil_id = str(uuid.uuid4())
        payload = {"school_id": school, "grade": grade, "gender": gender}
        self.send("identification", "pupil_registered", pupil_id, payload)
        return pupil_id

    def sign(self, pupil_id: str, code: str, observed_on: str) -> None:
        payload = {"code": code, "observed_on": observed_on, "source": "assessment"}
        self.send("identification", "risk_sign_recorded", pupil_id, payload)

    def resolve(self, pupil_id: str, code: str, on: datetime) -> None:
        self.send("identification", "risk_sign_resolved", pupil_id, {"code": code}, on)

    # -- planning ----------------------------------------------------------------------------
    def plan(
        self,
        pupil_id: str,
        school: str,
        semester: str,
        previous: str | None = None,
        plan_id: str | None = None,
    ) -> str:
        plan_id = plan_id or str(uuid.uuid4())
        payload = {
            "pupil_id": pupil_id,
            "school_id": school,
            "semester": semester,
            "levels": ["school", "municipality", "national"],
            "risk_codes": [],
            "previous_plan_id": previous,
        }
        self.send("planning", "plan_drafted", plan_id, payload)
        return plan_id

    def approve(
        self, plan_id: str, pupil_id: str, school: str, semester: str, on: datetime = ON
    ) -> None:
        self.send("planning", "plan_submitted", plan_id, {"pending_level": "school"})
        for level in ("school", "municipality", "national"):
            self.send("planning", "plan_approved", plan_id, {"level": level, "by": "x"})
        payload = {
            "plan_id": plan_id,
            "pupil_id": pupil_id,
            "school_id": school,
            "semester": semester,
            "status": "approved",
            "material_measures": [],
        }
        self.send("planning", "plan_fully_approved", plan_id, payload, on)

    def consult(self, plan_id: str, kind: str, hours: str, rate: str) -> None:
        cost = f"{Decimal(hours) * Decimal(rate):.2f}"
        payload = {
            "consultation_id": str(uuid.uuid4()),
            "measure_id": str(uuid.uuid4()),
            "kind": kind,
            "date": "2019-10-02",
            "hours": hours,
            "remote": False,
            "rate_eur": rate,
            "cost_eur": cost,
        }
        self.send("planning", "consultation_logged", plan_id, payload)
        self.send("planning", "plan_started", plan_id, {})

    def evaluate(self, plan_id: str, outcome: str) -> None:
        payload = {"risk_outcomes": {}, "outcome": outcome}
        self.send("planning", "plan_evaluated", plan_id, payload)

    def close(self, plan_id: str, outcome: str) -> None:
        payload = {"outcome": outcome, "cause": "evaluated"}
        self.send("planning", "plan_closed", plan_id, payload)

    # -- provisioning ----------------------------------------------------------------------
    def provision(
        self, plan_id: str, school: str, semester: str, kind: str, planned: str
    ) -> dict[str, str]:
        ids = {"provision_id": str(uuid.uuid4()), "plan_id": plan_id, "measure_id": "m"}
        payload = {**ids, "status": "requested", "school_id": school, "semester": semester}
        self.provisioning(
            "provision_requested", ids, {**payload, "kind": kind, "planned_eur": planned}
        )
        return ids

    def provisioning(self, event_type: str, ids: dict[str, str], payload: dict[str, Any]) -> None:
        self.send("provisioning", event_type, ids["provision_id"], {**ids, **payload})

    def budget(self, school: str, semester: str, event_type: str, amount: str) -> None:
        payload: dict[str, Any] = {"school_id": school, "semester": semester}
        if event_type == "budget_set":
            payload.update(amount_eur=amount, previous_eur="0.00")
        elif event_type != "budget_opened":
            payload.update(provision_id=str(uuid.uuid4()), amount_eur=amount)
        self.send("provisioning", event_type, str(uuid.uuid4()), payload)


@dataclass
class Pupil:
    """What the test sent about one pupil, to compute the expected figures from."""

    school: str
    grade: int
    gender: str
    vocational: bool = False
    born: date = date(2008, 4, 1)  # what identification knows and reporting never sees
    pupil_id: str = ""
    open_groups: set[str] = field(default_factory=set)  # groups of signs open in SEM1
    plans: dict[str, dict[str, Any]] = field(default_factory=dict)  # plan id -> facts


@dataclass
class Scenario:
    feed: Feed
    pupils: dict[str, Pupil]

    def supported(self, semesters: tuple[str, ...], schools: set[str] | None = None) -> set[str]:
        return {
            name
            for name, p in self.pupils.items()
            for plan in p.plans.values()
            if plan["semester"] in semesters
            and plan["supported"]
            and (schools is None or plan["school"] in schools)
        }


def environment(stores: Stores) -> dict[str, str]:
    environ = {**os.environ, **stores.env(["reporting"])}
    return store_env("reporting", environ["PUMPURS_DATA_DIR"], environ)


@pytest.fixture
def app(stores: Stores) -> Iterator[ReportingApplication]:
    application = ReportingApplication(environment(stores))
    yield application
    application.close()


@pytest.fixture
def scenario(app: ReportingApplication) -> Scenario:
    """Six pupils in three schools (two of Daugavpils, one vocational school in Riga):
    plans supported, drafted only and deactivated; a consultation; material support
    delivered in part and cancelled; outcomes; a continuation into semester II."""
    f = Feed(app)
    f.school(TECH, "riga", "vocational")
    pupils = {
        "anna": Pupil(TEN, 5, "F"),
        "boris": Pupil(TEN, 8, "M", born=date(1990, 5, 1)),  # an adult learner: 29 on entry
        "c": Pupil(ELEVEN, 2, "F"),
        "d": Pupil(TECH, 2, "M", vocational=True),
        "e": Pupil(TEN, 11, "F"),
        # 24 on entry in semester I, 25 when her semester II plan was approved
        "f": Pupil(TECH, 3, "F", vocational=True, born=date(1995, 1, 15)),
    }
    for p in pupils.values():
        p.pupil_id = f.pupil(p.school, p.grade, p.gender)
    a, b, c, d, e, g = (pupils[n] for n in ("anna", "boris", "c", "d", "e", "f"))

    def plan(p: Pupil, semester: str, supported: bool, previous: str | None = None) -> str:
        plan_id = f.plan(p.pupil_id, p.school, semester, previous)
        p.plans[plan_id] = {"semester": semester, "supported": supported, "school": p.school}
        if supported:
            on = ON if semester == SEM1 else SEM2_APPROVED
            f.approve(plan_id, p.pupil_id, p.school, semester, on)
        return plan_id

    f.sign(a.pupil_id, "learning.absences", "2019-10-01")
    a.open_groups = {"learning"}
    anna = plan(a, SEM1, True)
    f.consult(anna, "psychologist", "2.00", "20.00")
    f.evaluate(anna, "continues_learning")
    f.close(anna, "continues_learning")

    f.sign(b.pupil_id, "economic.low_income", "2019-09-20")
    f.sign(b.pupil_id, "family.crisis", "2019-11-02")
    b.open_groups = {"economic", "family"}
    boris = plan(b, SEM1, True)
    meals = f.provision(boris, TEN, SEM1, "meals", "100.00")
    f.provisioning("provision_committed", meals, {"status": "requested", "amount_eur": "100.00"})
    f.provisioning("provision_ordered", meals, {"status": "ordered", "amount_eur": "100.00"})
    delivered = {"delivery_id": "d1", "amount_eur": "60.00", "delivered_on": "2019-10-20"}
    f.provisioning("provision_delivered", meals, {"status": "partially_delivered", **delivered})
    f.evaluate(boris, "left_education")

    f.sign(c.pupil_id, "learning.gaps", "2019-12-01")
    c.open_groups = {"learning"}
    plan(c, SEM1, False)  # a draft: not support

    f.sign(d.pupil_id, "social_health.health", "2019-09-15")
    f.resolve(d.pupil_id, "social_health.health", datetime(2019, 10, 15, tzinfo=UTC))
    d.open_groups = {"social_health"}
    deleted = plan(d, SEM1, True)
    f.send("planning", "plan_deactivated", deleted, {})
    d.plans[deleted]["supported"] = False  # deactivated: deleted, not support

    f.sign(e.pupil_id, "learning.low_motivation", "2019-03-01")
    f.resolve(e.pupil_id, "learning.low_motivation", datetime(2019, 8, 1, tzinfo=UTC))

    f.sign(g.pupil_id, "economic.paid_work", "2019-11-01")
    g.open_groups = {"economic"}
    first = plan(g, SEM1, True)
    fares = f.provision(first, TECH, SEM1, "public_transport", "50.00")
    f.provisioning("provision_committed", fares, {"status": "requested", "amount_eur": "50.00"})
    f.provisioning("provision_cancelled", fares, {"status": "cancelled", "cause": "cancelled"})
    f.provisioning(
        "provision_released",
        fares,
        {"status": "cancelled", "amount_eur": "50.00", "cause": "cancelled"},
    )
    f.evaluate(first, "continues_learning")
    f.send("planning", "plan_continued", first, {"next_plan_id": "x", "semester": SEM2})
    second = plan(g, SEM2, True, previous=first)
    f.close(second, "transferred")
    return Scenario(f, pupils)


def age(p: Pupil, day: date) -> int:
    return day.year - p.born.year - ((day.month, day.day) < (p.born.month, p.born.day))


class Identification:
    """Answers age enquiries as identification does, from the birth dates the test chose;
    or fails as an unreachable identification would."""

    def __init__(self, scenario: Scenario, erased: tuple[str, ...] = ()) -> None:
        self.born = {p.pupil_id: p.born for p in scenario.pupils.values()}
        self.erased = {scenario.pupils[name].pupil_id for name in erased}
        self.asked: list[dict[str, str]] = []
        self.reachable = True

    def __call__(self, enquiries: list[dict[str, str]]) -> list[dict[str, str]]:
        if not self.reachable:
            raise TimeoutError("identification did not answer")
        self.asked += enquiries
        return [
            {**e, "band": self.band(e["pupil_id"], date.fromisoformat(e["on"]))} for e in enquiries
        ]

    def band(self, pupil_id: str, day: date) -> str:
        born = self.born.get(pupil_id)
        if born is None or pupil_id in self.erased:
            return "unknown"
        years = day.year - born.year - ((day.month, day.day) < (born.month, born.day))
        return "below_25" if years < 25 else "25_or_over"


def answer_every_enquiry(app: ReportingApplication, scenario: Scenario, **kwargs: Any) -> int:
    return app.ask_ages(Identification(scenario, **kwargs))


def report(app: ReportingApplication, user: Principal = AUDITOR, **kwargs: Any) -> dict[str, Any]:
    period = kwargs.pop("period", None) or Period.semester(SEM1)
    return app.esf_report(ReportRequest(period, **kwargs), user)


# -- the indicators ------------------------------------------------------------------------


def test_every_indicator_of_a_semester_matches_what_was_sent(
    app: ReportingApplication, scenario: Scenario
) -> None:
    pupils = scenario.pupils
    supported = [pupils[n] for n in sorted(scenario.supported((SEM1,)))]
    at_risk = [p for p in pupils.values() if p.open_groups]
    i = report(app)["indicators"]

    assert i["pupils_supported"]["total"] == len(supported) == 3
    assert i["pupils_supported"]["by_gender"] == {
        g: sum(1 for p in supported if p.gender == g) for g in ("F", "M")
    }
    isced = {"1": 0, "2": 0, "3": 0}
    bands = {"1-4": 0, "5-6": 0, "7-9": 0, "10-12": 0, "vocational": 0}
    for p in supported:
        isced["3" if p.vocational or p.grade >= 10 else "2" if p.grade >= 7 else "1"] += 1
        band = "vocational" if p.vocational else {5: "5-6", 8: "7-9"}.get(p.grade, "?")
        bands[band] += 1
    assert i["pupils_supported"]["by_isced"] == isced
    assert i["pupils_supported"]["by_grade_band"] == bands
    # No age band asked of identification is answered yet: every age is unknown, and says so.
    assert i["pupils_supported"]["age_unknown"] == len(supported)
    assert i["pupils_supported"]["below_25"] == i["pupils_supported"]["age_25_or_over"] == 0
    answer_every_enquiry(app, scenario)
    ages = report(app)["indicators"]["pupils_supported"]
    assert ages["below_25"] == sum(1 for p in supported if age(p, ON.date()) < 25) == 2
    assert ages["age_25_or_over"] == 1 and ages["age_unknown"] == 0
    assert ages["below_25_by_gender"] == {
        g: sum(1 for p in supported if p.gender == g and age(p, ON.date()) < 25) for g in "FM"
    }
    assert i["pupils_supported"]["by_school"] == {TEN: 2, TECH: 1}
    assert i["institutions_supported"] == len({p.school for p in supported}) == 2

    assert i["pupils_at_risk"]["total"] == len(at_risk) == 5
    assert i["pupils_at_risk"]["by_group"] == {
        g: sum(1 for p in at_risk if g in p.open_groups)
        for g in ("learning", "economic", "family", "social_health")
    }

    statuses = i["plans_by_status"]
    assert (statuses["closed"], statuses["evaluated"], statuses["draft"]) == (1, 2, 1)
    assert statuses["inactive"] == 1 and sum(statuses.values()) == 5
    assert i["plans_continued"] == 0

    assert i["consultation_hours"]["by_kind"]["psychologist"] == "2.00"
    assert i["consultation_hours"]["total"] == "2.00"
    assert i["consultation_hours"]["cost_eur"] == "40.00"
    material = i["material_eur"]
    # The cancelled fares count nothing planned: nothing of them was delivered.
    assert material["planned"]["meals"] == "100.00" and material["planned"]["total"] == "100.00"
    assert material["planned"]["public_transport"] == "0.00"
    assert material["committed"]["total"] == "40.00"
    assert material["delivered"] == {**material["delivered"], "meals": "60.00", "total": "60.00"}
    assert i["total_cost_eur"] == "100.00"
    assert i["result"] == {"continued": 2, "left": 1, "share": 0.6667}


def test_a_school_year_is_its_two_semesters(app: ReportingApplication, scenario: Scenario) -> None:
    year = report(app, period=Period.school_year("2019-2020"))
    assert year["period"] == {"school_year": "2019-2020", "semesters": [SEM1, SEM2]}
    i = year["indicators"]
    assert i["pupils_supported"]["total"] == len(scenario.supported((SEM1, SEM2))) == 3
    assert i["plans_continued"] == 1
    assert i["plans_by_status"]["closed"] == 2
    # f's latest outcome is semester II's: transferred, which still counts as continued.
    assert i["result"] == {"continued": 2, "left": 1, "share": 0.6667}
    second = report(app, period=Period.semester(SEM2))["indicators"]
    assert second["pupils_supported"]["total"] == 1 and second["plans_continued"] == 1
    assert second["pupils_at_risk"]["total"] == 4  # b, c and f still open; d resolved


def test_scopes_narrow_every_figure(app: ReportingApplication, scenario: Scenario) -> None:
    daugavpils = report(app, municipality="daugavpils")
    assert daugavpils["scope"] == {
        "level": "municipality",
        "municipality": "daugavpils",
        "school_id": None,
    }
    i = daugavpils["indicators"]
    expected = scenario.supported((SEM1,), {TEN, ELEVEN})
    assert i["pupils_supported"]["total"] == len(expected) == 2
    assert i["pupils_at_risk"]["total"] == 3
    assert i["material_eur"]["planned"]["total"] == "100.00"
    tech = report(app, school_id=TECH)["indicators"]
    assert tech["pupils_supported"]["by_isced"] == {"1": 0, "2": 0, "3": 1}
    assert tech["institutions_supported"] == 1 and tech["result"]["left"] == 0
    with pytest.raises(SchoolNotFoundError):
        report(app, school_id="no-such-school")
    with pytest.raises(MunicipalityNotFoundError):
        report(app, municipality="atlantis")


def test_each_caller_reads_only_their_own_tenant(
    app: ReportingApplication, scenario: Scenario
) -> None:
    coordinator = Principal("maris", "municipal_coordinator", municipality="daugavpils")
    own = report(app, coordinator)
    assert own["scope"]["municipality"] == "daugavpils"
    assert own["indicators"]["pupils_supported"]["total"] == 2
    for scope in ({"municipality": "riga"}, {"school_id": TECH}):
        with pytest.raises(ForbiddenError):
            report(app, coordinator, **scope)
    director = Principal("dace", "director", school=TEN)
    assert report(app, director)["scope"]["school_id"] == TEN
    for scope in ({"school_id": ELEVEN}, {"municipality": "daugavpils"}):
        with pytest.raises(ForbiddenError):
            report(app, director, **scope)
    with pytest.raises(ForbiddenError):
        report(app, Principal("olga", "operator"))
    assert report(app, Principal("ilze", "national_coordinator"), school_id=TECH)


# -- explain -------------------------------------------------------------------------------


def test_explain_lists_the_ids_behind_a_figure(
    app: ReportingApplication, scenario: Scenario
) -> None:
    p = scenario.pupils

    def explained(indicator: str) -> dict[str, Any]:
        answer = report(app, explain=indicator)
        assert "indicators" not in answer
        return dict(answer["explain"])

    supported = explained("pupils_supported")
    assert supported["value"]["total"] == len(supported["pupil_ids"]) == 3
    assert set(supported["pupil_ids"]) == {p[n].pupil_id for n in ("anna", "boris", "f")}
    women = explained("pupils_supported.by_gender.F")
    assert women["value"] == 2 and set(women["pupil_ids"]) == {p["anna"].pupil_id, p["f"].pupil_id}
    vocational = explained("pupils_supported.by_isced.3")
    assert vocational["pupil_ids"] == [p["f"].pupil_id]
    economic = explained("pupils_at_risk.by_group.economic")
    assert set(economic["pupil_ids"]) == {p["boris"].pupil_id, p["f"].pupil_id}
    left = explained("result.left")
    assert left["pupil_ids"] == [p["boris"].pupil_id]
    assert left["plan_ids"] == list(p["boris"].plans)
    delivered = explained("material_eur.delivered.meals")
    assert delivered["value"] == "60.00" and delivered["plan_ids"] == list(p["boris"].plans)
    schools = explained("institutions_supported")
    assert schools["value"] == len(schools["school_ids"]) == 2
    drafts = explained("plans_by_status.draft")
    assert drafts["plan_ids"] == list(p["c"].plans)
    with pytest.raises(UnknownIndicatorError):
        report(app, explain="pupils_supported.by_shoe_size")


# -- as_of, rebuild and the journal ---------------------------------------------------------


def test_a_report_as_of_its_time_is_the_same_report_later(
    app: ReportingApplication, scenario: Scenario
) -> None:
    earlier = report(app)
    f = scenario.feed
    late = f.pupil(TEN, 9, "M")
    f.sign(late, "learning.behaviour", "2019-10-05")
    f.approve(f.plan(late, TEN, SEM1), late, TEN, SEM1)
    assert report(app)["indicators"] != earlier["indicators"]
    as_of = datetime.fromisoformat(earlier["as_of"].replace("Z", "+00:00"))
    assert report(app, as_of=as_of) == earlier
    before_anything = report(app, as_of=datetime(2000, 1, 1, tzinfo=UTC))
    assert before_anything["indicators"]["pupils_supported"]["total"] == 0


def test_rebuild_gives_the_same_digest_and_repairs_a_damaged_read_model(
    app: ReportingApplication, scenario: Scenario
) -> None:
    before = app.digest()
    rebuilt = app.rebuild()
    assert rebuilt is not None and rebuilt.digest == before
    assert rebuilt.entries == app.journal.count(app.query) == sum(scenario.feed.last.values())
    with app.transaction() as sql:
        anna = scenario.pupils["anna"].pupil_id
        sql.execute(f"DELETE FROM {app.models['years']} WHERE pupil_id = ?", (anna,))
    assert app.digest() != before
    assert report(app)["indicators"]["result"]["continued"] == 1
    assert app.rebuild().digest == before  # type: ignore[union-attr]
    assert report(app)["indicators"]["result"]["continued"] == 2


@pytest.fixture
def held(app: ReportingApplication, monkeypatch: pytest.MonkeyPatch) -> list[IncomingEvent]:
    """What the feed sends, held back instead of applied (request it before ``scenario``)."""
    events: list[IncomingEvent] = []
    monkeypatch.setattr(app, "receive", events.append)
    return events


def test_a_backlog_applied_in_batches_gives_the_rows_a_rebuild_gives(
    app: ReportingApplication, held: list[IncomingEvent], scenario: Scenario
) -> None:
    """As the inbox applies a backlog: the consecutive events of a source together, up to
    twenty; among them a sign recorded and resolved, and counters several plans change."""
    for _, group in itertools.groupby(held, key=lambda event: event.envelope.source):
        run = list(group)
        for start in range(0, len(run), 20):
            app.receive_all(run[start : start + 20])
    assert app.journal.count(app.query) == len(held) == sum(scenario.feed.last.values())
    batched = app.digest()
    assert report(app)["indicators"]["result"]["continued"] == 2
    rebuilt = app.rebuild()
    assert rebuilt is not None and rebuilt.digest == batched


DROPPED_OUT_ON = "2019-11-15"


def before_departure(f: Feed) -> tuple[str, str, str]:
    """A pupil with two open signs and a supported semester I plan, and another pupil with
    an open sign: the one who will leave, the one who stays, and the first one's plan."""
    gone, stays = f.pupil(TEN, 8, "M"), f.pupil(TEN, 7, "F")
    f.sign(gone, "learning.absences", "2019-10-01")
    f.sign(gone, "economic.paid_work", "2019-10-20")
    f.sign(stays, "learning.gaps", "2019-10-01")
    plan_id = f.plan(gone, TEN, SEM1)
    f.approve(plan_id, gone, TEN, SEM1)
    return gone, stays, plan_id


def depart(f: Feed, pupil_id: str, plan_id: str) -> None:
    """The pupil drops out on 2019-11-15: planning closes the plan; identification leaves
    the pupil's signs as they were, and resolves one of them later."""
    departure = {"reason": "dropped_out", "on": DROPPED_OUT_ON, "to_school_id": None}
    on = datetime(2019, 11, 18, tzinfo=UTC)
    f.send("identification", "pupil_departed", pupil_id, departure, on)
    closed = {"outcome": "left_education", "cause": "pupil_departed"}
    f.send("planning", "plan_closed", plan_id, closed, on)
    f.resolve(pupil_id, "learning.absences", datetime(2020, 3, 2, tzinfo=UTC))


def departure_story(f: Feed) -> tuple[str, str]:
    gone, stays, plan_id = before_departure(f)
    depart(f, gone, plan_id)
    return gone, stays


def risk_figures(app: ReportingApplication, period: Period, **kwargs: Any) -> dict[str, Any]:
    figures: dict[str, Any] = report(app, period=period, **kwargs)["indicators"]["pupils_at_risk"]
    return figures


def test_a_departed_pupil_is_at_risk_up_to_the_departure_and_not_after(
    app: ReportingApplication,
) -> None:
    f = Feed(app)
    gone, stays, plan_id = before_departure(f)
    earlier = report(app, period=Period.semester(SEM2))
    assert earlier["indicators"]["pupils_at_risk"]["total"] == 2  # as known then
    depart(f, gone, plan_id)

    first = risk_figures(app, Period.semester(SEM1))  # left in it: at risk until then
    assert first == {
        "total": 2,
        "by_group": {"learning": 2, "economic": 1, "family": 0, "social_health": 0},
    }
    second = risk_figures(app, Period.semester(SEM2))
    assert second == {
        "total": 1,
        "by_group": {"learning": 1, "economic": 0, "family": 0, "social_health": 0},
    }
    assert risk_figures(app, Period.school_year("2019-2020"))["total"] == 2
    assert risk_figures(app, Period.school_year("2021-2022"))["total"] == 1
    explained = report(app, period=Period.semester(SEM2), explain="pupils_at_risk")["explain"]
    assert explained["pupil_ids"] == [stays]
    assert app.programme_figures()["pupils_at_risk"] == 1

    # Support is defined by plans, not signs: the departure changes none of it.
    supported = report(app)["indicators"]
    assert supported["pupils_supported"]["total"] == supported["institutions_supported"] == 1
    assert supported["result"] == {"continued": 0, "left": 1, "share": 0.0}

    # as_of replays and a rebuild reach what the live fold reached.
    as_of = datetime.fromisoformat(earlier["as_of"].replace("Z", "+00:00"))
    assert report(app, period=Period.semester(SEM2), as_of=as_of) == earlier
    for period in (Period.semester(SEM1), Period.semester(SEM2), Period.school_year("2021-2022")):
        live = report(app, period=period)
        now = datetime.fromisoformat(live["as_of"].replace("Z", "+00:00"))
        assert report(app, period=period, as_of=now) == live
    digest = app.digest()
    rebuilt = app.rebuild()
    assert rebuilt is not None and rebuilt.digest == digest


def test_a_sign_observed_after_a_back_dated_departure_still_counts_where_it_was_seen(
    app: ReportingApplication,
) -> None:
    """A teacher records a sign on 10 January; the office records on 20 January that the
    pupil left on 20 December. The sign was seen in semester II: the pupil was at risk
    then, and in the school year, not in no period at all."""
    f = Feed(app)
    pupil = f.pupil(TEN, 8, "M")
    f.sign(pupil, "learning.absences", "2020-01-10")
    departure = {"reason": "dropped_out", "on": "2019-12-20", "to_school_id": None}
    f.send("identification", "pupil_departed", pupil, departure, datetime(2020, 1, 20, tzinfo=UTC))
    assert risk_figures(app, Period.semester(SEM1))["total"] == 0
    assert risk_figures(app, Period.semester(SEM2))["total"] == 1
    assert risk_figures(app, Period.school_year("2019-2020"))["total"] == 1
    assert risk_figures(app, Period.school_year("2020-2021"))["total"] == 0
    digest = app.digest()
    rebuilt = app.rebuild()
    assert rebuilt is not None and rebuilt.digest == digest


def test_a_departure_in_a_batch_gives_the_rows_a_rebuild_gives(
    app: ReportingApplication, held: list[IncomingEvent]
) -> None:
    """The signs, the departure and a later resolution reach reporting in one batch: the
    departure closes the signs recorded earlier in the same batch."""
    departure_story(Feed(app))
    for source in ("identification", "planning"):  # each inbox its own events, in order
        app.receive_all([event for event in held if event.envelope.source == source])
    assert risk_figures(app, Period.semester(SEM2))["total"] == 1
    assert app.programme_figures()["pupils_at_risk"] == 1
    batched = app.digest()
    rebuilt = app.rebuild()
    assert rebuilt is not None and rebuilt.digest == batched


def test_read_models_that_kept_departed_pupils_at_risk_are_rebuilt(stores: Stores) -> None:
    """Read models of version 4 left a departed pupil's signs open: a deployment that
    has them rebuilds them when it starts."""
    env = environment(stores)
    first = ReportingApplication(env)
    gone, _ = departure_story(Feed(first))
    digest = first.digest()
    with first.transaction() as sql:  # the rows version 4 left
        sql.execute(
            f"UPDATE {first.models['signs']} SET resolved_on = NULL "
            "WHERE pupil_id = ? AND resolved_on = ?",
            (gone, DROPPED_OUT_ON),
        )
        sql.execute(f"UPDATE {first.models.meta} SET value = '4' WHERE name = 'version'")
    assert first.programme_figures()["pupils_at_risk"] == 2
    first.close()
    again = ReportingApplication(env)
    try:
        assert again.digest() == digest
        assert again.programme_figures()["pupils_at_risk"] == 1
    finally:
        again.close()


# -- a pupil who left school and was re-enrolled ------------------------------------------

MOVED_ON = "2019-11-15"
LEFT_TEN = datetime(2019, 11, 15, 14, tzinfo=UTC)
RE_ENROLLED = datetime(2019, 11, 18, 9, tzinfo=UTC)
NEW_PLAN_APPROVED = datetime(2019, 11, 25, 9, tzinfo=UTC)
OUTCOME_OF_DEPARTURE = {"transferred": "transferred", "dropped_out": "left_education"}


@dataclass(frozen=True)
class Move:
    pupil_id: str
    old_plan: str  # at TEN, closed on the departure
    new_plan: str  # at TECH, evaluated: continues_learning


def moved_within_a_semester(f: Feed, reason: str, old_sorts_last: bool = True) -> Move:
    """A boy in grade 8 at TEN (general, Daugavpils), with a sign and a semester I plan
    supported there, leaves on 2019-11-15 (``reason``: planning closes the plan on the
    departure); identification re-enrols him at TECH (vocational, Riga) in grade 2, where
    a new sign is recorded and a new semester I plan is approved, evaluated
    (continues_learning) and closed. The plan ids are chosen so that the old plan's
    sorts after the new one's (``old_sorts_last``) or before."""
    f.school(TECH, "riga", "vocational")
    high, low = "f" + str(uuid.uuid4())[1:], "0" + str(uuid.uuid4())[1:]
    old_id, new_id = (high, low) if old_sorts_last else (low, high)
    pupil_id = f.pupil(TEN, 8, "M")
    f.sign(pupil_id, "learning.absences", "2019-10-01")
    f.approve(f.plan(pupil_id, TEN, SEM1, plan_id=old_id), pupil_id, TEN, SEM1)
    to_school = TECH if reason == "transferred" else None
    departure = {"reason": reason, "on": MOVED_ON, "to_school_id": to_school}
    f.send("identification", "pupil_departed", pupil_id, departure, LEFT_TEN)
    closed = {"outcome": OUTCOME_OF_DEPARTURE[reason], "cause": "pupil_departed"}
    f.send("planning", "plan_closed", old_id, closed, LEFT_TEN)
    enrolment = {"school_id": TECH, "grade": 2, "gender": "M"}
    f.send("identification", "pupil_re_enrolled", pupil_id, enrolment, RE_ENROLLED)
    f.sign(pupil_id, "economic.paid_work", "2019-11-20")
    f.plan(pupil_id, TECH, SEM1, plan_id=new_id)
    f.approve(new_id, pupil_id, TECH, SEM1, NEW_PLAN_APPROVED)
    f.evaluate(new_id, "continues_learning")
    f.close(new_id, "continues_learning")
    return Move(pupil_id, old_id, new_id)


def explained(app: ReportingApplication, indicator: str, **kwargs: Any) -> dict[str, Any]:
    answer: dict[str, Any] = report(app, explain=indicator, **kwargs)["explain"]
    return answer


@pytest.mark.parametrize("old_sorts_last", [True, False], ids=["old-id-last", "old-id-first"])
@pytest.mark.parametrize("reason", ["transferred", "dropped_out"])
def test_a_pupil_who_moved_school_within_a_semester_is_one_participant_with_the_last_outcome(
    app: ReportingApplication, reason: str, old_sorts_last: bool
) -> None:
    move = moved_within_a_semester(Feed(app), reason, old_sorts_last)
    both = sorted([move.old_plan, move.new_plan])

    for period in (Period.semester(SEM1), Period.school_year("2019-2020")):
        i = report(app, period=period)["indicators"]
        supported = i["pupils_supported"]
        assert supported["total"] == 1  # one participant, not one per school
        assert supported["by_school"] == {TECH: 1, TEN: 1}
        assert i["institutions_supported"] == 2
        # His outcome is the new school's plan's, not the one the departure closed.
        assert i["result"] == {"continued": 1, "left": 0, "share": 1.0}
        assert i["plans_by_status"]["closed"] == 2
        continued = explained(app, "result.continued", period=period)
        assert continued["pupil_ids"] == [move.pupil_id]
        assert continued["plan_ids"] == [move.new_plan]
        schools = explained(app, "institutions_supported", period=period)
        assert schools["school_ids"] == sorted([TECH, TEN]) and schools["plan_ids"] == both
        pupils = explained(app, "pupils_supported", period=period)
        assert pupils["pupil_ids"] == [move.pupil_id] and pupils["plan_ids"] == both

    # Each school's (and municipality's) report has the pupil it supported, once.
    scopes: list[tuple[dict[str, Any], str]] = [
        ({"school_id": TEN}, move.old_plan),
        ({"municipality": "daugavpils"}, move.old_plan),
        ({"school_id": TECH}, move.new_plan),
        ({"municipality": "riga"}, move.new_plan),
    ]
    for scope, plan_id in scopes:
        i = report(app, **scope)["indicators"]
        assert i["pupils_supported"]["total"] == i["institutions_supported"] == 1, scope
        assert sum(i["pupils_supported"]["by_school"].values()) == 1, scope
        assert i["result"]["continued"] == 1, scope
        assert explained(app, "pupils_supported", **scope)["plan_ids"] == [plan_id], scope

    digest = app.digest()
    rebuilt = app.rebuild()
    assert rebuilt is not None and rebuilt.digest == digest
    live = report(app)
    as_of = datetime.fromisoformat(live["as_of"].replace("Z", "+00:00"))
    assert report(app, as_of=as_of) == live


def test_a_sign_after_a_re_enrolment_is_placed_at_the_new_school(
    app: ReportingApplication,
) -> None:
    move = moved_within_a_semester(Feed(app), "transferred")
    nothing = {"learning": 0, "economic": 0, "family": 0, "social_health": 0}
    first, second = Period.semester(SEM1), Period.semester(SEM2)
    # At TEN until he left (the departure ended the sign), at TECH from the new sign on.
    assert risk_figures(app, first, school_id=TEN) == {
        "total": 1,
        "by_group": {**nothing, "learning": 1},
    }
    assert risk_figures(app, first, school_id=TECH) == {
        "total": 1,
        "by_group": {**nothing, "economic": 1},
    }
    assert risk_figures(app, second, school_id=TEN)["total"] == 0
    assert risk_figures(app, second, school_id=TECH)["total"] == 1
    assert risk_figures(app, second, municipality="riga")["total"] == 1
    assert risk_figures(app, second, municipality="daugavpils")["total"] == 0
    assert risk_figures(app, first)["total"] == 1  # one pupil at risk, at two schools
    at_tech = explained(app, "pupils_at_risk", period=second, school_id=TECH)
    assert at_tech["pupil_ids"] == [move.pupil_id]
    assert app.programme_figures()["pupils_at_risk"] == 1


def test_a_re_enrolled_pupil_is_counted_as_he_was_on_entry(app: ReportingApplication) -> None:
    """ESF counts a participant's education level and age on entry: the 2019/20 figures
    keep the grade 8 of his general school (and his age when his first plan there was
    approved), also after identification re-enrolled him in grade 2 of a vocational
    school and anything about him was learnt later; a year he enters after the
    re-enrolment counts him as re-enrolled."""
    f = Feed(app)
    move = moved_within_a_semester(f, "transferred")
    next_year = "2020-2021-1"
    next_plan = f.plan(move.pupil_id, TECH, next_year)
    f.approve(next_plan, move.pupil_id, TECH, next_year, datetime(2020, 10, 1, 9, tzinfo=UTC))
    born = date(1994, 10, 15)  # 24 when his first plan was approved, 25 on the second

    def identification(enquiries: list[dict[str, str]]) -> list[dict[str, str]]:
        def band(on: date) -> str:
            years = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
            return "below_25" if years < 25 else "25_or_over"

        return [{**e, "band": band(date.fromisoformat(e["on"]))} for e in enquiries]

    assert app.ask_ages(identification) == 3  # each answer refreshes each of his years

    for period in (Period.semester(SEM1), Period.school_year("2019-2020")):
        entered = report(app, period=period)["indicators"]["pupils_supported"]
        assert entered["by_isced"] == {"1": 0, "2": 1, "3": 0}
        assert entered["by_grade_band"]["7-9"] == 1 and entered["by_grade_band"]["vocational"] == 0
        assert (entered["below_25"], entered["age_25_or_over"]) == (1, 0)
    later = report(app, period=Period.school_year("2020-2021"))["indicators"]["pupils_supported"]
    assert later["by_isced"] == {"1": 0, "2": 0, "3": 1}
    assert later["by_grade_band"]["vocational"] == 1
    assert (later["below_25"], later["age_25_or_over"]) == (0, 1)
    digest = app.digest()
    rebuilt = app.rebuild()
    assert rebuilt is not None and rebuilt.digest == digest


def test_a_move_within_a_semester_in_batches_gives_the_rows_a_rebuild_gives(
    app: ReportingApplication, held: list[IncomingEvent]
) -> None:
    """The whole story reaches reporting in one batch a source, identification's first:
    the batches and a rebuild of the journal reach the same rows and figures."""
    move = moved_within_a_semester(Feed(app), "dropped_out")
    for source in ("identification", "planning"):  # each inbox its own events, in order
        app.receive_all([event for event in held if event.envelope.source == source])
    batched = app.digest()
    rebuilt = app.rebuild()
    assert rebuilt is not None and rebuilt.digest == batched
    i = report(app)["indicators"]
    assert i["pupils_supported"]["total"] == 1 and i["institutions_supported"] == 2
    assert i["result"] == {"continued": 1, "left": 0, "share": 1.0}
    assert explained(app, "result")["plan_ids"] == [move.new_plan]
    assert risk_figures(app, Period.semester(SEM2), school_id=TECH)["total"] == 1


def test_read_models_of_version_5_are_rebuilt_with_the_pupils_last_plan(stores: Stores) -> None:
    """Version 5 knew no re-enrolment and took, of two plans in a semester, the one whose
    id sorted last: a deployment that has such rows rebuilds them when it starts."""
    env = environment(stores)
    first = ReportingApplication(env)
    move = moved_within_a_semester(Feed(first), "dropped_out")
    digest = first.digest()
    with first.transaction() as sql:  # the rows version 5 left
        sql.execute(
            f"UPDATE {first.models['years']} SET s1_school = ?, s1_plan = ?, s1_outcome = ? "
            "WHERE pupil_id = ?",
            (TEN, move.old_plan, "left_education", move.pupil_id),
        )
        sql.execute(f"UPDATE {first.models.meta} SET value = '5' WHERE name = 'version'")
    assert report(first)["indicators"]["result"]["left"] == 1
    first.close()
    again = ReportingApplication(env)
    try:
        assert again.digest() == digest
        assert report(again)["indicators"]["result"] == {"continued": 1, "left": 0, "share": 1.0}
    finally:
        again.close()


def test_a_duplicate_changes_nothing(app: ReportingApplication, scenario: Scenario) -> None:
    f = scenario.feed
    event = f.send(
        "identification",
        "pupil_registered",
        str(uuid.uuid4()),
        {"school_id": TEN, "grade": 3, "gender": "F"},
    )
    entries, digest = app.journal.count(app.query), app.digest()
    with pytest.raises(IntegrityError):
        app.receive(event)
    assert (app.journal.count(app.query), app.digest()) == (entries, digest)


def test_each_entry_is_stamped_in_utc_after_the_one_before(
    app: ReportingApplication, scenario: Scenario
) -> None:
    """What as_of replays rely on: the entries received by a time are a prefix of the journal."""
    started = datetime.now(UTC) - timedelta(minutes=1)
    rows = app.query(f"SELECT received_at FROM {app.journal.table} ORDER BY seq")
    stamps = [row["received_at"] for row in rows]
    assert len(stamps) == sum(scenario.feed.last.values())
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", s) for s in stamps)
    assert all(earlier < later for earlier, later in itertools.pairwise(stamps))
    received = [datetime.fromisoformat(s) for s in (stamps[0], stamps[-1])]
    assert started < received[0] and received[-1] < datetime.now(UTC) + timedelta(seconds=1)


def test_the_journal_refuses_changes(app: ReportingApplication, scenario: Scenario) -> None:
    table = app.journal.table
    for statement in (f"UPDATE {table} SET actor = 'mallory'", f"DELETE FROM {table}"):
        with pytest.raises(Exception, match="immutable"), app.transaction() as sql:
            sql.execute(statement)
    assert app.journal.count(app.query) == sum(scenario.feed.last.values())


def test_the_read_models_are_rebuilt_when_their_version_changes(stores: Stores) -> None:
    env = environment(stores)
    first = ReportingApplication(env)
    Feed(first).pupil(TEN, 7, "F")
    digest = first.digest()
    with first.transaction() as sql:
        sql.execute(f"UPDATE {first.models.meta} SET value = '0' WHERE name = 'version'")
        sql.execute(f"DELETE FROM {first.models['pupils']}")
    first.close()
    again = ReportingApplication(env)
    assert again.digest() == digest
    again.close()


# -- exports, parameters and gauges ------------------------------------------------------------


def test_the_xlsx_holds_the_json_figures(app: ReportingApplication, scenario: Scenario) -> None:
    from openpyxl import load_workbook

    document = report(app, period=Period.school_year("2019-2020"))
    book = load_workbook(io.BytesIO(to_xlsx(document)))
    assert book.sheetnames == ["report", *(b.name for b in BREAKDOWNS)]
    i = document["indicators"]
    sheets = {
        name: list(book[name].iter_rows(min_row=2, values_only=True)) for name in book.sheetnames
    }

    def same(cell: Any, value: Any) -> bool:
        if isinstance(value, str) and isinstance(cell, int | float):
            return Decimal(str(cell)) == Decimal(value)
        return bool(cell == value)

    summary = dict(sheets["summary"])
    assert same(summary["pupils_supported.total"], i["pupils_supported"]["total"])
    assert same(summary["total_cost_eur"], i["total_cost_eur"])
    assert same(summary["result.share"], i["result"]["share"])
    assert dict(sheets["at_risk_by_group"]) == i["pupils_at_risk"]["by_group"]
    assert dict(sheets["supported_by_school"]) == i["pupils_supported"]["by_school"]
    assert dict(sheets["plans_by_status"]) == i["plans_by_status"]
    isced = {row[0]: row[1:] for row in sheets["supported_by_isced"]}
    for level, n in i["pupils_supported"]["by_isced"].items():
        gender = i["pupils_supported"]["by_isced_gender"][level]
        assert isced[level] == (n, gender["F"], gender["M"])
    material = {row[0]: row[1:] for row in sheets["material_eur"]}
    for kind, row in material.items():
        amounts = (i["material_eur"][a][kind] for a in ("planned", "committed", "delivered"))
        assert all(same(cell, v) for cell, v in zip(row, amounts, strict=True))
    hours = dict(sheets["consultation_hours"])
    assert same(hours["psychologist"], "2.00") and same(hours["total"], "2.00")
    about = dict(sheets["report"])
    assert about["school_year"] == "2019-2020" and about["as_of"] == document["as_of"]


def test_the_csv_has_a_section_per_breakdown(app: ReportingApplication, scenario: Scenario) -> None:
    text = to_csv(report(app))
    sections = [line[2:] for line in text.splitlines() if line.startswith("# ")]
    assert sections == ["report", *(b.name for b in BREAKDOWNS)]
    assert f"\n{TEN},2\n" in text and "\nmeals,100.00,40.00,60.00\n" in text


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({}, "semester"),
        ({"semester": SEM1, "school_year": "2019-2020"}, "semester"),
        ({"semester": "2019-2021-1"}, "semester"),
        ({"school_year": "2019"}, "school_year"),
        ({"semester": SEM1, "format": "pdf"}, "format"),
        ({"semester": SEM1, "as_of": "yesterday"}, "as_of"),
        ({"semester": SEM1, "as_of": (datetime.now(UTC) + timedelta(days=1)).isoformat()}, "as_of"),
        ({"semester": SEM1, "explain": "result", "format": "csv"}, "format"),
        ({"semester": SEM1, "colour": "red"}, "colour"),
    ],
)
def test_invalid_parameters_are_refused_naming_the_field(query: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        EsfQuerySchema().load(query)
    assert field in raised.value.messages


@pytest.mark.parametrize("ahead", [timedelta(days=1), timedelta(minutes=5)])
def test_a_plan_as_of_a_future_time_is_refused_as_the_report_refuses_it(ahead: timedelta) -> None:
    as_of = datetime.now(UTC) + ahead  # now, not when the tests were collected
    schema = schema_instance(AsOfQuerySchema)  # as the route loads its query
    with pytest.raises(ValidationError) as refused:
        schema.load({"as_of": as_of.isoformat()})
    assert refused.value.messages == {"as_of": ["as_of is in the future"]}
    with pytest.raises(ValidationError) as report_refused:
        EsfQuerySchema().load({"semester": SEM1, "as_of": as_of.isoformat()})
    assert report_refused.value.messages == refused.value.messages
    # Everything else as before: a past time (without a zone: UTC), none, or not a time.
    assert schema.load({"as_of": "2019-10-01T12:00:00"}) == {"as_of": ON}
    assert schema.load({}) == {}
    with pytest.raises(ValidationError) as garbled:
        schema.load({"as_of": "soon"})
    assert list(garbled.value.messages) == ["as_of"]


def test_the_programme_figures_come_from_the_read_models(
    app: ReportingApplication, scenario: Scenario
) -> None:
    f = scenario.feed
    f.budget(TEN, SEM1, "budget_opened", "0.00")
    f.budget(TEN, SEM1, "budget_set", "1000.00")
    f.budget(TEN, SEM1, "budget_committed", "100.00")
    f.budget(TEN, SEM1, "budget_spent", "60.00")
    figures = app.programme_figures()
    unresolved = {"anna", "boris", "c", "f"}  # d's and e's signs were resolved
    assert figures["pupils_at_risk"] == len(unresolved)
    assert figures["plans"]["closed"] == 2 and figures["plans"]["inactive"] == 1
    assert figures["budget_eur"] == {"allocated": 1000.0, "committed": 40.0, "spent": 60.0}


def test_the_command_line_gives_the_same_report(
    app: ReportingApplication,
    scenario: Scenario,
    stores: Stores,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from shared.cli import main

    for key, value in stores.env(["reporting"]).items():
        monkeypatch.setenv(key, value)
    assert main(["report", "esf", "--semester", SEM1]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == report(app)
    replay = ["audit", "replay", "--as-of", printed["as_of"], "--semester", SEM1]
    assert main([*replay, "--explain", "result.left"]) == 0
    explained = json.loads(capsys.readouterr().out)["explain"]
    assert explained["pupil_ids"] == [scenario.pupils["boris"].pupil_id]
    assert main(["report", "esf", "--semester", "2019-2020-3"]) == 2
    assert "semester" in capsys.readouterr().err


# -- ages: asked of identification, journalled -----------------------------------------------


def waiting(app: ReportingApplication) -> set[tuple[str, str]]:
    return app.enquiries.all(app.query)


def test_an_enquiry_one_replica_is_asking_is_not_asked_by_another(
    app: ReportingApplication, scenario: Scenario, stores: Stores
) -> None:
    """Every replica's timer ticks; identification records each read of a pupil's data, so
    it must be asked once for each enquiry, not once a replica."""
    other = ReportingApplication(environment(stores))
    try:
        identification = Identification(scenario)
        meanwhile: list[int] = []

        def ask_while_the_other_ticks(enquiries: list[dict[str, str]]) -> list[dict[str, str]]:
            meanwhile.append(other.ask_ages(identification))
            return identification(enquiries)

        assert app.ask_ages(ask_while_the_other_ticks, batch=3) == 3
        assert meanwhile == [2]  # only the two the first replica had not claimed
        assert other.ask_ages(identification) == 0 and waiting(app) == set()
        asked = [(e["pupil_id"], e["on"]) for e in identification.asked]
        assert len(asked) == len(set(asked)) == 5
    finally:
        other.close()


def test_replicas_claiming_at_the_same_moment_share_the_enquiries(
    app: ReportingApplication, scenario: Scenario, stores: Stores
) -> None:
    """One replica's claim is not yet committed when another's timer ticks: the other
    takes the enquiries left, rather than none because it waited on the claimed ones."""
    other = ReportingApplication(environment(stores))
    try:
        identification = Identification(scenario)
        asked_by_other: list[int] = []
        ticking = threading.Thread(
            target=lambda: asked_by_other.append(other.ask_ages(identification, batch=3))
        )
        with app.transaction() as sql:
            claimed = app.enquiries.claim(sql, 3, datetime.now(UTC))
            ticking.start()
            time.sleep(0.3)  # the other's claim has begun; this one is not yet committed
        ticking.join(timeout=30)
        assert len(claimed) == 3 and asked_by_other == [2]
        asked = {(e["pupil_id"], e["on"]) for e in identification.asked}
        assert len(asked) == 2 and asked.isdisjoint(claimed)
        assert waiting(app) == set(claimed)  # answered by the other, all but the claimed
    finally:
        other.close()


def test_enquiries_whose_asking_failed_are_free_for_any_replica_at_once(
    app: ReportingApplication, scenario: Scenario, stores: Stores
) -> None:
    other = ReportingApplication(environment(stores))
    try:
        identification = Identification(scenario)
        identification.reachable = False
        with pytest.raises(TimeoutError):
            app.ask_ages(identification)
        identification.reachable = True
        assert other.ask_ages(identification) == 5
    finally:
        other.close()


def test_how_long_the_oldest_enquiry_waited_grows_until_identification_answers(
    app: ReportingApplication, scenario: Scenario
) -> None:
    def oldest() -> float:
        return float(app.programme_figures()["age_enquiry_oldest_seconds"])

    first = oldest()
    assert first > 0
    time.sleep(0.2)
    assert oldest() >= first + 0.2
    app.ask_ages(Identification(scenario))
    assert oldest() == 0


def test_each_supported_plan_waits_for_its_pupils_age_on_entry(
    app: ReportingApplication, scenario: Scenario
) -> None:
    p = scenario.pupils
    on_entry = {(p[n].pupil_id, ON.date().isoformat()) for n in ("anna", "boris", "d", "f")}
    # d's plan was deactivated after its approval; f's semester II plan entered later.
    assert waiting(app) == on_entry | {(p["f"].pupil_id, SEM2_APPROVED.date().isoformat())}
    assert app.programme_figures()["age_enquiries_waiting"] == 5

    identification = Identification(scenario, erased=("anna",))
    identification.reachable = False
    with pytest.raises(TimeoutError):
        app.ask_ages(identification)
    assert len(waiting(app)) == 5  # still waiting, to be asked again
    entries = app.journal.count(app.query)

    identification.reachable = True
    assert app.ask_ages(identification, batch=2) == 2  # the oldest two
    assert app.ask_ages(identification) == 3
    assert waiting(app) == set() and app.ask_ages(identification) == 0
    assert len(identification.asked) == 5  # each asked once
    assert app.journal.count(app.query) == entries + 5  # each answer an entry of the journal

    semester = report(app)["indicators"]["pupils_supported"]
    # anna was erased before identification answered: her age is unknown, and shown so.
    assert (semester["below_25"], semester["age_25_or_over"], semester["age_unknown"]) == (1, 1, 1)
    assert semester["below_25_by_gender"] == {"F": 1, "M": 0}
    second = report(app, period=Period.semester(SEM2))["indicators"]["pupils_supported"]
    assert (second["below_25"], second["age_25_or_over"]) == (0, 1)  # f was 25 by then
    year = report(app, period=Period.school_year("2019-2020"))["indicators"]["pupils_supported"]
    assert (year["below_25"], year["age_25_or_over"], year["age_unknown"]) == (1, 1, 1)

    def explained(figure: str, semester: str = SEM1) -> list[str]:
        period = Period.semester(semester)
        ids: list[str] = report(app, explain=figure, period=period)["explain"]["pupil_ids"]
        return ids

    assert explained("pupils_supported.below_25") == [p["f"].pupil_id]
    assert explained("pupils_supported.age_25_or_over") == [p["boris"].pupil_id]
    assert explained("pupils_supported.age_unknown") == [p["anna"].pupil_id]
    assert explained("pupils_supported.below_25_by_gender.F") == [p["f"].pupil_id]
    assert explained("pupils_supported.below_25", SEM2) == []


def test_an_answer_counts_as_of_when_it_was_journalled_and_survives_a_rebuild(
    app: ReportingApplication, scenario: Scenario
) -> None:
    unanswered = report(app)
    answer_every_enquiry(app, scenario)
    answered = report(app)
    assert answered["indicators"]["pupils_supported"]["below_25"] == 2
    as_of = datetime.fromisoformat(unanswered["as_of"].replace("Z", "+00:00"))
    assert report(app, as_of=as_of) == unanswered  # the answers came later
    later = datetime.fromisoformat(answered["as_of"].replace("Z", "+00:00"))
    assert report(app, as_of=later) == answered

    digest = app.digest()
    rebuilt = app.rebuild()
    assert rebuilt is not None and rebuilt.digest == digest
    assert report(app) == answered and waiting(app) == set()


def test_a_rebuild_asks_again_for_every_age_the_journal_has_no_answer_to(
    app: ReportingApplication, scenario: Scenario
) -> None:
    """As for a journal kept before ages were asked: its supported plans get enquiries."""
    identification = Identification(scenario)
    before = waiting(app)
    assert app.ask_ages(identification, batch=1) == 1
    with app.transaction() as sql:
        sql.execute(f"DELETE FROM {app.enquiries.table}")
    assert waiting(app) == set()
    app.rebuild()
    assert waiting(app) == before - {(a["pupil_id"], a["on"]) for a in identification.asked}
    assert app.ask_ages(identification) == 4
    assert report(app)["indicators"]["pupils_supported"]["age_unknown"] == 0


def test_an_answer_to_nothing_asked_is_not_journalled(
    app: ReportingApplication, scenario: Scenario
) -> None:
    entries = app.journal.count(app.query)
    stranger = {"pupil_id": str(uuid.uuid4()), "on": "2019-10-01", "band": "below_25"}

    def confused(enquiries: list[dict[str, str]]) -> list[dict[str, str]]:
        return [stranger]

    assert app.ask_ages(confused) == 0
    assert app.journal.count(app.query) == entries and len(waiting(app)) == 5


def test_a_plan_approved_after_its_semester_entered_on_its_last_day(
    app: ReportingApplication,
) -> None:
    """A school catching up approves a semester I plan in March: the pupil took part in
    semester I, so the age ESF counts is the one on that semester's last day."""
    f = Feed(app)
    pupil_id = f.pupil(TEN, 9, "M")
    plan_id = f.plan(pupil_id, TEN, SEM1, None)
    f.approve(plan_id, pupil_id, TEN, SEM1, datetime(2020, 3, 2, 10, tzinfo=UTC))
    assert waiting(app) == {(pupil_id, "2019-12-31")}
