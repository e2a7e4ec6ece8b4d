"""What a caller sees at the HTTP boundary: auth, tenants, validation, versions.

The tests share one running identification (each registers a pupil of its own); the
one that stops the service has its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from chaos.faults import proxied
from chaos.proxy import Proxy
from services.identification.personal_code import check_digit
from shared.testing import Client, running, wait_until

SCHOOL = "daugavpils-10-vsk"
NEW_PUPIL = {
    "school_id": SCHOOL,
    "grade": 7,
    "gender": "M",
    "given_name": "Jānis",
    "family_name": "Bērziņš",
    "personal_code": "040509-20007",
    "birth_date": "2009-05-04",
}


@pytest.fixture(scope="module")
def identification(module_system: Any) -> Iterator[Any]:
    service = module_system.service("identification")
    with running(service):
        yield service


def a_new_pupil(serial: int) -> dict[str, Any]:
    """NEW_PUPIL with a personal code of its own (a code registers one pupil only): the
    serial (1 to 999; 0 is NEW_PUPIL's) and its check digit."""
    first_ten = f"0405092{serial:03d}"
    digit = check_digit(first_ten)
    assert digit is not None, "no check digit fits this serial: choose another"
    return {**NEW_PUPIL, "personal_code": f"{first_ten[:6]}-{first_ten[6:]}{digit}"}


def teacher(module_system: Any, identification: Any, school: str = SCHOOL) -> Client:
    return Client(identification.url, module_system.token("teacher", school=school))


def head(identification: Any) -> int:
    from nameko.standalone.rpc import ClusterRpcProxy

    with ClusterRpcProxy({"AMQP_URI": identification.operator_amqp_uri}, timeout=10) as rpc:
        return int(rpc.identification.notifications(after=0, limit=1)["head"])


def test_no_token_is_401_with_an_error_body(identification: Any) -> None:
    answer = Client(identification.url, None).post("/pupils", NEW_PUPIL)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthenticated"


def test_a_token_signed_with_another_key_is_401(
    module_system: Any, identification: Any, tmp_path: Any
) -> None:
    from shared.testing import token_for

    forged = token_for("teacher", tmp_path / "other-keys", school=SCHOOL)
    assert Client(identification.url, forged).post("/pupils", NEW_PUPIL).status_code == 401


def test_wrong_role_is_403(module_system: Any, identification: Any) -> None:
    auditor = Client(identification.url, module_system.token("auditor"))
    answer = auditor.post("/pupils", NEW_PUPIL)
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "forbidden"


def test_another_schools_pupil_is_404(module_system: Any, identification: Any) -> None:
    body = a_new_pupil(1)
    pupil_id = teacher(module_system, identification).post("/pupils", body).json()["pupil_id"]
    stranger = teacher(module_system, identification, school="daugavpils-12-vsk")
    answer = stranger.get(f"/pupils/{pupil_id}")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "pupil_not_found"
    # The coordinator of another municipality does not see it either.
    riga = Client(
        identification.url, module_system.token("municipal_coordinator", municipality="riga")
    )
    assert riga.get(f"/pupils/{pupil_id}").status_code == 404
    # Daugavpils' coordinator does.
    own = Client(
        identification.url, module_system.token("municipal_coordinator", municipality="daugavpils")
    )
    assert own.get(f"/pupils/{pupil_id}").status_code == 200


def test_invalid_body_is_400_naming_the_fields_and_stores_nothing(
    module_system: Any, identification: Any
) -> None:
    before = head(identification)
    answer = teacher(module_system, identification).post(
        "/pupils", {"school_id": SCHOOL, "grade": 13, "gender": "X"}
    )
    assert answer.status_code == 400
    fields = answer.json()["error"]["details"]["fields"]
    assert set(fields) == {
        "grade",
        "gender",
        "birth_date",
        "given_name",
        "family_name",
        "personal_code",
    }
    assert head(identification) == before


def test_stale_expected_version_is_409_and_stores_nothing(
    module_system: Any, identification: Any
) -> None:
    client = teacher(module_system, identification)
    pupil_id = client.post("/pupils", a_new_pupil(2)).json()["pupil_id"]
    sign = {"code": "learning.gaps", "observed_on": "2019-09-20", "evidence": "missed grade 6"}
    assert client.post(f"/pupils/{pupil_id}/risk-signs", {**sign, "expected_version": 1}).ok
    before = head(identification)
    stale = client.post(
        f"/pupils/{pupil_id}/risk-signs",
        {**sign, "code": "learning.behaviour", "expected_version": 1},
    )
    assert stale.status_code == 409
    assert stale.json()["error"]["details"] == {"expected_version": 1, "current_version": 3}
    assert head(identification) == before
    pupil = client.get(f"/pupils/{pupil_id}").json()
    assert [s["code"] for s in pupil["risk_signs"]] == ["learning.gaps"]


def test_unknown_route_and_method_answer_in_the_error_shape(identification: Any) -> None:
    client = Client(identification.url, None)
    missing = client.get("/nowhere")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


def test_chassis_routes(identification: Any) -> None:
    client = Client(identification.url, None)
    assert client.get("/health/live").json() == {"status": "alive"}
    assert client.get("/health/ready").json() == {"status": "ready"}
    spec = client.get("/openapi.json").json()
    assert "/pupils/{pupil_id}/risk-signs" in spec["paths"]
    assert "post" in spec["paths"]["/pupils"]
    metrics = client.get("/metrics").text
    assert "pumpurs_outbox_backlog_events" in metrics


@pytest.fixture
def own_identification(system: Any) -> Iterator[Any]:
    """A service of its own, for the test that stops it."""
    service = system.service("identification")
    with running(service):
        yield service


def test_sigterm_stops_an_idle_service_promptly(own_identification: Any) -> None:
    import time

    started = time.monotonic()
    assert own_identification.stop(timeout=15) == 0
    assert time.monotonic() - started < 10
    log = own_identification.log_path.read_text()
    assert "Traceback" not in log and "ERROR" not in log, own_identification.log_tail()


@contextmanager
def starting_behind_a_slow_broker(system: Any) -> Iterator[Any]:
    """Identification just started behind a broker that answers slowly: its web server
    already answers while its consumers are still connecting."""
    upstream = urlsplit(system.broker.base_uri)
    proxy = Proxy((upstream.hostname or "127.0.0.1", upstream.port or 5672)).start()
    try:
        proxy.delay(0.15)
        service = system.service(
            "identification", AMQP_URI=proxied(system.broker.uri_for("identification"), proxy.port)
        )
        service.start(wait=False)
        wait_until(lambda: answers(Client(service.url, None), "/health/live"), timeout=30)
        yield service
    finally:
        proxy.stop()


def test_sigterm_while_starting_stops_the_service_in_order(system: Any) -> None:
    """A rollout may stop a pod in its first seconds."""
    with starting_behind_a_slow_broker(system) as service:
        assert service.stop(timeout=30) == 0
    log = service.log_path.read_text()
    assert "Traceback" not in log and "CRITICAL" not in log, service.log_tail()
    assert "stopping once it has started" in log


def test_a_service_is_not_ready_until_its_consumers_have_started(system: Any) -> None:
    """Kubernetes sends traffic to a pod once it is ready: not while the web server
    answers and the consumers behind it are still connecting."""
    with starting_behind_a_slow_broker(system) as service:
        client = Client(service.url, None)
        starting = client.get("/health/ready")
        assert starting.status_code == 503
        assert starting.json()["error"]["details"]["consumers"] == "does not answer"
        wait_until(lambda: answers(client, "/health/ready"), timeout=60)
        assert service.stop(timeout=30) == 0
    assert "stopping once it has started" not in service.log_path.read_text()


def answers(client: Client, path: str) -> bool:
    try:
        return client.get(path).status_code == 200
    except requests.RequestException:
        return False


def test_a_retried_create_with_the_same_idempotency_key_creates_once(
    module_system: Any, identification: Any
) -> None:
    client = teacher(module_system, identification)
    headers = {"Idempotency-Key": "register-7f3a"}
    body = a_new_pupil(3)
    first = client.post("/pupils", body, headers=headers)
    assert first.status_code == 201
    after_first = head(identification)
    retry = client.post("/pupils", dict(reversed(list(body.items()))), headers=headers)
    assert retry.status_code == 201
    assert retry.json() == first.json()
    assert head(identification) == after_first
    reused = client.post("/pupils", {**body, "grade": 8}, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    assert head(identification) == after_first
