"""Reporting fed by the real identification, planning and provisioning processes, on a real
broker and the store under test: the ESF report over HTTP in its three formats, explain,
tenancy, as_of after more events, the programme gauges, every published event journalled
exactly once, and a rebuild from the command line while the service runs."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from services.planning.application import load_rates
from shared.testing import REPO, Client, running, wait_until
from tests.integration.test_planning_service import (
    OTHER_SCHOOL,
    SCHOOL,
    SEMESTER,
    add_measure,
    command,
    draft_plan,
    known_at_risk,
    ok,
    put,
    register_at_risk,
    transfer,
)
from tests.integration.test_provisioning_flow import act, on_latest, provisions_of

ESF = "/reports/esf"


@pytest.fixture
def stack(system: Any) -> Iterator[dict[str, Any]]:
    names = ("identification", "planning", "provisioning", "reporting")
    processes = {name: system.service(name) for name in names}
    with running(*processes.values()):
        token = system.token
        teacher = token("teacher", school=SCHOOL)
        planning = {
            "teacher": teacher,
            "director": token("director", school=SCHOOL),
            "municipal": token("municipal_coordinator", municipality="daugavpils"),
            "national": token("national_coordinator"),
        }
        readers = {
            "auditor": token("auditor"),
            "teacher": teacher,
            "coordinator": planning["municipal"],
            "riga": token("municipal_coordinator", municipality="riga"),
            "operator": token("operator"),
        }
        yield {
            "system": system,
            "processes": processes,
            "identification": Client(processes["identification"].url, teacher),
            "identification@other": Client(
                processes["identification"].url, token("teacher", school=OTHER_SCHOOL)
            ),
            "identification@dpo": Client(
                processes["identification"].url, token("data_protection_officer")
            ),
            **{role: Client(processes["planning"].url, t) for role, t in planning.items()},
            "teacher@other": Client(
                processes["planning"].url, token("teacher", school=OTHER_SCHOOL)
            ),
            "director@other": Client(
                processes["planning"].url, token("director", school=OTHER_SCHOOL)
            ),
            "provisioning": Client(processes["provisioning"].url, planning["director"]),
            "budgets": Client(processes["provisioning"].url, planning["municipal"]),
            **{f"report:{r}": Client(processes["reporting"].url, t) for r, t in readers.items()},
        }


def supported_plan(s: dict[str, Any]) -> tuple[str, str, str]:
    """A pupil at risk with a plan of a consultation and meals, approved at every level,
    2 hours of consultation logged: the pupil, the plan and the meals' measure."""
    pupil_id = register_at_risk(s["identification"])
    known_at_risk(s["teacher"], pupil_id)
    plan = draft_plan(s["teacher"], pupil_id)
    talks = add_measure(s["teacher"], plan["plan_id"], plan["version"])
    meals = add_measure(
        s["teacher"],
        plan["plan_id"],
        talks["version"],
        kind="meals",
        risk_code="economic.low_income",
        hours=None,
        amount_eur="60.00",
    )
    version = command(s["teacher"], plan["plan_id"], "submit", meals["version"])["version"]
    for role in ("director", "municipal", "national"):
        version = command(s[role], plan["plan_id"], "approve", version)["version"]
    consultation = {
        "measure_id": talks["measure_id"],
        "date": "2019-10-01",
        "hours": 2,
        "provider": "J. Ozola",
        "topic": "attendance",
        "remote": False,
    }
    on_latest(
        s["teacher"],
        plan["plan_id"],
        lambda v: s["teacher"].post(
            f"/plans/{plan['plan_id']}/consultations", {**consultation, "expected_version": v}
        ),
        201,
    )
    return pupil_id, plan["plan_id"], meals["measure_id"]


def deliver(
    s: dict[str, Any], provision: dict[str, Any], amount: str, receipt: str
) -> dict[str, Any]:
    body = {"delivered_on": "2019-10-20", "amount_eur": amount, "receipt_no": receipt}
    return ok(act(s["provisioning"], provision, "deliver", **body), 201)


def reported(client: Client, **params: str) -> dict[str, Any]:
    return ok(client.get(ESF, params={"semester": SEMESTER, **params}))


def settled(s: dict[str, Any]) -> dict[str, int]:
    """Once every event the sources stored is in reporting's journal, exactly once: the
    number of entries per source."""
    stores = s["system"].stores

    def journalled() -> dict[str, int] | None:
        rows = stores.query(
            "reporting",
            "SELECT source, COUNT(*) AS n, COUNT(DISTINCT notification_id) AS d "
            "FROM reporting_journal GROUP BY source",
        )
        counts = {row["source"]: int(row["n"]) for row in rows}
        assert all(row["n"] == row["d"] for row in rows), "an event journalled twice"
        for source in ("identification", "planning", "provisioning"):
            table = stores.events_table(source)
            stored = int(stores.query(source, f"SELECT COUNT(*) AS n FROM {table}")[0]["n"])
            if counts.get(source) != stored:
                return None
        return counts

    return dict(wait_until(journalled, timeout=30, interval=0.2))


