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


def test_answers_kept_by_the_earlier_release_are_replayed_for_a_day_after_the_upgrade(
    app: IdentificationApplication,
) -> None:
    """The release before kept answers without a time: a retry that spans the upgrade
    still gets its first answer (before, the first keyed request dropped them all)."""
    earlier = IdempotencyStore(app)
    key = earlier.key_hash("teacher-1", "POST /pupils", "k")
    request = earlier.request_hash(b'{"personal_code": "..."}')
    earlier.keep(key, request, 201, b'{"pupil_id": "p-1"}')
    with app.transaction() as sql:  # the table as the earlier release left it
        sql.execute(f"DROP INDEX {earlier.table}_kept_at")
        sql.execute(f"ALTER TABLE {earlier.table} DROP COLUMN kept_at")

    now = [2_000_000.0]
    store = IdempotencyStore(app, clock=lambda: now[0])  # this release starts
    store.keep(store.key_hash("teacher-2", "POST /pupils", "other"), request, 201, b"{}")
    kept = store.find(key, request)
    assert kept is not None and (kept.status, kept.body) == (201, '{"pupil_id": "p-1"}')
    now[0] += DAY + 1
    assert store.find(key, request) is None
