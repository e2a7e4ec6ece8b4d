"""The rate limit (429 with Retry-After) and the body size limit (413) on a real service."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from shared.testing import Client, running
from shared.web import DEFAULT_MAX_BODY

SCHOOL = "daugavpils-10-vsk"
BURST = 3


@pytest.fixture(scope="module")
def identification(module_system: Any) -> Iterator[Any]:
    service = module_system.service(
        "identification",
        PUMPURS_RATE_LIMIT_PER_SECOND="1",
        PUMPURS_RATE_LIMIT_BURST=str(BURST),
    )
    with running(service):
        yield service


def client(system: Any, service: Any, sub: str) -> Client:
    return Client(service.url, system.token("teacher", school=SCHOOL, sub=sub))


def assert_rate_limited(answer: requests.Response) -> int:
    assert answer.status_code == 429
    assert answer.json()["error"]["code"] == "rate_limited"
    retry_after = int(answer.headers["Retry-After"])
    assert retry_after >= 1
    assert answer.json()["error"]["details"] == {"retry_after_seconds": retry_after}
    return retry_after


def test_a_caller_over_its_rate_gets_429_and_retry_after_is_honest(
    module_system: Any, identification: Any
) -> None:
    teacher = client(module_system, identification, "teacher-rate")
    answers = [teacher.get("/schools") for _ in range(BURST + 1)]
    assert [a.status_code for a in answers[:BURST]] == [200] * BURST
    retry_after = assert_rate_limited(answers[BURST])

    # Another caller has a bucket of its own; health and metrics are never limited.
    assert client(module_system, identification, "teacher-other").get("/schools").ok
    anonymous = Client(identification.url, None)
    for _ in range(BURST + 1):
        assert anonymous.get("/health/ready").status_code == 200
        assert anonymous.get("/metrics").status_code == 200

    time.sleep(retry_after)
    assert teacher.get("/schools").status_code == 200
    assert identification.metric(
        "pumpurs_http_requests_total", route="/schools", method="GET", status="429"
    ) == pytest.approx(1)


def test_requests_without_a_valid_token_are_limited_by_address(identification: Any) -> None:
    anonymous = Client(identification.url, None)
    statuses = [anonymous.get("/pupils").status_code for _ in range(BURST)]
    assert statuses == [401] * BURST
    assert_rate_limited(anonymous.get("/pupils"))
    # Guessing tokens counts against the same address.
    assert_rate_limited(Client(identification.url, "not.a.token").get("/pupils"))


def test_a_body_over_the_limit_is_413_and_stores_nothing(
    module_system: Any, identification: Any
) -> None:
    teacher = client(module_system, identification, "teacher-big")
    pupil = {
        "school_id": SCHOOL,
        "grade": 7,
        "gender": "F",
        "given_name": "A" * DEFAULT_MAX_BODY,
        "family_name": "Liepa",
        "personal_code": "040509-20007",
        "birth_date": "2009-05-04",
    }
    answer = teacher.post("/pupils", pupil)
    assert answer.status_code == 413
    assert answer.json()["error"] == {
        "code": "payload_too_large",
        "message": f"the request body is larger than {DEFAULT_MAX_BODY} bytes",
        "details": {"max_bytes": DEFAULT_MAX_BODY},
    }
    listed = teacher.get("/pupils", params={"school_id": SCHOOL})
    assert listed.status_code == 200
    assert listed.json()["items"] == []
