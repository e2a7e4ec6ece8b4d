"""``pumpurs seed --demo``: the Daugavpils scenario through the public HTTP API, then the ESF
report, the audit verification and where the system is."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from demo.api import Api, service_urls
from demo.progress import Progress
from demo.scenario import SEMESTER
from demo.seed import seed_demo
from demo.show import show_report, show_verification, show_where


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "seed", help="seed demo data through the public HTTP API (PUMPURS_<SERVICE>_URL)"
    )
    p.add_argument("--demo", action="store_true", help="the Daugavpils scenario")
    p.add_argument("--pupils", type=int, default=150, help="how many pupils (at least 40)")
    p.add_argument("--seed", type=int, default=2019, help="the random generator's seed")
    p.add_argument(
        "--wait", type=float, default=60.0, help="seconds to wait for a service to learn an event"
    )
    p.set_defaults(func=seed)


def seed(args: argparse.Namespace) -> int:
    if not args.demo:
        print("pumpurs seed: say what to seed (--demo)", file=sys.stderr)
        return 2
    started = time.monotonic()
    urls = service_urls(os.environ)
    api = Api(urls, os.environ, wait_timeout=args.wait)
    progress = Progress(sys.stdout)
    try:
        scenario = seed_demo(api, progress, pupils=args.pupils, seed=args.seed)
    except KeyboardInterrupt:
        progress.line(
            "\nseeding interrupted: `pumpurs seed --demo` again finishes it, doubling nothing"
        )
        return 130
    counts = api.counts
    progress.line(
        f"Seeded in {time.monotonic() - started:.0f} s: {counts['written']} changes, "
        f"{counts['replayed']} repeated requests answered as before, {counts['read']} reads"
    )
    if counts["written"] == 0:
        progress.line("The demo was seeded already: nothing new was created.")
    progress.line()
    names = {s["school_id"]: s["name"] for s in scenario.schools}
    show_report(api, progress, SEMESTER, len(scenario.plans_in(SEMESTER)), names)
    progress.line()
    show_verification(api, progress)
    progress.line()
    show_where(progress, urls)
    return 0
