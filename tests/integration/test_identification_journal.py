"""POST /imports/journal on a running identification: the report, Latvian letters, signs,
an idempotent re-import, and files refused whole.

The tests share one running identification, into which only the first imports pupils (the
others' files are refused and store nothing); the re-import imports the same pupils, so it
has its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from shared.testing import Client, ServiceProcess, running

SCHOOL = "daugavpils-10-vsk"
ROUTE = "/imports/journal"
QUERY = {"school_id": SCHOOL, "semester": "2019-2020-1"}
CSV = {"Content-Type": "text/csv; charset=utf-8"}
HEADER = (
    "personal_code,given_name,family_name,grade,birth_date,gender,unexcused_lessons,"
    "Matemātika,Latviešu valoda,Ķīmija"
)
ROWS = [
    "150607-20416,Ģirts,Žūriņš,7,2007-06-15,M,25,5,6,7",
    "010308-20005,Anna,Ķēniņa-Ūdre,7,2008-03-01,F,2,nv,8,9",
    "320000-00001,Līga,Čakste,8,2007-01-01,F,30,2,8,9",
    "320000-00002,Ēvalds,Ļaviņš,9,2006-01-01,M,2,9,9,9",
    "320000-00003,Ņina,Šņoriņa,9,2006-01-01,F,2,11,9,9",
    "300207-20003,Ādams,Īvāns,9,2007-02-28,M,0,9,9,9",
]


def journal(*rows: str, header: str = HEADER) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode("utf-8")


def head(service: ServiceProcess) -> int:
    with ClusterRpcProxy({"AMQP_URI": service.operator_amqp_uri}, timeout=10) as rpc:
        return int(rpc.identification.notifications(after=0, limit=1)["head"])


@pytest.fixture(scope="module")
def identification(module_system: Any) -> Iterator[ServiceProcess]:
    service = module_system.service("identification")
    with running(service):
        yield service


@pytest.fixture
def teacher(module_system: Any, identification: ServiceProcess) -> Client:
    return Client(identification.url, module_system.token("teacher", school=SCHOOL))


@pytest.fixture
def own_identification(system: Any) -> Iterator[ServiceProcess]:
    service = system.service("identification")
    with running(service):
        yield service


def post(client: Client, body: bytes, headers: dict[str, str] | None = None) -> Any:
    return client.post(ROUTE, data=body, params=QUERY, headers=headers or CSV)


def test_a_journal_imports_its_good_rows_and_reports_the_bad_ones(teacher: Client) -> None:
    answer = post(teacher, journal(*ROWS))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "rows": 6,
        "imported": 4,
        "registered": 4,
        "signs_recorded": 4,
        "errors": [
            {"line": 6, "reason": "mark 11 in Matemātika is not 1-10 or nv"},
            {"line": 7, "reason": "the date in the personal code is not a real date"},
        ],
    }
    listed = teacher.get("/pupils").json()["items"]
    assert sorted(p["at_risk"] for p in listed) == [False, True, True, True]
    people = [teacher.get(f"/pupils/{p['pupil_id']}").json() for p in listed]
    by_code = {p["personal_code"]: p for p in people}
    # Latvian letters survive the round trip.
    assert (by_code["010308-20005"]["given_name"], by_code["010308-20005"]["family_name"]) == (
        "Anna",
        "Ķēniņa-Ūdre",
    )
    assert by_code["320000-00002"]["family_name"] == "Ļaviņš"
    assert by_code["150607-20416"]["given_name"] == "Ģirts"
    signs = {code: p["risk_signs"] for code, p in by_code.items()}
    assert [s["code"] for s in signs["320000-00001"]] == [
        "learning.absences",
        "learning.low_achievement",
    ]
    assert signs["320000-00001"][1]["evidence"] == (
        "marks of 3 or less or nv in semester 2019-2020-1: Matemātika 2"
    )
    assert {(s["source"], s["observed_on"]) for s in signs["150607-20416"]} == {
        ("journal", "2019-12-31")
    }
    assert signs["320000-00002"] == []


def test_importing_the_same_file_again_changes_nothing(
    system: Any, own_identification: ServiceProcess
) -> None:
    identification = own_identification
    teacher = Client(identification.url, system.token("teacher", school=SCHOOL))
    first = post(teacher, journal(*ROWS)).json()
    stored = head(identification)
    again = post(teacher, journal(*ROWS))
    assert again.status_code == 200
    assert again.json() == {**first, "registered": 0, "signs_recorded": 0}
    assert head(identification) == stored
    assert len(teacher.get("/pupils").json()["items"]) == 4


def test_a_retried_upload_with_its_idempotency_key_gets_the_first_report(
    system: Any, own_identification: ServiceProcess
) -> None:
    """A client whose connection dropped sends the file again with the same key: it gets
    the report of the import that happened, not "0 registered"; and the key is no pass to
    another school's import."""
    identification = own_identification
    teacher = Client(identification.url, system.token("teacher", school=SCHOOL))
    keyed = {**CSV, "Idempotency-Key": "journal-2019-1"}
    first = post(teacher, journal(*ROWS), keyed)
    assert (first.status_code, first.json()["registered"]) == (200, 4)
    stored = head(identification)
    retry = post(teacher, journal(*ROWS), keyed)
    assert (retry.status_code, retry.json()) == (200, first.json())
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert head(identification) == stored
    elsewhere = teacher.post(
        ROUTE,
        data=journal(*ROWS),
        params={**QUERY, "school_id": "daugavpils-12-vsk"},
        headers=keyed,
    )
    assert elsewhere.status_code == 403


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (
            (HEADER + "\n" + ROWS[0] + "\n").encode("cp1257"),
            {"Content-Type": "text/csv"},
            400,
            "unsupported_encoding",
        ),
        (
            (HEADER + "\n" + ROWS[0] + "\n").encode("utf-16"),
            {"Content-Type": "text/csv"},
            400,
            "unsupported_encoding",
        ),
        (journal(*ROWS), {"Content-Type": "text/csv; charset=windows-1257"}, 400, None),
        (journal(*ROWS), {"Content-Type": "application/json"}, 400, "invalid_journal"),
        (
            journal(ROWS[0], header="kods,vards,uzvards,klase,dzimis,dzimums,kavejumi"),
            CSV,
            400,
            "invalid_journal",
        ),
        (b"", CSV, 400, "invalid_journal"),
    ],
)
def test_a_file_refused_whole_imports_nothing(
    teacher: Client,
    identification: ServiceProcess,
    body: bytes,
    headers: dict[str, str],
    status: int,
    code: str | None,
) -> None:
    before = head(identification)
    answer = post(teacher, body, headers)
    assert answer.status_code == status, answer.text
    if code:
        assert answer.json()["error"]["code"] == code
    assert head(identification) == before


