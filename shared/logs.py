"""How a service logs: one line per record, and nameko's worker errors told apart.

nameko logs every exception a worker raises with its traceback: at WARNING for an
entrypoint's expected exceptions, at ERROR otherwise. Two kinds are not bugs and would
bury the ones that are (and formatting their tracebacks costs CPU under load):
- a refused request (a ``PumpursError``): the caller got its 4xx, the access log and the
  metrics have it;
- a store that does not answer: worth one warning line, not a traceback per retry.
"""

from __future__ import annotations

import logging

from shared.errors import PumpursError
from shared.store import store_not_answering

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class WorkerErrorFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        if isinstance(exc, PumpursError):
            return False
        if store_not_answering(exc):
            record.exc_info = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args = (
                "%s: store not answering (%s)",
                (
                    record.args[0] if isinstance(record.args, tuple) and record.args else "worker",
                    type(exc).__name__,
                ),
            )
        return True


def configure(level: str) -> None:
    logging.basicConfig(level=level, format=FORMAT)
    logging.getLogger("nameko.containers").addFilter(WorkerErrorFilter())
