"""Per-pupil keys wrapped by the master key, and where the master key comes from."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from uuid import uuid4

import pytest

from services.identification.crypto import MASTER_KEY_FILE, KeyRing, UnreadableError, master_key

MASTER = bytes(range(32))


def test_a_sealed_value_opens_only_with_its_pupils_key_and_purpose() -> None:
    ring = KeyRing(MASTER)
    key = ring.new_pupil_key(uuid4())
    sealed = key.seal("personal_data", "Jānis Ozoliņš")
    assert "Jānis" not in sealed
    assert key.open("personal_data", sealed) == "Jānis Ozoliņš"
    with pytest.raises(UnreadableError):
        key.open("evidence", sealed)
    with pytest.raises(UnreadableError):
        ring.new_pupil_key(uuid4()).open("personal_data", sealed)


def test_sealing_twice_gives_different_ciphertexts() -> None:
    key = KeyRing(MASTER).new_pupil_key(uuid4())
    assert key.seal("evidence", "x") != key.seal("evidence", "x")


def test_a_wrapped_key_unwraps_only_for_its_pupil_and_master_key() -> None:
    ring = KeyRing(MASTER)
    key = ring.new_pupil_key(uuid4())
    wrapped = ring.wrap(key)
    assert ring.unwrap(key.pupil_id, wrapped).key == key.key
    with pytest.raises(UnreadableError):
        ring.unwrap(uuid4(), wrapped)
    with pytest.raises(UnreadableError):
        KeyRing(os.urandom(32)).unwrap(key.pupil_id, wrapped)


def test_the_code_index_is_keyed() -> None:
    assert KeyRing(MASTER).code_digest("010308-20005") == KeyRing(MASTER).code_digest(
        "010308-20005"
    )
    assert KeyRing(MASTER).code_digest("010308-20005") != KeyRing(os.urandom(32)).code_digest(
        "010308-20005"
    )
    assert "010308" not in KeyRing(MASTER).code_digest("010308-20005")


def test_the_configured_master_key_is_used(tmp_path: Path) -> None:
    configured = base64.b64encode(MASTER).decode()
    environ = {"PUMPURS_MASTER_KEY": configured, "PUMPURS_KEYS_DIR": str(tmp_path)}
    assert master_key(environ) == MASTER
    assert not (tmp_path / MASTER_KEY_FILE).exists()


def test_development_generates_a_private_key_once(tmp_path: Path) -> None:
    environ = {"PUMPURS_KEYS_DIR": str(tmp_path / "keys")}
    first = master_key(environ)
    assert len(first) == 32
    assert master_key(environ) == first
    assert (tmp_path / "keys" / MASTER_KEY_FILE).stat().st_mode & 0o077 == 0


def test_outside_development_the_key_is_required(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="PUMPURS_MASTER_KEY must be set"):
        master_key({"PUMPURS_ENV": "production", "PUMPURS_KEYS_DIR": str(tmp_path)})
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("value", ["not base64!", base64.b64encode(b"short").decode()])
def test_a_malformed_master_key_is_refused(value: str) -> None:
    with pytest.raises(RuntimeError, match="PUMPURS_MASTER_KEY"):
        master_key({"PUMPURS_MASTER_KEY": value, "PUMPURS_ENV": "production"})
