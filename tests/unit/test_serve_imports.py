"""``pumpurs serve`` patches eventlet in before the libraries that hold sockets and locks.

The parser is built (and every command module imported) before ``serve`` runs
``eventlet.monkey_patch()``. A command module that imported kombu there gave the services a
kombu and amqp loaded before the patch: after a broker restart, a restarted consumer
never reconnected in about half the fault-suite runs (the broker-users change, 2026-11-29).
"""

from __future__ import annotations

import json
import subprocess
import sys

from shared.testing import REPO

# What the services use at run time through eventlet's hub.
PATCH_FIRST = ("kombu", "amqp", "nameko", "eventsourcing", "psycopg", "psycopg_pool")


def test_building_the_command_line_loads_none_of_the_services_libraries() -> None:
    probe = (
        "import json, sys\n"
        "from shared import cli\n"
        "cli.parser()\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout
    )
    assert "shared" in loaded
    assert [name for name in PATCH_FIRST if name in loaded] == []
