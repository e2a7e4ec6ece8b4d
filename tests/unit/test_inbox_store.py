"""The inbox's atomicity: an effect and its tracking record commit together, once."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError, Tracking

from services.planning.application import PlanningApplication
from shared.contracts import Envelope
from shared.inbox import IncomingEvent
from shared.store import store_env
from shared.testing import Stores

PUPIL = "2b8e4b41-7a39-4b55-8d0e-7d3c4e0c9f10"


@pytest.fixture
def app(stores: Stores) -> Any:
    environ = {**os.environ, **stores.env(["planning"])}
    application = PlanningApplication(store_env("planning", environ["PUMPURS_DATA_DIR"], environ))
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


def test_events_applied_together_keep_a_tracking_record_each(app: Any) -> None:
    registered = {"school_id": "s1", "grade": 6, "gender": "F"}
    app.apply_identification_events(
        [incoming(1, "pupil_registered", registered)]
        + [incoming(n, "pupil_flagged_at_risk", {"school_id": "s1"}) for n in (2, 3, 4)]
    )
    assert app.last_tracked("identification") == 4
    for n in (1, 2, 3, 4):  # a replica applying any one of them again is refused
        with pytest.raises(IntegrityError):
            app.save_tracked(tracking=Tracking("identification", n))


def test_a_batch_holding_one_event_applied_already_stores_nothing(app: Any) -> None:
    registered = {"school_id": "s1", "grade": 6, "gender": "F"}
    app.save_tracked(tracking=Tracking("identification", 2))  # a replica applied #2
    with pytest.raises(IntegrityError):
        app.apply_identification_events(
            [incoming(1, "pupil_registered", registered)]
            + [incoming(n, "pupil_flagged_at_risk", {"school_id": "s1"}) for n in (2, 3, 4)]
        )
    assert app.query("SELECT pupil_id FROM planning_pupils") == []
    for n in (1, 3, 4):  # none of the batch's other records was kept
        app.save_tracked(tracking=Tracking("identification", n))
