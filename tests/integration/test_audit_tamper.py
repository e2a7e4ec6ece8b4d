"""Someone with write access to a service's database changes its stored events: verification
names the first broken position, in SQLite and in PostgreSQL.

The tampering switches the immutability triggers off first, as such a person would.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError

from services.identification.application import IdentificationApplication
from services.identification.domain import Pupil
from services.identification.personal_code import check_digit
from shared.audit import adopt_unchained, verify_store
from shared.chain import CHANGED_RECORD, MISSING_RECORD, TRUNCATED_TAIL
from shared.store import guard_stored_events, store_env
from shared.testing import REPO, postgres_conninfo
from tests.pupils import register

SERVICES = ["identification", "planning", "provisioning", "reporting"]


@pytest.fixture
def app(stores: Any, keys_dir: Path) -> Iterator[IdentificationApplication]:
    environ = {**os.environ, **stores.env(SERVICES), "PUMPURS_KEYS_DIR": str(keys_dir)}
    application = IdentificationApplication(store_env("identification", stores.data_dir, environ))
    guard_stored_events(application)
    for n in range(3):
        pupil = register_serial(application, n)
        application.record_risk_sign(
            pupil.id,
            code="learning.absences",
            observed_on=date(2019, 10, 1),
            evidence="25 lessons",
            expected_version=pupil.version,
            by="t",
        )
    yield application
    application.close()


def old_code(serial: int) -> str:
    """The old-format personal code of 2 January 2010 with this serial and its check digit."""
    first_ten = f"0201102{serial:03d}"
    digit = check_digit(first_ten)
    assert digit is not None, "no check digit fits this serial: choose another"
    return f"{first_ten[:6]}-{first_ten[6:]}{digit}"


def register_serial(app: IdentificationApplication, serial: int) -> Any:
    return register(app, personal_code=old_code(serial), birth_date=date(2010, 1, 2))


def tamper(stores: Any, service: str, *statements: tuple[str, Sequence[Any]]) -> None:
    """As someone with write access: switch the triggers off, run the statements, commit.
    Statements name ``{events}``, ``{chain}`` and ``{position}`` (the notification id)."""
    events = stores.events_table(service)
    names = {"events": events, "chain": f"{events}_chain"}
    if stores.kind != "postgres":
        with contextlib.closing(sqlite3.connect(stores.data_dir / f"{service}.sqlite")) as c:
            for table in names.values():
                c.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
                c.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
            for statement, params in statements:
                c.execute(statement.format(**names, position="rowid"), params)
            c.commit()
        return
    import psycopg

    with psycopg.connect(postgres_conninfo(os.environ, stores.database(service))) as c:
        for table in names.values():
            c.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER".encode())
        for statement, params in statements:
            sql = statement.format(**names, position="notification_id").replace("?", "%s")
            c.execute(sql.encode(), params)


def state_at(stores: Any, service: str, at: int) -> bytes:
    pos = "notification_id" if stores.kind == "postgres" else "rowid"
    rows = stores.query(
        service, f"SELECT state FROM {stores.events_table(service)} WHERE {pos} = ?", (at,)
    )
    return bytes(rows[0]["state"])


def flip_a_byte(stores: Any, service: str, at: int) -> None:
    state = bytearray(state_at(stores, service, at))
    state[len(state) // 2] ^= 0x01
    tamper(
        stores, service, ("UPDATE {events} SET state = ? WHERE {position} = ?", (bytes(state), at))
    )


def cut_tail(stores: Any, service: str, after: int) -> None:
    tamper(
        stores,
        service,
        ("DELETE FROM {events} WHERE {position} > ?", (after,)),
        ("DELETE FROM {chain} WHERE position > ?", (after,)),
    )


def pumpurs(stores: Any, keys_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        **stores.env(SERVICES),
        "PUMPURS_DATA_DIR": str(stores.data_dir),
        "PUMPURS_KEYS_DIR": str(keys_dir),
    }
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


# -- the tests ---------------------------------------------------------------------------------


def test_an_untouched_store_verifies_and_erasing_a_pupil_keeps_it_whole(app: Any) -> None:
    before = verify_store(app)
    assert before.ok and before.head_position == app.head() and before.records == app.head()
    pupil = register_serial(app, 9)
    app.erase_pupil(pupil.id, by="dpo")  # destroys the key: the events keep their ciphertext
    after = verify_store(app)
    assert after.ok and after.head_position == app.head() > before.head_position + 1


def test_two_writers_on_one_store_keep_one_chain_through_a_refused_save(
    app: Any, stores: Any, keys_dir: Path
) -> None:
    environ = {**os.environ, **stores.env(SERVICES), "PUMPURS_KEYS_DIR": str(keys_dir)}
    other = IdentificationApplication(store_env("identification", stores.data_dir, environ))
    try:
        for n in range(4):  # each remembers its own last link; the other writes in between
            register_serial(app if n % 2 else other, 21 + n)  # no check digit fits serial 20
        pupil = register_serial(app, 30)
        stale: Pupil = other.repository.get(pupil.id)
        app.erase_pupil(pupil.id, by="dpo")
        stale.erase("dpo")
        with pytest.raises(IntegrityError):  # PostgreSQL: the refused insert used up an id
            other.save(stale)
        register_serial(other, 31)
        register_serial(app, 32)
    finally:
        other.close()
    result = verify_store(app)
    assert result.ok, result.first_broken
    assert result.records == len(app.query(f"SELECT originator_id FROM {app.events_table}"))


def test_a_changed_byte_in_a_stored_event_is_found_at_its_position(app: Any, stores: Any) -> None:
    target = app.head() - 2
    flip_a_byte(stores, "identification", target)
    broken = verify_store(app).first_broken
    assert broken is not None
    assert (broken.position, broken.reason) == (target, CHANGED_RECORD)


def test_a_deleted_row_is_found_at_its_position(app: Any, stores: Any) -> None:
    target = 3
    tamper(
        stores,
        "identification",
        ("DELETE FROM {events} WHERE {position} = ?", (target,)),
        ("DELETE FROM {chain} WHERE position = ?", (target,)),
    )
    result = verify_store(app)
    assert result.first_broken is not None
    assert (result.first_broken.position, result.first_broken.reason) == (target, MISSING_RECORD)


def test_a_truncated_tail_is_found_against_a_checkpoint_kept_from_an_export(
    app: Any, stores: Any, keys_dir: Path, tmp_path: Path
) -> None:
    head = app.head()
    bundle = tmp_path / "bundle"
    export = ["audit", "export", "--service", "identification", "--out", str(bundle)]
    exported = pumpurs(stores, keys_dir, *export)
    assert exported.returncode == 0, exported.stderr
    cut_tail(stores, "identification", after=head - 2)
    assert verify_store(app).ok  # the chain alone cannot tell its tail is gone
    checkpoint = str(bundle / "checkpoint.json")
    args = ["audit", "verify", "--service", "identification", "--json", "--checkpoint", checkpoint]
    verified = pumpurs(stores, keys_dir, *args)
    assert verified.returncode == 1, verified.stderr
    found = json.loads(verified.stdout)["identification"]
    assert found["head_position"] == head - 2
    assert found["first_broken"]["position"] == head - 1
    assert found["first_broken"]["reason"] == TRUNCATED_TAIL


def test_a_store_from_before_the_chain_is_adopted_once(app: Any, stores: Any) -> None:
    tamper(stores, "identification", ("DELETE FROM {chain}", ()))
    assert not verify_store(app).ok
    assert adopt_unchained(app) == app.head()
    assert adopt_unchained(app) == 0
    assert verify_store(app).ok
