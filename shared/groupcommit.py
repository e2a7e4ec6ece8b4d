"""Group commit: saves of events that arrive together share one transaction.

A commit of stored events costs the same whatever it holds: on SQLite a wait for the disk
(``synchronous=FULL``) that stalls the whole eventlet process; on PostgreSQL a BEGIN, the
events table's lock and a COMMIT, each a round trip, with every other writer queued on
the lock meanwhile, each holding a pooled connection. So one save leads at a time, and
the saves that arrive while it leads queue behind it and are committed by the next
leader, all in one transaction, each woken with its own answer. On SQLite, where nobody
can queue while a commit blocks the hub, a leader first yields while other greenthreads
are ready to run, so the requests in progress reach their own save and join it. A save
with nobody else in progress commits as before, after one yield.

Nothing changes for a caller: its save returns only after the transaction holding it
committed, with its own notification ids. A save the shared transaction left out (SQLite
rolls back to its savepoint one the database refused: a concurrent version, a taken
personal code) is committed again on its own, so its caller gets exactly the error it
would have got alone; if the shared transaction fails as a whole, nothing of it was
stored and every save in it is committed again on its own.

The primitives are ``threading``'s, which eventlet's monkey patch makes green; without
it they are native and the group works across threads.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

R = TypeVar("R")

log = logging.getLogger(__name__)

# A transaction's size stays bounded however many saves wait (a service runs 16 workers).
MAX_GROUP = 64
# How long a leader lets ready greenthreads run before it commits regardless: about the
# work of a few requests, so a process that never goes idle still commits.
MAX_WAIT_SECONDS = 0.01

_COMMITTED, _ALONE, _LEAD = "committed", "alone", "lead"


class Save(Generic[R]):
    """One caller's save, waiting for the group that holds it."""

    def __init__(self, stored_events: Sequence[Any], kwargs: dict[str, Any]) -> None:
        self.stored_events = stored_events
        self.kwargs = kwargs
        self.result: R | None = None
        self.stored = False
        self.state: str | None = None
        self._woken = threading.Event()

    def done(self, result: R) -> None:
        """Called by ``together`` once the save is written into the shared transaction."""
        self.result, self.stored = result, True

    def wake(self, state: str) -> None:
        self.state = state
        self._woken.set()

    def wait(self) -> str:
        self._woken.wait()
        assert self.state is not None
        return self.state


class GroupCommit(Generic[R]):
    """Commits saves together.

    ``together`` writes a group in one transaction, calling ``done`` on each save it wrote
    (a save it had to leave out stays not done); ``alone`` commits one save in a
    transaction of its own. ``observe`` hears how many saves each commit held.
    """

    def __init__(
        self,
        together: Callable[[Sequence[Save[R]]], None],
        alone: Callable[[Save[R]], R],
        *,
        wait_for_ready: bool,
    ) -> None:
        self._together = together
        self._alone = alone
        # SQLite's commit blocks the hub, so nobody can queue while it runs: a leader waits
        # for the requests in progress instead. PostgreSQL's commit yields, and the saves
        # that arrive during it form the next group.
        self._wait_for_ready = wait_for_ready
        self._lock = threading.Lock()
        self._waiting: list[Save[R]] = []
        self._leading = False
        self.observe: Callable[[int], None] = lambda saves: None

    def save(self, stored_events: Sequence[Any], kwargs: dict[str, Any]) -> R:
        save: Save[R] = Save(stored_events, kwargs)
        with self._lock:
            self._waiting.append(save)
            state = None if self._leading else _LEAD
            self._leading = True
        if state is None:
            state = self._wait(save)
        if state == _LEAD:
            state = self._lead(save)
        if state == _ALONE:
            return self._commit_alone(save)
        return save.result  # type: ignore[return-value]

    def _wait(self, save: Save[R]) -> str:
        try:
            return save.wait()
        except BaseException:  # killed while waiting: never leave the queue without a leader
            with self._lock:
                if save in self._waiting:
                    self._waiting.remove(save)
            if save.state == _LEAD:
                self._pass_on()
            raise

    def _commit_alone(self, save: Save[R]) -> R:
        result = self._alone(save)
        self.observe(1)
        return result

    def _lead(self, own: Save[R]) -> str:
        group: list[Save[R]] = []
        committed = False
        try:
            if self._wait_for_ready:
                self._let_others_join()
            with self._lock:
                group, self._waiting = self._waiting[:MAX_GROUP], self._waiting[MAX_GROUP:]
            if len(group) == 1:  # the plain path, still leading: saves arriving now queue
                own.done(self._commit_alone(own))  # its errors are its caller's
                return _COMMITTED
            self._together(group)
            committed = True
            if stored := sum(save.stored for save in group):
                self.observe(stored)
        except Exception:
            if len(group) == 1:
                raise
            log.warning("a group commit of %d saves failed; each commits on its own", len(group))
        finally:
            # Also when the leader is killed (GreenletExit): nobody is left waiting.
            if not group:
                with self._lock:
                    self._waiting.remove(own)
            for save in group:
                if save is not own:
                    save.wake(_COMMITTED if committed and save.stored else _ALONE)
            self._pass_on()
        return _COMMITTED if committed and own.stored else _ALONE

    def _let_others_join(self) -> None:
        """Yield while other greenthreads are ready to run, so the requests in progress
        reach their own save; bounded, so a process that never goes idle still commits."""
        deadline = time.monotonic() + MAX_WAIT_SECONDS
        time.sleep(0)
        while _others_ready() and time.monotonic() < deadline:
            time.sleep(0)

    def _pass_on(self) -> None:
        with self._lock:
            if not self._waiting:
                self._leading = False
                return
            successor = self._waiting[0]
        successor.wake(_LEAD)


def _others_ready() -> bool:
    """Whether eventlet's hub has greenthreads due to run now (never without eventlet).

    Reads the hub's timer lists (eventlet 0.41, pinned): a greenthread that was spawned or
    woken waits there until the hub runs it. Each yield also lets the hub poll for I/O,
    so requests that arrived meanwhile are read and their workers spawned."""
    patcher = sys.modules.get("eventlet.patcher")
    hubs = sys.modules.get("eventlet.hubs")
    if patcher is None or hubs is None or not patcher.is_monkey_patched("thread"):
        return False
    hub = hubs.get_hub()
    try:
        now = hub.clock()
        if any(when <= now for when, _ in hub.next_timers):
            return True
        return bool(hub.timers) and hub.timers[0][0] <= now
    except (AttributeError, TypeError, ValueError, IndexError):  # another eventlet's insides
        return False  # the leader commits at once: smaller groups, nothing else changes
