"""A TCP proxy on loopback that can drop, delay or reset the connections it carries.

Put between the services and the broker (their ``AMQP_URI`` names the proxy's port).
The mode is switched at run time and applies to every live connection at once:

- ``pass``: bytes are forwarded as they come;
- ``drop``: a black hole. Bytes are read and thrown away, in both directions; new
  connections are accepted and get nothing either. A stream that lost bytes cannot
  carry on (AMQP frames would be cut), so leaving ``drop`` resets the connections that
  lost any, as a peer's TCP stack would once its retransmissions gave up;
- ``delay``: each chunk waits ``delay_seconds`` before it is forwarded (order kept);
- ``reset()``: every live connection is closed at once with an RST (SO_LINGER 0), on
  both sides, without waiting for the peers.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from enum import Enum

log = logging.getLogger(__name__)

CHUNK = 65536


class Mode(Enum):
    FORWARD = "pass"
    DROP = "drop"
    DELAY = "delay"


def hard_close(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN: the peer sees ECONNRESET.

    A pump thread may be blocked in ``recv`` on the socket, and that keeps the kernel's
    socket alive past ``close``; ``shutdown(SHUT_RD)`` wakes it (nothing is sent), so
    the socket is released at once and the zero linger turns its release into an RST."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)
    with contextlib.suppress(OSError):
        sock.close()


@dataclass(eq=False)  # hashed by identity: kept in a set
class _Link:
    """One client connection and its upstream twin."""

    client: socket.socket
    upstream: socket.socket
    lost_bytes: bool = False
    closed: threading.Event = field(default_factory=threading.Event)

    def close(self, reset: bool = False) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for sock in (self.client, self.upstream):
            if reset:
                hard_close(sock)
            else:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()


class Proxy:
    """``Proxy(("127.0.0.1", 5672)).start()``; then ``.port`` is where clients connect."""

    def __init__(self, upstream: tuple[str, int], host: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream = upstream
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind((host, port))
        self._server.listen(128)
        self.host, self.port = self._server.getsockname()[:2]
        self.mode = Mode.FORWARD
        self.delay_seconds = 0.0
        self._links: set[_Link] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    # -- control ---------------------------------------------------------------------
    def start(self) -> Proxy:
        threading.Thread(target=self._accept_loop, name="proxy-accept", daemon=True).start()
        return self

    def passthrough(self) -> None:
        was_dropping = self.mode is Mode.DROP
        self.mode, self.delay_seconds = Mode.FORWARD, 0.0
        if was_dropping:
            for link in self._live():
                if link.lost_bytes:
                    link.close(reset=True)

    def drop(self) -> None:
        self.mode = Mode.DROP

    def delay(self, seconds: float) -> None:
        self.delay_seconds = seconds
        self.mode = Mode.DELAY

    def reset(self) -> int:
        """RST every live connection; how many there were."""
        links = self._live()
        for link in links:
            link.close(reset=True)
        return len(links)

    def connections(self) -> int:
        return len(self._live())

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._server.close()
        self.reset()

    # -- the work ----------------------------------------------------------------------
    def _live(self) -> list[_Link]:
        with self._lock:
            return [link for link in self._links if not link.closed.is_set()]

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._open, args=(client,), daemon=True).start()

    def _open(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
            upstream.settimeout(None)
        except OSError:
            hard_close(client)  # the broker is away: the client sees a refused connection
            return
        link = _Link(client, upstream)
        with self._lock:
            self._links = {known for known in self._links if not known.closed.is_set()}
            self._links.add(link)
        for source, target in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(link, source, target), daemon=True).start()

    def _pump(self, link: _Link, source: socket.socket, target: socket.socket) -> None:
        try:
            while not link.closed.is_set():
                chunk = source.recv(CHUNK)
                if not chunk:
                    break
                mode = self.mode
                if mode is Mode.DROP:
                    link.lost_bytes = True
                    continue
                if link.lost_bytes:  # dropped just as the drop ended: reset all the same
                    link.close(reset=True)
                    break
                if mode is Mode.DELAY:
                    time.sleep(self.delay_seconds)
                target.sendall(chunk)
        except OSError:
            pass
        link.close()
