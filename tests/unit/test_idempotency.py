"""Kept answers of Idempotency-Key requests: replayed for a day, then gone."""

from __future__ import annotations

import pytest

from services.identification.application import IdentificationApplication
from shared.idempotency import IdempotencyKeyReusedError, IdempotencyStore

DAY = 24 * 3600


@pytest.fixture
def app(identification_app: IdentificationApplication) -> IdentificationApplication:
    return identification_app


def test_an_answer_is_replayed_for_a_day_and_then_the_key_is_free(
    app: IdentificationApplication,
) -> None:
    now = [1_000_000.0]
    store = IdempotencyStore(app, clock=lambda: now[0])
    key = store.key_hash("teacher-1", "POST /imports/journal?school_id=x", "k")
    request = store.request_hash(b"personal_code,...")
    store.keep(key, request, 200, b'{"registered": 3}')
    now[0] += DAY - 1
    kept = store.find(key, request)
    assert kept is not None and (kept.status, kept.body) == (200, '{"registered": 3}')
    with pytest.raises(IdempotencyKeyReusedError):
        store.find(key, store.request_hash(b"another file"))
    now[0] += 2
    assert store.find(key, request) is None
    assert store.find(key, store.request_hash(b"another file")) is None
    store.keep(key, store.request_hash(b"another file"), 200, b'{"registered": 0}')
    again = store.find(key, store.request_hash(b"another file"))
    assert again is not None and again.body == '{"registered": 0}'
    rows = app.query(f"SELECT request_hash FROM {store.table}")
    assert [row["request_hash"] for row in rows] == [store.request_hash(b"another file")]
