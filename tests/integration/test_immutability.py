"""Stored events cannot be updated or deleted, in SQLite and in PostgreSQL."""

from __future__ import annotations

import os
from datetime import date
from typing import Any

import pytest

from services.identification.application import IdentificationApplication
from shared.store import guard_stored_events, store_env


@pytest.fixture
def app(stores: Any) -> Any:
    environ = {**os.environ, **stores.env(["identification"])}
    application = IdentificationApplication(store_env("identification", stores.data_dir, environ))
    guard_stored_events(application)
    yield application
    application.close()


def _one_pupil(app: Any) -> Any:
    return app.register_pupil(
        school_id="daugavpils-10-vsk",
        grade=6,
        gender="F",
        given_name="Ilze",
        family_name="Liepa",
        personal_code="020110-20007",
        birth_date=date(2010, 1, 2),
        by="t",
    )


def test_update_of_a_stored_event_is_refused(app: Any) -> None:
    pupil = _one_pupil(app)
    with pytest.raises(Exception, match="immutable"), app.transaction() as sql:
        sql.execute(f"UPDATE {app.events_table} SET topic = 'x'")
    assert app.get_pupil(pupil.id).grade == 6


def test_delete_of_a_stored_event_is_refused(app: Any) -> None:
    pupil = _one_pupil(app)
    with pytest.raises(Exception, match="immutable"), app.transaction() as sql:
        sql.execute(f"DELETE FROM {app.events_table}")
    assert app.get_pupil(pupil.id).version == 1
    assert app.head() == 1
