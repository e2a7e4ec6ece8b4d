"""Identification as a process on a real broker and the store under test: pupils, signs,
departures, schools, tenants, and what goes on the bus.

The tests share one running identification: each registers pupils of its own, with
personal codes of their own, and those that list a school's pupils have a school of their
own. The tenant test needs a store with nobody else in it, so it has its own service.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from kombu import Connection, Exchange, Queue
from nameko.standalone.rpc import ClusterRpcProxy

from services.identification.journal import REQUIRED
from shared.testing import Client, ServiceProcess, running, wait_until
from shared.topology import EVENTS_EXCHANGE

SCHOOL = "daugavpils-10-vsk"
OTHER = "daugavpils-12-vsk"
# Schools whose pupils one test alone registers, for the tests that list them.
SIGNS_SCHOOL = "daugavpils-16-vsk"
PAGING_SCHOOL = "daugavpils-17-vsk"
_serial = itertools.count(1)


def pupil(**overrides: Any) -> dict[str, Any]:
    body = {
        "school_id": SCHOOL,
        "grade": 7,
        "given_name": "Ērika",
        "family_name": "Ķiršteine-Ļaudaža",
        "personal_code": f"32{next(_serial):04d}-00000",
        "birth_date": "2008-03-01",
        "gender": "F",
    }
    return {**body, **overrides}


def ok(answer: Any, status: int = 200) -> dict[str, Any]:
    assert answer.status_code == status, f"{answer.status_code}: {answer.text}"
    return dict(answer.json())


def head(service: ServiceProcess) -> int:
    with ClusterRpcProxy({"AMQP_URI": service.operator_amqp_uri}, timeout=10) as rpc:
        return int(rpc.identification.notifications(after=0, limit=1)["head"])


def published_everything(system: Any, service: ServiceProcess) -> bool:
    """The relay has published every stored event (so a queue bound now sees only new ones)."""
    table = "identification_relay_position"
    rows = system.stores.query("identification", f"SELECT position FROM {table}")
    return bool(rows) and int(rows[0]["position"]) >= head(service)


@pytest.fixture(scope="module")
def identification(module_system: Any) -> Iterator[ServiceProcess]:
    service = module_system.service("identification")
    with running(service):
        yield service


@pytest.fixture
def own_identification(system: Any) -> Iterator[ServiceProcess]:
    service = system.service("identification")
    with running(service):
        yield service


def user(system: Any, service: ServiceProcess, role: str, **claims: str) -> Client:
    return Client(service.url, system.token(role, **claims))


def test_a_pupil_registers_and_reads_back_as_the_contract_says(
    module_system: Any, identification: ServiceProcess
) -> None:
    teacher = user(module_system, identification, "teacher", school=SCHOOL)
    body = pupil(personal_code="010308-20013")
    created = ok(teacher.post("/pupils", body), 201)
    assert set(created) == {"pupil_id", "version"}
    assert created["version"] == 1
    view = ok(teacher.get(f"/pupils/{created['pupil_id']}"))
    assert view == {
        "pupil_id": created["pupil_id"],
        "school_id": SCHOOL,
        "grade": 7,
        "gender": "F",
        "birth_date": "2008-03-01",
        "given_name": "Ērika",
        "family_name": "Ķiršteine-Ļaudaža",
        "personal_code": "010308-20013",
        "at_risk": False,
        "risk_signs": [],
        "status": "enrolled",
        "departure": None,
        "erased": False,
        "version": 1,
    }


def test_a_known_personal_code_is_409_naming_the_pupil_and_stores_nothing(
    module_system: Any, identification: ServiceProcess
) -> None:
    teacher = user(module_system, identification, "teacher", school=SCHOOL)
    first = ok(teacher.post("/pupils", pupil(personal_code="010308-20021")), 201)
    before = head(identification)
    national = user(module_system, identification, "national_coordinator")
    everyone = ok(national.get("/pupils", params={"limit": "500"}))["items"]
    other_school = user(module_system, identification, "teacher", school=OTHER)
    again = other_school.post(
        "/pupils", pupil(school_id=OTHER, personal_code="01030820021", given_name="Cits")
    )
    assert again.status_code == 409
    error = again.json()["error"]
    assert (error["code"], error["details"]) == (
        "personal_code_registered",
        {"pupil_id": first["pupil_id"]},
    )
    assert "010308" not in again.text
    assert head(identification) == before
    assert ok(national.get("/pupils", params={"limit": "500"}))["items"] == everyone


def test_registrations_at_the_same_moment_each_get_their_own_answer_in_shared_commits(
    module_system: Any, identification: ServiceProcess
) -> None:
    codes = [f"32{next(_serial):04d}-00000" for _ in range(15)]
    codes.append(codes[7])  # a sixteenth teacher registers the same child as the eighth
    commits = "pumpurs_store_saves_per_commit_count"
    saves = "pumpurs_store_saves_per_commit_sum"
    before = {m: identification.metric(m, service="identification") for m in (commits, saves)}
    teachers = [user(module_system, identification, "teacher", school=SCHOOL) for _ in codes]
    start = threading.Barrier(len(codes))

    def register(i: int) -> Any:
        start.wait()
        return teachers[i].post("/pupils", pupil(personal_code=codes[i]))

    with ThreadPoolExecutor(max_workers=len(codes)) as pool:
        answers = list(pool.map(register, range(len(codes))))

    created = [a.json()["pupil_id"] for a in answers if a.status_code == 201]
    refused = [a.json()["error"] for a in answers if a.status_code == 409]
    assert (len(created), len(refused)) == (15, 1), [a.status_code for a in answers]
    assert refused[0]["code"] == "personal_code_registered"
    assert refused[0]["details"]["pupil_id"] in created
    for answer, code in zip(answers, codes, strict=True):
        if answer.status_code == 201:
            view = ok(teachers[0].get(f"/pupils/{answer.json()['pupil_id']}"))
            assert (view["personal_code"], view["version"]) == (code, 1)
    saved = identification.metric(saves, service="identification") - before[saves]
    committed = identification.metric(commits, service="identification") - before[commits]
    assert saved == 15 and committed < 15  # some commits held several registrations


@pytest.mark.parametrize(
    ("overrides", "field", "code"),
    [
        ({"personal_code": "010308-20005", "birth_date": "2008-03-02"}, "personal_code", None),
        ({"personal_code": "300208-20000", "birth_date": "2008-02-29"}, "personal_code", None),
        ({"personal_code": "12345"}, "personal_code", None),
        ({"school_id": "daugavpils-11-psk", "grade": 10}, "grade", "grade_out_of_range"),
        ({"school_id": "nowhere-vsk"}, "school_id", "unknown_school"),
        ({"given_name": ""}, "given_name", None),
    ],
)
def test_an_invalid_registration_is_400_naming_the_field_and_stores_nothing(
    module_system: Any,
    identification: ServiceProcess,
    overrides: dict[str, Any],
    field: str,
    code: str | None,
) -> None:
    teacher = user(
        module_system, identification, "teacher", school=overrides.get("school_id", SCHOOL)
    )
    before = head(identification)
    answer = teacher.post("/pupils", pupil(**overrides))
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert set(error["details"]["fields"]) == {field}
    if code:
        assert error["code"] == code
    assert head(identification) == before


def test_signs_flag_the_pupil_resolving_the_last_clears_it_and_a_departure_is_kept(
    module_system: Any, identification: ServiceProcess
) -> None:
    teacher = user(module_system, identification, "teacher", school=SIGNS_SCHOOL)
    director = user(module_system, identification, "director", school=SIGNS_SCHOOL)
    pupil_id = ok(teacher.post("/pupils", pupil(school_id=SIGNS_SCHOOL)), 201)["pupil_id"]
    for code, version in (("learning.absences", 1), ("economic.low_income", 3)):
        sign = {
            "code": code,
            "observed_on": "2019-10-01",
            "evidence": "noted in class",
            "expected_version": version,
        }
        ok(teacher.post(f"/pupils/{pupil_id}/risk-signs", sign), 201)
    at_risk = ok(director.get("/pupils", params={"at_risk": "true"}))["items"]
    assert [(p["pupil_id"], p["at_risk"], p["version"]) for p in at_risk] == [(pupil_id, True, 4)]
    resolve = f"/pupils/{pupil_id}/risk-signs/learning.absences/resolve"
    assert ok(director.post(resolve, {"reason": "attends", "expected_version": 4}))["version"] == 5
    again = director.post(resolve, {"reason": "attends", "expected_version": 5})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "risk_sign_not_active"
    resolve_last = f"/pupils/{pupil_id}/risk-signs/economic.low_income/resolve"
    ok(director.post(resolve_last, {"reason": "benefit granted", "expected_version": 5}))
    assert ok(director.get("/pupils", params={"at_risk": "true"}))["items"] == []

    view = ok(teacher.get(f"/pupils/{pupil_id}"))
    assert [(s["code"], s["active"], s["reason"]) for s in view["risk_signs"]] == [
        ("learning.absences", False, "attends"),
        ("economic.low_income", False, "benefit granted"),
    ]
    departure = {
        "reason": "transferred",
        "on": "2020-01-10",
        "to_school_id": OTHER,
        "expected_version": view["version"],
    }
    ok(director.post(f"/pupils/{pupil_id}/departure", departure))
    view = ok(teacher.get(f"/pupils/{pupil_id}"))
    assert (view["status"], view["departure"]) == (
        "departed",
        {"reason": "transferred", "on": "2020-01-10", "to_school_id": OTHER},
    )
    late = teacher.post(
        f"/pupils/{pupil_id}/risk-signs",
        {
            "code": "learning.gaps",
            "observed_on": "2020-02-01",
            "evidence": "x",
            "expected_version": view["version"],
        },
    )
    assert (late.status_code, late.json()["error"]["code"]) == (409, "pupil_departed")


def test_each_role_sees_only_its_tenant(system: Any, own_identification: ServiceProcess) -> None:
    ours = ok(
        user(system, own_identification, "teacher", school=SCHOOL).post("/pupils", pupil()), 201
    )["pupil_id"]
    theirs = ok(
        user(system, own_identification, "teacher", school=OTHER).post(
            "/pupils", pupil(school_id=OTHER)
        ),
        201,
    )["pupil_id"]
    teacher = user(system, own_identification, "teacher", school=SCHOOL)
    assert [p["pupil_id"] for p in ok(teacher.get("/pupils"))["items"]] == [ours]
    assert teacher.get(f"/pupils/{theirs}").status_code == 404
    assert teacher.get("/pupils", params={"school_id": OTHER}).status_code == 403
    sign = {"code": "learning.gaps", "observed_on": "2019-10-01", "evidence": "x"}
    assert (
        teacher.post(f"/pupils/{theirs}/risk-signs", {**sign, "expected_version": 1}).status_code
        == 404
    )

    daugavpils = user(
        system, own_identification, "municipal_coordinator", municipality="daugavpils"
    )
    assert {p["pupil_id"] for p in ok(daugavpils.get("/pupils"))["items"]} == {ours, theirs}
    riga = user(system, own_identification, "municipal_coordinator", municipality="riga")
    assert ok(riga.get("/pupils"))["items"] == []
    assert riga.get(f"/pupils/{ours}").status_code == 404

    auditor = user(system, own_identification, "auditor")
    listed = ok(auditor.get("/pupils", params={"school_id": OTHER}))["items"]
    assert [p["pupil_id"] for p in listed] == [theirs]
    assert auditor.post("/pupils", pupil()).status_code == 403
    operator = user(system, own_identification, "operator")
    assert operator.get(f"/pupils/{ours}").status_code == 403


def test_lists_page_with_limit_and_after(
    module_system: Any, identification: ServiceProcess
) -> None:
    teacher = user(module_system, identification, "teacher", school=PAGING_SCHOOL)
    ids = sorted(
        ok(teacher.post("/pupils", pupil(school_id=PAGING_SCHOOL)), 201)["pupil_id"]
        for _ in range(5)
    )
    seen: list[str] = []
    after = None
    while True:
        params = {"limit": "2", **({"after": after} if after else {})}
        answer = ok(teacher.get("/pupils", params=params))
        seen += [p["pupil_id"] for p in answer["items"]]
        after = answer["next"]
        if after is None:
            break
    assert seen == ids


def test_schools_the_risk_catalogue_and_a_new_vocational_school(
    module_system: Any, identification: ServiceProcess
) -> None:
    teacher = user(module_system, identification, "teacher", school=SCHOOL)
    schools = ok(teacher.get("/schools"))["items"]
    assert len(schools) == 8
    assert schools[1] == {
        "school_id": "daugavpils-6-vsk",
        "name": "J. Raiņa Daugavpils 6. vidusskola",
        "municipality": "daugavpils",
        "kind": "general",
        "owner": "municipal",
        "grade_from": 1,
        "grade_to": 12,
    }
    factors = ok(teacher.get("/risk-factors"))["items"]
    assert len(factors) == 21
    family = next(f for f in factors if f["code"] == "family.caring_duties")
    assert family["group"] == "family"
    assert family["label"]["en"] == "cares for siblings or other family members"
    assert family["group_label"]["lv"] == "ar ģimeni saistītie riski"

    school = {
        "school_id": "riga-tehnikums",
        "name": "Rīgas Tehniskā koledža",
        "municipality": "riga",
        "kind": "vocational",
        "owner": "state",
        "grade_from": 1,
        "grade_to": 4,
    }
    assert teacher.post("/schools", school).status_code == 403
    national = user(module_system, identification, "national_coordinator")
    assert ok(national.post("/schools", school), 201)["school_id"] == "riga-tehnikums"
    assert national.post("/schools", school).status_code == 409
    assert ok(teacher.get("/schools"))["items"][-1] == school

    vocational = user(module_system, identification, "teacher", school="riga-tehnikums")
    too_far = vocational.post("/pupils", pupil(school_id="riga-tehnikums", grade=5))
    assert (too_far.status_code, too_far.json()["error"]["code"]) == (400, "grade_out_of_range")
    pupil_id = ok(vocational.post("/pupils", pupil(school_id="riga-tehnikums", grade=4)), 201)
    riga = user(module_system, identification, "municipal_coordinator", municipality="riga")
    assert [p["pupil_id"] for p in ok(riga.get("/pupils"))["items"]] == [pupil_id["pupil_id"]]
    assert teacher.get(f"/pupils/{pupil_id['pupil_id']}").status_code == 404


def _drain(uri: str, queue: str, count: int, timeout: float = 20) -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    with Connection(uri, connect_timeout=5) as conn:
        channel = conn.channel()
        while len(bodies) < count and time.monotonic() < deadline:
            message = channel.basic_get(queue, no_ack=True)
            if message is None:
                time.sleep(0.1)
                continue
            bodies.append(json.loads(message.body))
    return bodies


def test_the_bus_carries_ids_school_grade_and_gender_and_no_personal_data(
    module_system: Any, identification: ServiceProcess
) -> None:
    # Bound once the earlier tests' events are out, so it carries only this test's.
    wait_until(lambda: published_everything(module_system, identification), timeout=20)
    # A plain queue: a probe reads with basic.get, which a consumer queue (single
    # active consumer) refuses.
    probe = Queue(
        "probe",
        exchange=Exchange(EVENTS_EXCHANGE, "topic", durable=True),
        routing_key="identification.#",
    )
    with Connection(module_system.broker.uri, connect_timeout=5) as conn:
        probe(conn.channel()).declare()
    teacher = user(module_system, identification, "teacher", school=SCHOOL)
    body = pupil(personal_code="010308-20048")
    pupil_id = ok(teacher.post("/pupils", body), 201)["pupil_id"]
    secret = "ŠIS-TEKSTS-NEIZIET"
    sign = {
        "code": "family.crisis",
        "observed_on": "2019-10-01",
        "evidence": secret,
        "expected_version": 1,
    }
    ok(teacher.post(f"/pupils/{pupil_id}/risk-signs", sign), 201)
    resolve = f"/pupils/{pupil_id}/risk-signs/family.crisis/resolve"
    ok(teacher.post(resolve, {"reason": secret, "expected_version": 3}))
    departure = {"reason": "dropped_out", "on": "2020-02-01", "expected_version": 5}
    ok(teacher.post(f"/pupils/{pupil_id}/departure", departure))
    dpo = Client(
        identification.url,
        module_system.token("data_protection_officer", sub="test-data_protection_officer"),
    )
    ok(dpo.post(f"/pupils/{pupil_id}/erasure", {}))

    messages = _drain(module_system.broker.uri, str(probe.name), 7)
    assert [(m["event_type"], m["payload"]) for m in messages] == [
        ("pupil_registered", {"school_id": SCHOOL, "grade": 7, "gender": "F"}),
        (
            "risk_sign_recorded",
            {"code": "family.crisis", "observed_on": "2019-10-01", "source": "assessment"},
        ),
        ("pupil_flagged_at_risk", {"school_id": SCHOOL}),
        ("risk_sign_resolved", {"code": "family.crisis"}),
        ("pupil_risk_cleared", {"school_id": SCHOOL}),
        ("pupil_departed", {"reason": "dropped_out", "on": "2020-02-01", "to_school_id": None}),
        ("pupil_erased", {}),
    ]
    assert {m["aggregate_id"] for m in messages} == {pupil_id}
    assert [m["actor"] for m in messages][-1] == "test-data_protection_officer"
    text = json.dumps(messages, ensure_ascii=False)
    for personal in (secret, body["given_name"], body["family_name"], "010308", "2008-03-01"):
        assert personal not in text


def test_the_openapi_document_names_every_route(identification: ServiceProcess) -> None:
    paths = ok(Client(identification.url, None).get("/openapi.json"))["paths"]
    for path in (
        "/schools",
        "/risk-factors",
        "/pupils",
        "/pupils/{pupil_id}",
        "/pupils/{pupil_id}/risk-signs",
        "/pupils/{pupil_id}/risk-signs/{code}/resolve",
        "/pupils/{pupil_id}/departure",
        "/pupils/{pupil_id}/erasure",
        "/pupils/{pupil_id}/personal-data-reads",
        "/imports/journal",
    ):
        assert path in paths


def test_the_openapi_document_tells_the_forms_of_personal_codes_and_journal_files(
    identification: ServiceProcess,
) -> None:
    document = ok(Client(identification.url, None).get("/openapi.json"))
    register = document["paths"]["/pupils"]["post"]["requestBody"]["content"]["application/json"]
    name = register["schema"]["$ref"].rsplit("/", 1)[1]
    code = document["components"]["schemas"][name]["properties"]["personal_code"]
    form = re.compile(code["pattern"])
    for good in ("010308-20005", "01030820005", "321234-56789", "32123456789"):
        assert form.match(good), good
    for bad in ("010308-30005", "331234-56789", "0103082000", "010308-200050"):
        assert not form.match(bad), bad

    journal = document["paths"]["/imports/journal"]["post"]["requestBody"]
    assert "text/csv" in journal["content"]
    for column in REQUIRED:
        assert column in journal["description"]
