"""Every stored event maps to an integration event, chained by previous ids, no personal data."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from services.identification.application import IdentificationApplication
from shared.outbox import read_envelopes
from shared.store import store_env


@pytest.fixture
def app(tmp_path: Path) -> Any:
    application = IdentificationApplication(store_env("identification", tmp_path, {}))
    yield application
    application.close()


def test_the_notification_log_becomes_a_chain_of_envelopes(app: Any) -> None:
    pupil = app.register_pupil(
        school_id="daugavpils-6-vsk",
        grade=9,
        gender="M",
        given_name="Pēteris",
        family_name="Kalniņš",
        personal_code="030206-20009",
        birth_date=date(2006, 2, 3),
        by="anna",
    )
    app.record_risk_sign(
        pupil.id,
        code="economic.paid_work",
        observed_on=date(2019, 9, 9),
        evidence="works nights",
        expected_version=1,
        by="anna",
    )
    envelopes = read_envelopes(app, after=0, limit=10)
    assert [e.event_type for e in envelopes] == [
        "pupil_registered",
        "risk_sign_recorded",
        "pupil_flagged_at_risk",
    ]
    assert [e.previous_id for e in envelopes] == [None, 1, 2]
    assert {e.actor for e in envelopes} == {"anna"}
    assert envelopes[0].payload == {"school_id": "daugavpils-6-vsk", "grade": 9, "gender": "M"}
    # Free-text evidence stays in the store; it is not part of the contract.
    assert envelopes[1].payload == {
        "code": "economic.paid_work",
        "observed_on": "2019-09-09",
        "source": "assessment",
    }
    # A later page names the last id before it as its previous one.
    assert read_envelopes(app, after=2, limit=10)[0].previous_id == 2
    # Event ids are stable, so a republished event is recognisable.
    assert read_envelopes(app, after=0, limit=1)[0].event_id == envelopes[0].event_id
