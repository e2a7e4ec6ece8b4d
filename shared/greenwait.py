"""psycopg's wait under eventlet: one trampoline on the connection's socket per wait.

psycopg must wait through eventlet's hub, or a query would stall every greenthread of
the process; ``PSYCOPG_WAIT_FUNC=wait_select`` does that with a green ``select``. That
registers a listener for each of its three lists, schedules a timer for psycopg's 0.1 s
polling interval, and cancels them all afterwards, for each of the one or two waits of
every statement. A trampoline registers one listener and no timer: on PostgreSQL a
command runs about 35 statements across the services, and the green select was about a
tenth of the services' CPU there (py-spy, load at 50 commands/s).

Waits for reading and writing at once (only while a large query is being flushed) keep
the green select: a trampoline waits for one direction only.

libpq opens and closes its sockets where eventlet cannot see. Each socket a connection
opens is announced to the hub as new, so that a listener left on a closed socket that had
the same number is dropped (its greenthread gets an error) instead of making the hub
refuse every wait on the new one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator
from typing import Any

RV = Any
PQGen = Generator[Any, Any, RV]  # psycopg's: yields what to wait for, is sent what is ready
PQGenConn = Generator[tuple[int, Any], Any, RV]  # the same, with the socket to wait on


class _Expired(Exception):
    """The trampoline's timeout: the caller's deadline passed."""


def install() -> None:
    """Make psycopg wait through eventlet's hub with a trampoline (call after monkey_patch)."""
    from psycopg import waiting

    waiting.wait = green_wait()
    waiting.wait_conn = green_wait_conn()


def green_wait_conn() -> Callable[..., Any]:
    """psycopg's wait for a connection attempt, telling the hub of each new socket."""
    from eventlet.hubs import notify_opened
    from psycopg.waiting import wait_conn

    def announcing(gen: PQGenConn) -> PQGenConn:
        announced = None
        try:
            fileno, state = next(gen)
            while True:
                if fileno != announced:  # libpq may try several addresses, each a socket
                    notify_opened(fileno)
                    announced = fileno
                ready = yield fileno, state
                fileno, state = gen.send(ready)
        except StopIteration as stopped:
            return stopped.value

    def wait(gen: PQGenConn, interval: float = 0.0, timeout: float | None = None) -> RV:
        return wait_conn(announcing(gen), interval, timeout)

    return wait


def green_wait() -> Callable[..., Any]:
    # Bound once here, not imported on each of the thousands of waits a second.
    from eventlet.hubs import trampoline
    from psycopg import errors
    from psycopg.waiting import Ready, Wait, wait_select

    def wait(
        gen: PQGen,
        fileno: int,
        interval: float = 0.1,
        timeout: float | None = None,
    ) -> RV:
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            state = next(gen)
            while True:
                if state == Wait.RW:
                    return wait_select(_resumed(state, gen), fileno, interval, _left(deadline))
                reading = state == Wait.R
                # libpq closes the socket when the server ends the session (inside
                # gen.send), and psycopg may then ask to wait on the closed descriptor.
                # eventlet's hub then kept a listener on a descriptor that no longer
                # existed, and the wait never ended (once in six runs of the test of a
                # session ended by the server). psycopg's own waits check with fstat
                # too; nothing else runs between gen.send and this check.
                os.fstat(fileno)
                trampoline(
                    fileno,
                    read=reading,
                    write=not reading,
                    timeout=_left(deadline),
                    timeout_exc=_Expired,
                )
                state = gen.send(Ready.R if reading else Ready.W)
        except _Expired:
            raise errors._WaitTimeout("wait timeout expired") from None
        except OSError as exc:  # the socket was closed under us
            raise errors.OperationalError("connection socket closed") from exc
        except StopIteration as stopped:
            return stopped.value

    return wait


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)


def _resumed(state: int, gen: PQGen) -> PQGen:
    """``gen``, from the state it has already yielded, for another wait function."""
    ready = yield state
    while True:
        try:
            state = gen.send(ready)
        except StopIteration as stopped:
            return stopped.value
        ready = yield state
