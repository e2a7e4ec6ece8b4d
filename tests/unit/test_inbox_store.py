"""The inbox's atomicity: an effect and its tracking record commit together, once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError, Tracking

from services.planning.application import PlanningApplication
from shared.contracts import Envelope
from shared.inbox import IncomingEvent
from shared.store import store_env

PUPIL = "2b8e4b41-7a39-4b55-8d0e-7d3c4e0c9f10"


@pytest.fixture
def app(tmp_path: Path) -> Any:
    application = PlanningApplication(store_env("planning", tmp_path, {}))
    yield application
    application.close()


def incoming(notification_id: int, event_type: str, payload: dict[str, Any]) -> IncomingEvent:
    envelope = Envelope(
        event_id=f"00000000-0000-0000-0000-{notification_id:012d}",
        event_type=event_type,
        schema_version=1,
        source="identification",
        notification_id=notification_id,
        previous_id=notification_id - 1 or None,
        occurred_at=datetime(2019, 10, 1, tzinfo=UTC),
        aggregate_id=PUPIL,
        aggregate_version=notification_id,
        actor="t",
        payload=payload,
    )
    return IncomingEvent(envelope, payload)


def test_applied_events_build_the_read_model_and_track_progress(app: Any) -> None:
    app.apply_identification_event(
        incoming(1, "pupil_registered", {"school_id": "s1", "grade": 6, "gender": "F"})
    )
    assert app.pupils_at_risk(None) == []
    app.apply_identification_event(incoming(2, "pupil_flagged_at_risk", {"school_id": "s1"}))
    assert [p["pupil_id"] for p in app.pupils_at_risk(["s1"])] == [PUPIL]
    assert app.last_tracked("identification") == 2


def test_the_same_event_cannot_be_applied_twice(app: Any) -> None:
    event = incoming(1, "pupil_registered", {"school_id": "s1", "grade": 6, "gender": "F"})
    app.apply_identification_event(event)
    with pytest.raises(IntegrityError):
        app.apply_identification_event(event)
    rows = app.query("SELECT applied_events FROM planning_pupils")
    assert [r["applied_events"] for r in rows] == [1]


def test_a_failing_effect_leaves_no_tracking_record(app: Any) -> None:
    def broken(sql: Any) -> None:
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        app.save_tracked(tracking=Tracking("identification", 1), effects=[broken])
    assert app.last_tracked("identification") == 0
