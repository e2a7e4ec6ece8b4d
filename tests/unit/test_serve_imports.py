"""``pumpurs serve`` patches eventlet in before the libraries that hold sockets and locks.

A command module that imported kombu while the parser was built gave the services a kombu
and amqp loaded before the patch: after a broker restart, a restarted consumer never
reconnected in about half the fault-suite runs (the broker-users change, 2026-11-29).
``serve`` now patches before building the parser; the other commands need no patch, and
should not pay for loading what only the services use.
"""

from __future__ import annotations

import json
import subprocess
import sys

from shared.testing import REPO

# What the services use at run time through eventlet's hub.
PATCH_FIRST = ("kombu", "amqp", "nameko", "eventsourcing", "psycopg", "psycopg_pool")


def run_probe(probe: str) -> object:
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.splitlines()[-1])  # after whatever the command printed


def test_building_the_command_line_loads_none_of_the_services_libraries() -> None:
    loaded = run_probe(
        "import json, sys\n"
        "from shared import cli\n"
        "cli.parser()\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    assert isinstance(loaded, list)
    assert "shared" in loaded
    assert [name for name in PATCH_FIRST if name in loaded] == []


def test_serve_patches_eventlet_in_before_it_loads_anything_that_holds_sockets() -> None:
    # What was loaded when serve patched, or null if it never patched.
    at_patch = run_probe(
        "import json, sys\n"
        "import eventlet\n"
        "from shared import cli\n"
        "at_patch = None\n"
        "real = eventlet.monkey_patch\n"
        "def spy(**kwargs):\n"
        "    global at_patch\n"
        "    at_patch = sorted({m.split('.')[0] for m in sys.modules})\n"
        "    return real(**kwargs)\n"
        "eventlet.monkey_patch = spy\n"
        "try:\n"
        "    cli.main(['serve', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(json.dumps(at_patch))\n"
    )
    assert isinstance(at_patch, list)
    assert [name for name in (*PATCH_FIRST, "requests", "urllib3") if name in at_patch] == []
