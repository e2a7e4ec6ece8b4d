"""Fixtures several unit-test modules share."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.identification.application import IdentificationApplication
from shared.store import store_env


@pytest.fixture
def identification_app(tmp_path: Path) -> Iterator[IdentificationApplication]:
    """Identification's application on a SQLite file of its own, with a new master key."""
    application = IdentificationApplication(
        store_env("identification", tmp_path, {}), master=os.urandom(32)
    )
    yield application
    application.close()