def ages_answered(client: Client) -> None:
    """Once reporting journalled identification's answer to every age enquiry (asked by a
    timer after each plan's full approval)."""

    def answered() -> bool:
        return bool(reported(client)["indicators"]["pupils_supported"]["age_unknown"] == 0)

    wait_until(answered, timeout=30, interval=0.2)


def test_the_esf_report_follows_what_the_services_did(stack: dict[str, Any]) -> None:
    s = stack
    auditor = s["report:auditor"]
    ok(put(s["budgets"], f"/budgets/{SCHOOL}/{SEMESTER}", {"amount_eur": "1000.00"}))
    supported, plan_id, meals = supported_plan(s)
    provision = provisions_of(s["provisioning"], plan_id, 1)[meals]
    provision = ok(act(s["provisioning"], provision, "order", supplier="x", amount_eur="60.00"))
    provision = deliver(s, provision, "20.00", "R-1")
    drafted = register_at_risk(s["identification"])
    known_at_risk(s["teacher"], drafted)
    draft = draft_plan(s["teacher"], drafted)["plan_id"]
    elsewhere = register_at_risk(s["identification@other"], school=OTHER_SCHOOL, grade=11)
    settled(s)
    ages_answered(auditor)

    document = reported(auditor)
    i = document["indicators"]
    cost = 2 * load_rates()["psychologist"] + Decimal("20.00")  # consultation, meals delivered
    assert i["pupils_at_risk"]["total"] == 3
    assert i["pupils_at_risk"]["by_group"]["economic"] == 3
    assert i["pupils_supported"]["total"] == 1
    assert i["pupils_supported"]["by_gender"] == {"F": 1, "M": 0}
    assert i["pupils_supported"]["by_isced"] == {"1": 0, "2": 1, "3": 0}  # grade 7
    assert i["pupils_supported"]["by_school"] == {SCHOOL: 1}
    # Born 2008-03-01, as identification was told and reporting asked it: below 25.
    assert i["pupils_supported"]["below_25"] == 1
    assert i["pupils_supported"]["below_25_by_gender"] == {"F": 1, "M": 0}
    assert (i["pupils_supported"]["age_25_or_over"], i["pupils_supported"]["age_unknown"]) == (0, 0)
    why = ok(
        auditor.get(ESF, params={"semester": SEMESTER, "explain": "pupils_supported.below_25"})
    )
    assert why["explain"]["pupil_ids"] == [supported]
    reads = ok(s["identification@dpo"].get(f"/pupils/{supported}/personal-data-reads"))["items"]
    assert [(r["by"], r["role"], r["purpose"]) for r in reads] == [
        ("reporting", "service", "esf_age_band")
    ]
    assert i["institutions_supported"] == 1
    assert i["plans_by_status"]["in_progress"] == 1 and i["plans_by_status"]["draft"] == 1
    assert i["consultation_hours"]["by_kind"]["psychologist"] == "2.00"
    assert (i["material_eur"]["planned"]["meals"], i["material_eur"]["committed"]["meals"]) == (
        "60.00",
        "40.00",
    )
    assert i["material_eur"]["delivered"]["total"] == "20.00"
    assert i["total_cost_eur"] == f"{cost:.2f}"
    assert i["result"] == {"continued": 0, "left": 0, "share": None}

    # The ids behind a figure; other formats; who may read what.
    why = ok(auditor.get(ESF, params={"semester": SEMESTER, "explain": "pupils_supported"}))
    assert (why["explain"]["pupil_ids"], why["explain"]["plan_ids"]) == ([supported], [plan_id])
    drafts = ok(auditor.get(ESF, params={"semester": SEMESTER, "explain": "plans_by_status.draft"}))
    assert drafts["explain"]["plan_ids"] == [draft]
    at_risk = reported(auditor, explain="pupils_at_risk")["explain"]["pupil_ids"]
    assert sorted(at_risk) == sorted([supported, drafted, elsewhere])
    csv = auditor.get(ESF, params={"semester": SEMESTER, "format": "csv"})
    assert csv.headers["Content-Type"].startswith("text/csv")
    assert f"\n{SCHOOL},1\n" in csv.text
    xlsx = auditor.get(ESF, params={"semester": SEMESTER, "format": "xlsx"})
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(xlsx.content))
    assert dict(book["supported_by_school"].iter_rows(min_row=2, values_only=True)) == {SCHOOL: 1}
    school = reported(s["report:teacher"])
    assert school["scope"]["school_id"] == SCHOOL
    assert school["indicators"]["pupils_at_risk"]["total"] == 2
    assert reported(s["report:coordinator"])["scope"]["municipality"] == "daugavpils"
    assert (
        s["report:riga"]
        .get(ESF, params={"semester": SEMESTER, "municipality": "daugavpils"})
        .status_code
        == 403
    )
    assert s["report:operator"].get(ESF, params={"semester": SEMESTER}).status_code == 403
    wrong = auditor.get(ESF, params={"semester": "2019-2021-1"})
    assert wrong.status_code == 400 and "semester" in wrong.json()["error"]["details"]["fields"]

    # The programme's gauges, for the operators' dashboards.
    reporting = s["processes"]["reporting"]
    assert reporting.metric("pumpurs_programme_pupils_at_risk") == 3
    assert reporting.metric("pumpurs_programme_plans", status="draft") == 1
    assert reporting.metric("pumpurs_programme_budget_eur", state="allocated") == 1000
    assert reporting.metric("pumpurs_programme_budget_eur", state="spent") == 20
    assert reporting.metric("pumpurs_reporting_age_enquiries_pending") == 0

    # More happens; the report as of the first one's time is still the first one.
    deliver(s, provision, "40.00", "R-2")
    register_at_risk(s["identification@other"], school=OTHER_SCHOOL)
    settled(s)
    later = reported(auditor)["indicators"]
    assert later["material_eur"]["delivered"]["total"] == "60.00"
    assert later["pupils_at_risk"]["total"] == 4
    assert reported(auditor, as_of=document["as_of"]) == document

    # Rebuilt from the journal while the service runs: the same read models.
    environ = {**os.environ, **s["system"].stores.env(["reporting"])}
    rebuild = subprocess.run(
        [sys.executable, "-m", "shared.cli", "reporting", "rebuild"],
        env=environ,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rebuild.returncode == 0, rebuild.stderr
    lines = dict(line.split(": ", 1) for line in rebuild.stdout.splitlines() if ": " in line)
    assert lines["digest before"].strip() == lines["digest after"].strip()
    assert "unchanged" in rebuild.stdout
    assert reported(auditor)["indicators"] == later

    # Identification away: a pupil supported meanwhile waits for an age (unknown, and in the
    # gauge) while reporting goes on; identification back, the enquiry is asked again.
    identification = s["processes"]["identification"]
    waiting = register_at_risk(s["identification"])
    known_at_risk(s["teacher"], waiting)
    identification.stop()
    plan = draft_plan(s["teacher"], waiting)
    talks = add_measure(s["teacher"], plan["plan_id"], plan["version"])
    version = command(s["teacher"], plan["plan_id"], "submit", talks["version"])["version"]
    for role in ("director", "municipal", "national"):
        version = command(s[role], plan["plan_id"], "approve", version)["version"]
    wait_until(lambda: reported(auditor)["indicators"]["pupils_supported"]["total"] == 2, 30)
    assert reporting.metric("pumpurs_reporting_age_enquiries_pending") == 1
    assert reporting.metric("pumpurs_reporting_age_enquiry_oldest_age_seconds") > 0
    away = reported(auditor)["indicators"]["pupils_supported"]
    assert (away["below_25"], away["age_unknown"]) == (1, 1)
    identification.start()
    ages_answered(auditor)
    back = reported(auditor)["indicators"]["pupils_supported"]
    assert (back["below_25"], back["age_unknown"]) == (2, 0)
    assert reporting.metric("pumpurs_reporting_age_enquiries_pending") == 0
    assert reporting.metric("pumpurs_reporting_age_enquiry_oldest_age_seconds") == 0


def test_a_pupil_who_moves_school_mid_semester_is_one_participant_supported_at_both(
    stack: dict[str, Any],
) -> None:
    """Supported at one school, transferred, registered again and supported at the next
    school in the same semester: one pupil in the ESF report, two institutions."""
    s = stack
    pupil_id, first_plan, _ = supported_plan(s)
    moved = transfer(
        s["identification"], s["identification@other"], pupil_id, OTHER_SCHOOL, "learning.absences"
    )
    assert moved["pupil_id"] == pupil_id
    teacher = s["teacher@other"]
    known_at_risk(teacher, pupil_id, OTHER_SCHOOL, codes=("learning.absences",))
    plan = draft_plan(teacher, pupil_id)
    talks = add_measure(teacher, plan["plan_id"], plan["version"])
    version = command(teacher, plan["plan_id"], "submit", talks["version"])["version"]
    for role in ("director@other", "municipal", "national"):
        version = command(s[role], plan["plan_id"], "approve", version)["version"]
    settled(s)
    ages_answered(s["report:auditor"])

    i = reported(s["report:auditor"])["indicators"]
    assert i["pupils_supported"]["total"] == 1
    assert i["pupils_supported"]["by_school"] == {SCHOOL: 1, OTHER_SCHOOL: 1}
    assert i["institutions_supported"] == 2
    assert (i["plans_by_status"]["closed"], i["plans_by_status"]["approved"]) == (1, 1)
    assert i["pupils_at_risk"]["total"] == 1
    why = reported(s["report:auditor"], explain="pupils_supported")["explain"]
    assert why["pupil_ids"] == [pupil_id]
    assert sorted(why["plan_ids"]) == sorted([first_plan, plan["plan_id"]])
