"""Only one relay at a time holds a service's lease; the next takes over when it is let go."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from shared.lease import FileLease


def test_a_second_holder_waits_until_the_first_lets_go(tmp_path: Path) -> None:
    first, second = FileLease(tmp_path / "x.relay-lock"), FileLease(tmp_path / "x.relay-lock")
    assert first.acquire() and first.held()
    assert not second.acquire() and not second.held()
    first.release()
    assert second.acquire() and second.held()


def test_a_lease_held_by_another_process_is_refused_until_that_process_dies(
    tmp_path: Path,
) -> None:
    path = tmp_path / "x.relay-lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from shared.lease import FileLease; "
            f"lease = FileLease(__import__('pathlib').Path({str(path)!r})); "
            "assert lease.acquire(); "
            "print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        assert not FileLease(path).acquire()
    finally:
        holder.kill()
        holder.wait(10)
    assert FileLease(path).acquire(), "the dead holder's lock went with it"
