"""Integration-event envelopes and the registry of contracts."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.contracts import Envelope, InvalidMessageError, UnknownEventError, registry


def envelope(**overrides: Any) -> dict[str, Any]:
    body = {
        "event_id": "8d6b6a3e-6f1f-4a77-9d53-0c2b7d0b6a11",
        "event_type": "pupil_flagged_at_risk",
        "schema_version": 1,
        "source": "identification",
        "notification_id": 7,
        "previous_id": 6,
        "occurred_at": "2019-10-01T08:00:00+00:00",
        "aggregate_id": "2b8e4b41-7a39-4b55-8d0e-7d3c4e0c9f10",
        "aggregate_version": 3,
        "actor": "teacher-1",
        "payload": {"school_id": "daugavpils-10-vsk"},
    }
    body.update(overrides)
    return body


def test_a_valid_envelope_loads_and_its_payload_validates() -> None:
    loaded = Envelope.from_message(envelope())
    assert loaded.notification_id == 7
    assert registry.load(loaded) == {"school_id": "daugavpils-10-vsk"}


@pytest.mark.parametrize(
    "change",
    [
        {"notification_id": 0},
        {"notification_id": "7"},
        {"occurred_at": "2019-10-01T08:00:00"},  # no time zone
        {"event_id": "not-a-uuid"},
        {"payload": []},
    ],
)
def test_an_invalid_envelope_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(InvalidMessageError):
        Envelope.from_message(envelope(**change))


def test_an_unknown_type_or_version_is_refused() -> None:
    with pytest.raises(UnknownEventError):
        registry.load(Envelope.from_message(envelope(schema_version=2)))
    with pytest.raises(UnknownEventError):
        registry.load(Envelope.from_message(envelope(event_type="pupil_vanished")))


def test_a_payload_with_extra_fields_is_refused() -> None:
    loaded = Envelope.from_message(envelope(payload={"school_id": "x", "family_name": "Bērziņa"}))
    with pytest.raises(InvalidMessageError):
        registry.load(loaded)


def test_a_contract_publishes_only_its_declared_fields() -> None:
    event = SimpleNamespace(
        school_id="daugavpils-10-vsk",
        grade=7,
        gender="M",
        birth_date="2008-01-01",
        family_name="Ozoliņš",
        by="teacher-1",
    )
    contract = registry.for_domain_event("identification", "Pupil.Registered")
    assert contract.dump(event) == {"school_id": "daugavpils-10-vsk", "grade": 7, "gender": "M"}


@given(
    notification_id=st.integers(min_value=2, max_value=2**53),
    version=st.integers(min_value=1, max_value=10_000),
    actor=st.text(min_size=1, max_size=50),
    at=st.datetimes(timezones=st.just(UTC), min_value=datetime(2017, 1, 1)),
)
def test_an_envelope_round_trips(
    notification_id: int, version: int, actor: str, at: datetime
) -> None:
    original = Envelope.from_message(
        envelope(
            notification_id=notification_id,
            previous_id=notification_id - 1,
            aggregate_version=version,
            actor=actor,
            occurred_at=at.isoformat(),
        )
    )
    assert Envelope.from_message(original.to_message()) == original
