"""One line per phase with its counts (``pupils 120/150``): rewritten in place on a terminal,
printed when the phase ends (and every few seconds while it lasts) anywhere else."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


class Phase:
    def __init__(self, progress: Progress, name: str, total: int) -> None:
        self.progress, self.name, self.total = progress, name, total
        self.done = 0
        self.note = ""
        self.started = self.shown_at = time.monotonic()

    def advance(self, count: int = 1) -> None:
        self.set(self.done + count)

    def set(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if self.progress.live:
            self.progress.write(f"\r  {self.text()}")
        elif now - self.shown_at >= self.progress.every:
            self.progress.write(f"  {self.text()}\n")
            self.shown_at = now

    def text(self) -> str:
        return f"{self.name} {self.done}/{self.total}" + (f" {self.note}" if self.note else "")

    def finish(self) -> None:
        line = f"  {self.text()} ({time.monotonic() - self.started:.1f} s)"
        # On a terminal the line overwrites the running count (and clears what was longer).
        self.progress.write(f"\r{line}\x1b[K\n" if self.progress.live else f"{line}\n")


class Progress:
    def __init__(self, out: TextIO, *, live: bool | None = None, every: float = 5.0) -> None:
        self.out = out
        self.live = out.isatty() if live is None else live
        self.every = every

    def write(self, text: str) -> None:
        if text:
            self.out.write(text)
            self.out.flush()

    def line(self, text: str = "") -> None:
        self.write(text + "\n")

    @contextmanager
    def phase(self, name: str, total: int) -> Iterator[Phase]:
        phase = Phase(self, name, total)
        if self.live:
            self.write(f"  {phase.text()}")
        try:
            yield phase
        finally:
            phase.finish()
