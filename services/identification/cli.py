"""``pumpurs identification rotate-master-key``: move every pupil's key to a new master key.

Opens identification's store directly (``PUMPURS_DATA_DIR``, or ``PERSISTENCE_MODULE``
and ``POSTGRES_*``) with the current master key (``PUMPURS_MASTER_KEY``, or the
development key under ``PUMPURS_KEYS_DIR``). Stop identification first: a running
service keeps wrapping new pupils' keys with the key it started with.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from services.identification.crypto import MASTER_KEY_FILE, decode_key, master_key
from shared.auth import keys_dir


def rotate_master_key(args: argparse.Namespace) -> int:
    from services.identification.application import IdentificationApplication
    from shared.store import store_env

    environ = dict(os.environ)
    new_master = decode_key(Path(args.new_key_file).read_text(), args.new_key_file)
    app = IdentificationApplication(
        store_env("identification", environ.get("PUMPURS_DATA_DIR", "var/data"), environ),
        master=master_key(environ),
    )
    try:
        moved = app.rotate_master_key(new_master)
    finally:
        app.close()
    print(f"re-wrapped the keys of {moved} pupil(s) under the new master key")
    if not environ.get("PUMPURS_MASTER_KEY"):  # development: the generated key file
        (keys_dir(environ) / MASTER_KEY_FILE).write_text(Path(args.new_key_file).read_text())
        print("the development master key file now holds the new key")
    else:
        print("now set PUMPURS_MASTER_KEY to the new key, then start identification")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("identification", help="identification's maintenance commands")
    commands = group.add_subparsers(dest="identification_command", required=True)
    rotate = commands.add_parser(
        "rotate-master-key", help="re-wrap every pupil's key under a new master key"
    )
    rotate.add_argument(
        "--new-key-file", required=True, help="file holding the new key (base64 of 32 bytes)"
    )
    rotate.set_defaults(func=rotate_master_key)
