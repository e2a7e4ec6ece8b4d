"""A service runs as the container runs it: a read-only root file system, with only its data
folder and a temporary folder writable (the emptyDir volumes of deploy/k8s), configured as in
production (keys given, none generated). It starts, becomes ready and stores what a user
sends. Run in a private mount namespace (`unshare`, root only), so nothing else is affected."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from shared.auth import public_key_pem
from shared.testing import REPO, Client, ServiceProcess, token_for

# Remount / read-only for this process only; then make the given folders writable again.
SANDBOX = """
set -e
mount --bind / / && mount -o remount,bind,ro /
for dir in $WRITABLE; do mount --bind "$dir" "$dir" && mount -o remount,bind,rw "$dir"; done
exec "$@"
"""


def sandboxed(command: list[str], writable: list[Path]) -> tuple[list[str], dict[str, str]]:
    return (
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", SANDBOX, "sh", *command],
        {"WRITABLE": " ".join(str(d) for d in writable)},
    )


class ReadOnlyService(ServiceProcess):
    """``pumpurs serve NAME`` inside the sandbox."""

    writable: list[Path]

    def start(self, wait: bool = True) -> ServiceProcess:
        command, extra = sandboxed(
            [sys.executable, "-m", "shared.cli", "serve", self.name], self.writable
        )
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            command,
            env={**os.environ, **self.env, **extra},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        if wait:
            self.wait_ready()
        return self


def test_the_sandbox_refuses_writes_outside_the_writable_folders(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    script = f"touch {data}/allowed && touch {REPO}/.readonly-probe"
    command, extra = sandboxed(["sh", "-c", script], [data])
    done = subprocess.run(
        command, env={**os.environ, **extra}, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0 and "Read-only file system" in done.stderr, done.stderr
    assert (data / "allowed").exists()
    assert not (REPO / ".readonly-probe").exists()


def test_identification_serves_and_stores_on_a_read_only_root(
    broker: Any, stores: Any, keys_dir: Path, tmp_path: Path
) -> None:
    data, temporary = stores.data_dir, tmp_path / "tmp"
    data.mkdir(parents=True, exist_ok=True)
    temporary.mkdir()
    teacher = token_for("teacher", keys_dir, school="daugavpils-10-vsk")  # makes the dev key
    env = {
        "AMQP_URI": broker.uri,
        **stores.env(["identification"]),
        "PUMPURS_ENV": "production",
        "PUMPURS_JWT_PUBLIC_KEY": public_key_pem({"PUMPURS_KEYS_DIR": str(keys_dir)}).decode(),
        "PUMPURS_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "PYTHONDONTWRITEBYTECODE": "1",
        "TMPDIR": str(temporary),
    }
    service = ReadOnlyService("identification", env, tmp_path)
    service.writable = [data, temporary]
    try:
        service.start()
        client = Client(service.url, teacher)
        answer = client.post(
            "/pupils",
            {
                "school_id": "daugavpils-10-vsk",
                "grade": 7,
                "given_name": "Anna",
                "family_name": "Bērziņa",
                "personal_code": "321208-10001",
                "birth_date": "2008-03-01",
                "gender": "F",
            },
        )
        assert answer.status_code == 201, answer.text
        pupil = client.get(f"/pupils/{answer.json()['pupil_id']}")
        assert pupil.status_code == 200 and pupil.json()["family_name"] == "Bērziņa"
    finally:
        service.stop()
    assert "Read-only file system" not in service.log_tail(400)