def test_an_oversized_file_is_413_and_imports_nothing(
    teacher: Client, identification: ServiceProcess
) -> None:
    row = ROWS[3] + "," + ",".join(["9"] * 200)
    header = HEADER + "," + ",".join(f"S{i}" for i in range(200))
    body = journal(*[row] * 20_000, header=header)  # well over the 8 MiB limit
    assert len(body) > 8 * 1024 * 1024
    before = head(identification)
    answer = post(teacher, body)
    assert answer.status_code == 413
    assert answer.json()["error"] == {
        "code": "payload_too_large",
        "message": "the request body is larger than 8388608 bytes",
        "details": {"max_bytes": 8388608},
    }
    assert head(identification) == before
    assert teacher.get("/health/ready").status_code == 200


def test_only_a_school_of_ones_own_takes_a_journal(
    module_system: Any, identification: ServiceProcess
) -> None:
    before = head(identification)
    other = Client(identification.url, module_system.token("teacher", school="daugavpils-12-vsk"))
    assert post(other, journal(*ROWS)).status_code == 403
    coordinator = Client(
        identification.url,
        module_system.token("municipal_coordinator", municipality="daugavpils"),
    )
    assert post(coordinator, journal(*ROWS)).status_code == 403
    bad_semester = other.post(
        ROUTE,
        data=journal(*ROWS),
        params={"school_id": "daugavpils-12-vsk", "semester": "2019-2021-1"},
        headers=CSV,
    )
    assert bad_semester.status_code == 400
    assert head(identification) == before
