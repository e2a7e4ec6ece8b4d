"""Rotating the master key: every pupil stays readable and findable, under the new key only."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from services.identification.application import (
    IdentificationApplication,
    PersonalCodeTakenError,
)
from services.identification.crypto import UnreadableError
from services.identification.personal_code import check_digit
from shared.cli import main
from shared.store import store_env

SCHOOL = "daugavpils-10-vsk"
OLD, NEW = os.urandom(32), os.urandom(32)


def old_code(serial: int) -> str:
    """The old-format personal code of 1 March 2008 with this serial and its check digit."""
    first_ten = f"0103082{serial:03d}"
    digit = check_digit(first_ten)
    assert digit is not None, "no check digit fits this serial: choose another"
    return f"{first_ten[:6]}-{first_ten[6:]}{digit}"


def pupil(code: str, family: str) -> dict[str, Any]:
    return {
        "school_id": SCHOOL,
        "grade": 7,
        "gender": "F",
        "given_name": "Līga",
        "family_name": family,
        "personal_code": code,
        "birth_date": date(2008, 3, 1),
        "by": "t",
    }


@pytest.fixture
def stored(tmp_path: Path) -> Iterator[tuple[Path, list[Any]]]:
    app = IdentificationApplication(store_env("identification", tmp_path, {}), master=OLD)
    kept = [app.register_pupil(**pupil(old_code(i), f"Ozola{i}")) for i in range(3)]
    erased = app.register_pupil(**pupil(old_code(9), "Dzēstā"))
    app.erase_pupil(erased.id, by="dpo")
    app.close()
    yield tmp_path, kept


def reopened(data_dir: Path, master: bytes) -> IdentificationApplication:
    return IdentificationApplication(store_env("identification", data_dir, {}), master=master)


def test_after_rotation_the_new_key_reads_everyone_and_the_old_key_nobody(
    stored: tuple[Path, list[Any]],
) -> None:
    data_dir, kept = stored
    assert reopened(data_dir, OLD).rotate_master_key(NEW) == 3  # the erased pupil has no key

    app = reopened(data_dir, NEW)
    for i, p in enumerate(kept):
        view = app.read_pupil(app.get_pupil(p.id), reader="auditor", role="auditor")
        assert (view["family_name"], view["personal_code"]) == (f"Ozola{i}", old_code(i))
    with pytest.raises(PersonalCodeTakenError):
        app.register_pupil(**pupil(old_code(1), "Atkārtota"))
    assert app.register_pupil(**pupil(old_code(9), "Jauna")).id  # erased code is free

    old = reopened(data_dir, OLD)
    with pytest.raises(UnreadableError):
        old.key_of(old.get_pupil(kept[0].id))


def test_the_command_rotates_and_moves_the_development_key(
    stored: tuple[Path, list[Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir, kept = stored
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "identification-master.key").write_text(base64.b64encode(OLD).decode())
    new_file = tmp_path / "new.key"
    new_file.write_text(base64.b64encode(NEW).decode())
    monkeypatch.setenv("PUMPURS_DATA_DIR", str(data_dir))
    monkeypatch.setenv("PUMPURS_KEYS_DIR", str(keys))
    monkeypatch.delenv("PUMPURS_MASTER_KEY", raising=False)

    assert main(["identification", "rotate-master-key", "--new-key-file", str(new_file)]) == 0

    assert (keys / "identification-master.key").read_text() == new_file.read_text()
    app = reopened(data_dir, NEW)
    assert app.key_of(app.get_pupil(kept[2].id)).pupil_id == kept[2].id


def test_a_wrong_current_key_changes_nothing(stored: tuple[Path, list[Any]]) -> None:
    data_dir, kept = stored
    with pytest.raises(UnreadableError):
        reopened(data_dir, os.urandom(32)).rotate_master_key(NEW)
    app = reopened(data_dir, OLD)
    assert app.key_of(app.get_pupil(kept[0].id)).pupil_id == kept[0].id
