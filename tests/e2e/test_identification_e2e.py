"""Identification over HTTP as a school, another municipality and the data protection
officer use it, with planning listening on the real broker.

A teacher imports the semester's e-journal and registers a pupil by hand; the director
reviews and resolves; a coordinator of another municipality sees nothing of it; the data
protection officer erases a pupil, and everything that refers to the pupil id (planning's
list, a plan, the departure recorded afterwards) keeps working.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shared.testing import Client, running, wait_until

SCHOOL = "daugavpils-10-vsk"
SEMESTER = "2019-2020-1"
JOURNAL = (
    "personal_code,given_name,family_name,grade,birth_date,gender,unexcused_lessons,"
    "Matemātika,Latviešu valoda,Vēsture\n"
    "150607-20416,Ģirts,Žūriņš,7,2007-06-15,M,27,6,7,5\n"
    "010308-20005,Anna,Ķēniņa,7,2008-03-01,F,0,nv,8,6\n"
    "320000-00002,Ēvalds,Ļaviņš,8,2007-05-05,M,4,9,9,8\n"
    "320000-00003,Ņina,Šņoriņa,13,2006-01-01,F,2,9,9,9\n"
)


def ok(answer: Any, status: int = 200) -> dict[str, Any]:
    assert answer.status_code == status, f"{answer.status_code}: {answer.text}"
    return dict(answer.json())


@pytest.fixture
def people(system: Any) -> Iterator[dict[str, Client]]:
    identification = system.service("identification")
    planning = system.service("planning")
    with running(identification, planning):

        def at(service: Any, role: str, **claims: str) -> Client:
            return Client(service.url, system.token(role, **claims))

        yield {
            "teacher": at(identification, "teacher", school=SCHOOL),
            "director": at(identification, "director", school=SCHOOL),
            "riga": at(identification, "municipal_coordinator", municipality="riga"),
            "dpo": at(identification, "data_protection_officer"),
            "teacher@planning": at(planning, "teacher", school=SCHOOL),
        }


def at_risk_in_planning(people: dict[str, Client]) -> set[str]:
    answer = ok(people["teacher@planning"].get("/pupils-at-risk", params={"school_id": SCHOOL}))
    return {item["pupil_id"] for item in answer["items"]}


def test_a_school_year_of_identification_as_its_users_live_it(
    people: dict[str, Client],
) -> None:
    teacher, director, riga, dpo = (people[k] for k in ("teacher", "director", "riga", "dpo"))

    # The teacher imports the semester's journal: three pupils, one bad row.
    report = ok(
        teacher.post(
            "/imports/journal",
            data=JOURNAL.encode("utf-8"),
            params={"school_id": SCHOOL, "semester": SEMESTER},
            headers={"Content-Type": "text/csv"},
        )
    )
    assert report == {
        "rows": 4,
        "imported": 3,
        "registered": 3,
        "signs_recorded": 2,
        "errors": [{"line": 5, "reason": "grade 13 is outside this school's grades 1-12"}],
    }
    pupils = {p["pupil_id"]: p for p in ok(teacher.get("/pupils"))["items"]}
    people_by_code = {
        ok(teacher.get(f"/pupils/{pupil_id}"))["personal_code"]: pupil_id for pupil_id in pupils
    }
    girts, anna = people_by_code["150607-20416"], people_by_code["010308-20005"]
    assert ok(teacher.get(f"/pupils/{girts}"))["family_name"] == "Žūriņš"

    # Registering Anna again by hand is refused, pointing at her record.
    again = teacher.post(
        "/pupils",
        {
            "school_id": SCHOOL,
            "grade": 7,
            "given_name": "Anna",
            "family_name": "Ķēniņa",
            "personal_code": "01030820005",
            "birth_date": "2008-03-01",
            "gender": "F",
        },
    )
    assert again.status_code == 409
    assert again.json()["error"]["details"] == {"pupil_id": anna}

    # A new pupil arrives; the teacher registers her and records what she sees.
    maija = ok(
        teacher.post(
            "/pupils",
            {
                "school_id": SCHOOL,
                "grade": 9,
                "given_name": "Maija",
                "family_name": "Ābele",
                "personal_code": "321987-65432",
                "birth_date": "2005-10-10",
                "gender": "F",
            },
        ),
        201,
    )["pupil_id"]
    ok(
        teacher.post(
            f"/pupils/{maija}/risk-signs",
            {
                "code": "family.caring_duties",
                "observed_on": "2019-11-04",
                "evidence": "looks after two younger brothers after school",
                "expected_version": 1,
            },
        ),
        201,
    )

    # The director reviews the school's pupils at risk; planning has them too.
    at_risk = {
        p["pupil_id"] for p in ok(director.get("/pupils", params={"at_risk": "true"}))["items"]
    }
    assert at_risk == {girts, anna, maija}
    wait_until(lambda: at_risk_in_planning(people) == at_risk, timeout=15, interval=0.2)

    # The director resolves Maija's sign: an aunt now helps at home.
    maija_now = ok(director.get(f"/pupils/{maija}"))
    ok(
        director.post(
            f"/pupils/{maija}/risk-signs/family.caring_duties/resolve",
            {"reason": "an aunt helps at home now", "expected_version": maija_now["version"]},
        )
    )
    assert not ok(teacher.get(f"/pupils/{maija}"))["at_risk"]
    wait_until(lambda: maija not in at_risk_in_planning(people), timeout=15, interval=0.2)

    # The teacher drafts a support plan for Ģirts in planning.
    plan = ok(
        people["teacher@planning"].post(
            "/plans",
            {
                "pupil_id": girts,
                "semester": SEMESTER,
                "consent": {"given_by": "parent", "signed_on": "2019-12-02"},
            },
        ),
        201,
    )

    # A coordinator of another municipality sees none of it.
    assert ok(riga.get("/pupils"))["items"] == []
    assert riga.get(f"/pupils/{girts}").status_code == 404
    assert riga.get("/pupils", params={"school_id": SCHOOL}).status_code == 403

    # Ģirts' parents ask for erasure; the data protection officer first sees who read his data.
    reads = ok(dpo.get(f"/pupils/{girts}/personal-data-reads"))["items"]
    assert [r["role"] for r in reads] == ["teacher", "teacher"]
    ok(dpo.post(f"/pupils/{girts}/erasure", {}))
    erased = ok(teacher.get(f"/pupils/{girts}"))
    assert (erased["given_name"], erased["family_name"], erased["personal_code"]) == (
        None,
        None,
        None,
    )
    assert erased["erased"] is True
    assert [(s["code"], s["evidence"]) for s in erased["risk_signs"]] == [
        ("learning.absences", None)
    ]

    # Everything that refers to his id keeps working.
    listed = {p["pupil_id"]: p for p in ok(director.get("/pupils"))["items"]}
    assert listed[girts]["erased"] is True
    assert girts in at_risk_in_planning(people)
    kept = ok(people["teacher@planning"].get(f"/plans/{plan['plan_id']}"))
    assert kept["pupil_id"] == girts
    ok(
        director.post(
            f"/pupils/{girts}/departure",
            {"reason": "dropped_out", "on": "2020-01-20", "expected_version": erased["version"]},
        )
    )
    assert ok(director.get(f"/pupils/{girts}"))["status"] == "departed"
    # Nothing personal was left to read, so those reads are not on record; the earlier are.
    assert len(ok(dpo.get(f"/pupils/{girts}/personal-data-reads"))["items"]) == 2

    # The re-import at the end of the semester registers nobody twice and brings back
    # nothing the director resolved; Ģirts' code now belongs to nobody, so he is new.
    again_report = ok(
        teacher.post(
            "/imports/journal",
            data=JOURNAL.encode("utf-8"),
            params={"school_id": SCHOOL, "semester": SEMESTER},
            headers={"Content-Type": "text/csv"},
        )
    )
    assert (again_report["registered"], again_report["signs_recorded"]) == (1, 1)
    assert len(ok(teacher.get("/pupils"))["items"]) == 5
