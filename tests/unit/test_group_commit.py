"""Group commit: saves in progress together share one transaction, and each caller still
gets its own answer, or the error it would have got alone. On both stores.

The services run under eventlet, where the saves that arrive while one leads queue for
the next commit; here the callers are native threads started together, and the leader is
told to wait until the test's saves have all queued, so the group is the same each run.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from eventsourcing.persistence import OperationalError

from services.identification.application import IdentificationApplication, PersonalCodeTakenError
from shared import groupcommit
from shared.audit import verify_store
from shared.store import store_env
from shared.testing import Stores
from tests.pupils import register

SCHOOL = "daugavpils-10-vsk"


@pytest.fixture
def app(stores: Stores) -> Iterator[IdentificationApplication]:
    environ = {**os.environ, **stores.env(["identification"])}
    env = store_env("identification", environ["PUMPURS_DATA_DIR"], environ)
    application = IdentificationApplication(env, master=os.urandom(32))
    yield application
    application.close()


@pytest.fixture
def commits(app: IdentificationApplication) -> list[int]:
    """How many saves each commit held, as the service's metric hears it."""
    held: list[int] = []
    app.recorder.group_commit.observe = held.append  # type: ignore[attr-defined]
    return held


def gather_saves(monkeypatch: pytest.MonkeyPatch, app: IdentificationApplication, n: int) -> None:
    """The leader of a group waits until ``n`` saves have queued behind it."""
    group_commit = app.recorder.group_commit  # type: ignore[attr-defined]
    monkeypatch.setattr(group_commit, "_wait_for_ready", True)
    monkeypatch.setattr(groupcommit, "MAX_WAIT_SECONDS", 10.0)
    monkeypatch.setattr(groupcommit, "_others_ready", lambda: len(group_commit._waiting) < n)


def code(serial: int) -> str:
    return f"32{serial:04d}-{serial:05d}"


def at_once(calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run the calls in threads started together; each one's result or exception."""
    results: list[Any] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads), "a save never returned"
    return results


def test_saves_in_progress_together_commit_once_and_each_reads_back_as_its_own(
    app: IdentificationApplication, commits: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    gather_saves(monkeypatch, app, 8)
    pupils = at_once([functools.partial(register, app, personal_code=code(n)) for n in range(8)])

    assert commits == [8]
    assert len({p.id for p in pupils}) == 8
    for n, pupil in enumerate(pupils):
        view = app.read_pupil(app.get_pupil(pupil.id), reader="teacher-1", role="teacher")
        assert (view["personal_code"], view["version"]) == (code(n), 1)
    verification = verify_store(app)  # the audit chain holds every event, in order
    assert verification.ok and verification.records == 8


@pytest.mark.parametrize("together", [2, 4])
def test_a_save_refused_in_a_group_gets_its_own_error_and_the_others_commit(
    app: IdentificationApplication,
    commits: list[int],
    monkeypatch: pytest.MonkeyPatch,
    together: int,
) -> None:
    gather_saves(monkeypatch, app, together)
    # the last two register the same child
    calls = [
        functools.partial(register, app, personal_code=code(min(n, together - 2)))
        for n in range(together)
    ]
    results = at_once(calls)

    refused = [r for r in results if isinstance(r, Exception)]
    assert len(refused) == 1 and isinstance(refused[0], PersonalCodeTakenError)
    registered = [r for r in results if not isinstance(r, Exception)]
    assert sum(commits) == together - 1
    assert refused[0].details["pupil_id"] in {str(p.id) for p in registered}  # names the winner
    for pupil in registered:
        assert app.get_pupil(pupil.id).version == 1
    verification = verify_store(app)
    assert verification.ok and verification.records == together - 1


def test_a_group_that_fails_whole_stores_nothing_of_it_and_each_save_commits_alone(
    app: IdentificationApplication, commits: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    gather_saves(monkeypatch, app, 5)
    insert = app.recorder._insert_events  # type: ignore[attr-defined]
    calls = {"n": 0}

    def disk_fails_once(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:  # two saves of the group are written already
            raise OperationalError("disk I/O error")
        return insert(*args, **kwargs)

    monkeypatch.setattr(app.recorder, "_insert_events", disk_fails_once)
    pupils = at_once([functools.partial(register, app, personal_code=code(n)) for n in range(5)])

    assert not any(isinstance(p, Exception) for p in pupils)
    assert commits == [1, 1, 1, 1, 1]
    assert sorted(app.get_pupil(p.id).version for p in pupils) == [1] * 5
    verification = verify_store(app)
    assert verification.ok and verification.records == 5
