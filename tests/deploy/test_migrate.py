"""``pumpurs migrate NAME`` (the Kubernetes migration Job) readies a service's store before
any replica starts, and running it again changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from shared.cli import SERVICES
from shared.testing import REPO


def migrate(service: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", "migrate", service],
        env={**os.environ, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def immutability_triggers(stores: Any, service: str) -> list[Any]:
    if stores.kind == "postgres":
        return stores.query(
            service,
            "SELECT tgname FROM pg_trigger WHERE tgrelid = ?::regclass AND NOT tgisinternal",
            (stores.events_table(service),),
        )
    return stores.query(
        service,
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?",
        (stores.events_table(service),),
    )


def test_migrate_creates_every_table_of_each_service_once(stores: Any, keys_dir: Path) -> None:
    env = {**stores.env(sorted(SERVICES)), "PUMPURS_KEYS_DIR": str(keys_dir)}
    for service in sorted(SERVICES):
        done = migrate(service, env)
        assert done.returncode == 0, done.stderr
        assert f"{service}: tables are in place" in done.stdout
        # The tables a replica needs exist before any replica started.
        assert stores.query(service, f"SELECT * FROM {stores.events_table(service)}") == []
        assert stores.query(service, f"SELECT * FROM {service}_relay_position") == []
        assert stores.query(service, f"SELECT * FROM {service}_idempotency") == []
        # Stored events are already guarded against UPDATE and DELETE.
        assert immutability_triggers(stores, service)

    again = migrate("planning", env)
    assert again.returncode == 0, again.stderr
    assert stores.query("planning", f"SELECT * FROM {stores.events_table('planning')}") == []


def test_migrate_of_an_unknown_service_is_refused_with_the_choices(stores: Any) -> None:
    done = migrate("billing", stores.env([]))
    assert done.returncode == 2
    assert "invalid choice: 'billing'" in done.stderr
    assert "identification" in done.stderr
