"""``python -m bench``: side-by-side measurements of Pumpurs' reliability spine.

1. relay      outbox relay vs a bare confirming kombu publisher, from a stored backlog
2. commands   identification's command path over HTTP vs a commit-then-dispatch nameko
              peer (and a do-nothing nameko endpoint as the ceiling)
3. e2e        a pupil flagged in identification until planning's read model shows it
4. reporting  rebuild of reporting's read models vs a bare scan of its journal; the ESF
              report over national-scale data; the rebuild's peak memory (bench/reporting.py)
5. journal    identification's journal import (in process and over HTTP) vs saving the
              same aggregates straight through the Application in batches
6. plans      a plan's whole lifecycle over HTTP vs the commit-then-dispatch peer; loading a
              plan with a 2,000-event history (bench/plan_lifecycle.py)

Prints a table and writes var/bench/results.json. Needs RabbitMQ (AMQP_URI and
PUMPURS_RABBITMQ_API, as written by scripts/rabbitmq.sh) and, for --store postgres,
PostgreSQL (PUMPURS_POSTGRES_ADMIN_DSN, POSTGRES_*); whatever is missing is started
privately in var/bench-stack and stopped at the end. Every vhost, database and
process a run creates is removed or stopped again.

Run time on a 2-core machine: about 7-10 minutes (the bare publisher's 50,000 round
trips take 1-2 of them), 4-5 with --quick, 3-4 more with --store postgres. The
machine should be otherwise idle: each measurement records the CPU that other
processes took meanwhile and the table marks the noisy ones.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from shared.testing import REPO

OUT_DIR = REPO / "var" / "bench"

MEASUREMENTS = ("relay", "commands", "e2e", "reporting", "journal", "plans")

TARGETS = {
    "relay_ratio": 4.0,  # relay / bare publisher, events per second
    "command_throughput_ratio": 1.2,  # ours / peer at concurrency 8
    "command_p99_ms": 20.0,  # ours at 100 commands/s, open loop
    "e2e_p99_ms": 25.0,  # flagged -> visible in planning at 100/s
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="shorter run (4-5 minutes)")
    p.add_argument(
        "--store",
        choices=["sqlite", "postgres"],
        default="sqlite",
        help="postgres: run 1 and 3 on PostgreSQL as well as on SQLite",
    )
    p.add_argument(
        "--only",
        default=",".join(MEASUREMENTS),
        help="comma-separated subset of " + ",".join(MEASUREMENTS),
    )
    p.add_argument("--events", type=int, help="relay backlog (default 50000, quick 10000)")
    p.add_argument("--out", default=str(OUT_DIR / "results.json"))
    p.add_argument("--keep", action="store_true", help="keep the temporary data and logs")
    return p.parse_args(argv)


def settings(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    return {
        "relay_events": args.events or (10_000 if quick else 50_000),
        "relay_batch_size": 500,
        "concurrency": 8,
        "closed_seconds": 6.0 if quick else 20.0,
        "warmup_seconds": 1.0 if quick else 2.0,
        "open_rate": 100.0,
        "open_seconds": 6.0 if quick else 20.0,
        "rounds": 2 if quick else 4,
        "e2e_phases": [(100.0, 6.0 if quick else 20.0), (20.0, 5.0 if quick else 10.0)],
        "e2e_poll_seconds": 0.001,
        "reporting_plans": 10_000 if quick else 100_000,
        "reporting_rounds": 1 if quick else 2,
        "journal_rows": 2_000 if quick else 10_000,
        "journal_rounds": 1 if quick else 3,
        "plans_seconds": 9.0 if quick else 30.0,
        "plans_rounds": 1 if quick else 3,
        "plans_loads": 300 if quick else 1000,
    }


# -- output ---------------------------------------------------------------------------


def fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        value = f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return f"{value}{unit}"


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("MET" if ok else "MISSED")


NOISY_CORES = 0.3


def other(*meters: dict[str, float] | None) -> str:
    """The most CPU other people's work took during these measurements (cores)."""
    values = [m["other_work_cores"] for m in meters if m and "other_work_cores" in m]
    if not values:
        return ""
    worst = max(values)
    return f"{worst:.2f}" + (" NOISY" if worst > NOISY_CORES else "")


def table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, ...]] = []
    head = ("measurement", "ours", "peer", "ratio", "target", "other work")
    for r in results.get("relay", []):
        s = r["store"]
        relay_met = r["relay"]["per_second"] >= TARGETS["relay_ratio"] * r["bare"]["per_second"]
        rows.append(
            (
                f"1 relay [{s}] events/s, backlog {r['relay']['events']}",
                fmt(r["relay"]["per_second"]),
                fmt(r["bare"]["per_second"]) + " bare",
                fmt(r["ratio"], "x"),
                f">= {TARGETS['relay_ratio']}x {verdict(relay_met)}",
                other(r["relay"].get("cpu"), r["bare"].get("cpu")),
            )
        )
        rows.append(
            (
                f"  relay inside `serve identification` [{s}]",
                fmt(r["relay_in_service"]["per_second"]),
                fmt(r["bare"]["per_second"]) + " bare",
                fmt(r["ratio_in_service"], "x"),
                "(info)",
                "",
            )
        )
    c = results.get("commands")
    if c:
        o, p, n = c["ours"], c["peer"], c["noop"]
        ratio = c["ratio_throughput_ours_to_peer"]  # rounded for the table, not the verdict
        met = o["throughput"]["per_second"] >= (
            TARGETS["command_throughput_ratio"] * p["throughput"]["per_second"]
        )
        rows.append(
            (
                "2 commands/s, concurrency 8 [sqlite]",
                fmt(o["throughput"]["per_second"]),
                fmt(p["throughput"]["per_second"]),
                fmt(ratio, "x")
                + f" (rounds {'/'.join(map(str, c['ratio_throughput_per_round']))})",
                f">= {TARGETS['command_throughput_ratio']}x {verdict(met)}",
                other(*o["throughput"]["cpu_per_round"], *p["throughput"]["cpu_per_round"]),
            )
        )
        rows.append(
            (
                "  ceiling: bare nameko @http",
                fmt(n["throughput"]["per_second"]),
                "",
                fmt(c["ratio_throughput_ours_to_ceiling"], "x"),
                "(info)",
                "",
            )
        )
        oc, pc = o["throughput"], p["throughput"]
        rows.append(
            (
                "  server CPU per request, closed loop",
                fmt(oc.get("server_cpu_ms_per_request"), " ms"),
                fmt(pc.get("server_cpu_ms_per_request"), " ms"),
                fmt(c.get("ratio_cpu_per_request_ours_to_peer", {}).get("throughput"), "x"),
                "(info: less sensitive to other work)",
                "",
            )
        )
        ol, pl, nl = (x["open_loop"]["latency"] for x in (o, p, n))
        rows.append(
            (
                "  p50 at 100 commands/s (open loop)",
                fmt(ol["p50_ms"], " ms"),
                fmt(pl["p50_ms"], " ms"),
                "",
                f"(ceiling {fmt(nl['p50_ms'], ' ms')})",
                "",
            )
        )
        p99 = ol["p99_ms"]
        dropped = o["open_loop"].get("dropped_overloaded")
        rows.append(
            (
                "  p99 at 100 commands/s (open loop)",
                fmt(p99, " ms"),
                fmt(pl["p99_ms"], " ms"),
                fmt(c["ratio_p99_ours_to_peer"], "x"),
                f"<= {TARGETS['command_p99_ms']:.0f} ms "
                f"{verdict(p99 is not None and not dropped and p99 <= TARGETS['command_p99_ms'])}"
                + (f", OVERLOADED: {dropped} not sent" if dropped else ""),
                other(*o["open_loop"]["cpu_per_round"], *p["open_loop"]["cpu_per_round"]),
            )
        )
    for e in results.get("e2e", []):
        s = e["store"]
        for i, ph in enumerate(e["phases"]):
            lat, ans, cmd = (
                ph["latency_from_command_sent"],
                ph["latency_from_command_answered"],
                ph["command_latency"],
            )
            target = ""
            if i == 0:
                ok = lat["p99_ms"] is not None and lat["p99_ms"] <= TARGETS["e2e_p99_ms"]
                ok = ok and ph["missing"] == 0 and not ph.get("dropped_overloaded")
                target = f"p99 <= {TARGETS['e2e_p99_ms']:.0f} ms {verdict(ok)}"
            rows.append(
                (
                    f"3 flagged -> in planning [{s}] at {ph['rate_per_second']:.0f}/s p50/p99",
                    f"{fmt(lat['p50_ms'])}/{fmt(lat['p99_ms'])} ms",
                    "",
                    "",
                    target or "(info)",
                    other(ph.get("cpu_during_load")),
                )
            )
            rows.append(
                (
                    "  from the command's answer, p50/p99",
                    f"{fmt(ans['p50_ms'])}/{fmt(ans['p99_ms'])} ms",
                    "",
                    "",
                    f"command p99 {fmt(cmd['p99_ms'], ' ms')}, missing {ph['missing']}"
                    + (
                        f", OVERLOADED: {ph['dropped_overloaded']} not sent"
                        if ph.get("dropped_overloaded")
                        else ""
                    ),
                    "",
                )
            )
            per_command = ph.get("cpu_ms_per_command", {})
            rows.append(
                (
                    "  CPU per command, identification/planning",
                    "/".join(fmt(v) for v in per_command.values()) + " ms",
                    "",
                    "",
                    "(info: less sensitive to other work)",
                    "",
                )
            )
    from bench.reporting import table_rows

    rows += table_rows(results.get("reporting", []))
    rows += journal_rows(results.get("journal", []))
    rows += plans_rows(results.get("plans"))
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(str(v).ljust(w) for v, w in zip(head, widths, strict=True)), line]
    out += ["  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def journal_rows(results: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for r in results:
        rows.append(
            (
                f"5 journal import [{r['store']}] rows/s, {r['file_rows']} rows",
                fmt(r["import"]["rows_per_second"]),
                fmt(r["batched_save"]["rows_per_second"]),
                f"{r['ratio']}x",
                f">= {r['target_ratio']}x {verdict(r['met'])}",
                "",
            )
        )
        rows.append(
            (
                "  the same over HTTP (POST /imports/journal)",
                fmt(r["import_over_http"]["rows_per_second"]),
                "",
                f"{r['ratio_over_http']}x",
                "(info)",
                "",
            )
        )
    return rows


def plans_rows(r: dict[str, Any] | None) -> list[tuple[str, ...]]:
    if not r:
        return []
    ours, peer = r["ours"], r["peer"]
    loaded = r["load"]["history"]
    return [
        (
            "6 plan lifecycle commands/s, concurrency 8 [sqlite]",
            fmt(ours["throughput"]["per_second"]),
            fmt(peer["throughput"]["per_second"]),
            f"{r['ratio_throughput_ours_to_peer']}x",
            f">= 0.8x {verdict(r['met']['throughput_ratio'])}",
            "",
        ),
        (
            f"  load a plan of {loaded['events']} events, p50/p99",
            f"{fmt(loaded['p50_ms'])}/{fmt(loaded['p99_ms'])} ms",
            "",
            "",
            f"p99 <= 10 ms {verdict(r['met']['load_p99_ms'])}",
            f"load {loaded['loadavg']:.1f}",
        ),
    ]


METHOD = """\
Method
1 relay: N events stored through IdentificationApplication (pupils registered + flagged, ~1000
  events per commit). Each side publishes the same N envelopes, persistent, to pumpurs.events on
  a fresh vhost with a durable quorum queue bound to identification.#; all N are checked in the
  queue. relay = shared.outbox.Relay.publish_pending() until the position reaches the head
  (reading, mapping, publishing, confirms and position commits all timed). bare = kombu
  Producer, confirm_publish=True (as nameko's dispatcher): publish one, wait for its confirm;
  envelopes serialised beforehand, not timed. The in-service row restarts the same backlog in
  `pumpurs serve identification` and times the relay position (first batch -> head).
2 commands: the three servers run side by side (each on its own vhost with a quorum queue bound
  to all its events) and are loaded one at a time, round-robin in 4 rounds (2 with --quick),
  the order rotated each round, with ours' relay backlog drained after each turn. Closed
  loop: 8 client threads (keep-alive http.client), POST /pupils then POST
  /pupils/{id}/risk-signs, requests completed in the window / window. Open loop: 100
  commands/s on a fixed schedule (alternating a registration and a risk sign on a pupil
  registered beforehand), latency from the scheduled send time to the answer (coordinated
  omission counted). ours verifies a JWT on every call; peer and ceiling do no auth.
3 e2e: identification + planning (`pumpurs serve`), one vhost. Risk-sign commands open loop at
  the given rate on pupils registered (and applied by planning) beforehand. A watcher thread
  polls planning's database every 1 ms for the pending pupils' planning_pupils rows with
  at_risk = 1 (the table GET /pupils-at-risk reads; written in the inbox transaction). Latency
  = first sighting - scheduled send time (and - the command's answer). All services, the
  broker, the database and the load generator share this machine's CPUs.
4 reporting: see bench/reporting.py (data generated straight into a reporting store; scan and
  rebuild each in a fresh child process, rounds alternating their order; the report in this one).
5 journal: see bench/journal_import.py (the same CSV imported, and its aggregates saved in
  batches, each on a fresh store, order rotated each round; medians).
6 plans: see bench/plan_lifecycle.py (18 commands a lifecycle by four roles; loads of a plan
  with 2,000 events from its latest snapshot, bypassing the service's cache).
"other work": cores busy during the measurement with processes that are not part of it
  (machine busy - services, broker and this client): above 0.3 the numbers are NOISY.
"""


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    cfg = settings(args)
    wanted = {x.strip() for x in args.only.split(",") if x.strip()}
    unknown = wanted - set(MEASUREMENTS)
    if unknown:
        print(f"unknown measurement(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    stores = ["sqlite", "postgres"] if args.store == "postgres" else ["sqlite"]

    # SIGTERM (make, CI) unwinds like Ctrl-C, so every finally-block cleans up.
    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)

    from bench import commands, e2e, relay
    from bench.stack import Stack, background_load, log, machine, settle

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="run-", dir=OUT_DIR))
    keys_dir = workdir / "keys"
    os.environ["PUMPURS_KEYS_DIR"] = str(keys_dir)
    os.environ.setdefault("PUMPURS_ENV", "development")
    started = time.monotonic()
    results: dict[str, Any] = {}
    failures: list[str] = []
    try:
        with Stack(want_postgres="postgres" in stores):
            results["machine"] = {**machine(), "stores": stores}
            settle(max_seconds=30)
            busy = background_load()
            results["machine"]["background_busy_cores_at_start"] = busy
            if busy > 0.3:
                log(f"warning: {busy} cores already busy with other work: expect noisy numbers")
            results["settings"] = {**cfg, "quick": args.quick}
            results["targets"] = TARGETS
            if "relay" in wanted:
                results["relay"] = []
                for store in stores:
                    try:
                        results["relay"].append(
                            relay.run(
                                store,
                                cfg["relay_events"],
                                cfg["relay_batch_size"],
                                workdir,
                                keys_dir,
                            )
                        )
                    except Exception as exc:
                        failures.append(f"relay [{store}]: {type(exc).__name__}: {exc}")
                        log(failures[-1])
            if "commands" in wanted:
                try:
                    results["commands"] = commands.run(
                        workdir,
                        keys_dir,
                        cfg["concurrency"],
                        cfg["closed_seconds"],
                        cfg["warmup_seconds"],
                        cfg["open_rate"],
                        cfg["open_seconds"],
                        cfg["rounds"],
                    )
                except Exception as exc:
                    failures.append(f"commands: {type(exc).__name__}: {exc}")
                    log(failures[-1])
            if "e2e" in wanted:
                results["e2e"] = []
                for store in stores:
                    try:
                        results["e2e"].append(
                            e2e.run(
                                store,
                                workdir,
                                keys_dir,
                                cfg["e2e_phases"],
                                cfg["e2e_poll_seconds"],
                            )
                        )
                    except Exception as exc:
                        failures.append(f"e2e [{store}]: {type(exc).__name__}: {exc}")
                        log(failures[-1])
            if "reporting" in wanted:
                from bench import reporting

                results["reporting"] = []
                for store in stores:
                    try:
                        results["reporting"].append(
                            reporting.run(
                                store, cfg["reporting_plans"], workdir, cfg["reporting_rounds"]
                            )
                        )
                    except Exception as exc:
                        failures.append(f"reporting [{store}]: {type(exc).__name__}: {exc}")
                        log(failures[-1])
            if "journal" in wanted:
                from bench import journal_import

                results["journal"] = []
                for store in stores:
                    try:
                        results["journal"].append(
                            journal_import.run(
                                store, cfg["journal_rows"], workdir, keys_dir, cfg["journal_rounds"]
                            )
                        )
                    except Exception as exc:
                        failures.append(f"journal [{store}]: {type(exc).__name__}: {exc}")
                        log(failures[-1])
            if "plans" in wanted:
                from bench import plan_lifecycle

                try:
                    results["plans"] = plan_lifecycle.run(
                        workdir,
                        keys_dir,
                        duration=cfg["plans_seconds"],
                        open_seconds=cfg["plans_seconds"],
                        rounds=cfg["plans_rounds"],
                        loads=cfg["plans_loads"],
                    )
                except Exception as exc:
                    failures.append(f"plans: {type(exc).__name__}: {exc}")
                    log(failures[-1])
    except KeyboardInterrupt:
        failures.append("interrupted")
    finally:
        results["runtime_seconds"] = round(time.monotonic() - started, 1)
        results["failures"] = failures
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2, default=str) + "\n")
        if args.keep or failures:
            print(f"data and logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    m = results.get("machine", {})
    print()
    print(
        f"Pumpurs bench {m.get('date', '')}: {m.get('nproc')} CPUs ({m.get('cpu_model')}), "
        f"{m.get('memory_mib')} MiB, Python {m.get('python')}, SQLite {m.get('sqlite')}, "
        f"RabbitMQ {m.get('rabbitmq')}, PostgreSQL {m.get('postgres') or '-'}, "
        f"stores {'+'.join(stores)}{' (quick)' if args.quick else ''}"
    )
    print()
    busy = m.get("background_busy_cores_at_start")
    if busy is not None and busy > 0.3:
        print(f"WARNING: {busy} of {m.get('nproc')} cores were busy with other work at the start")
    print(table(results))
    print()
    print(METHOD)
    print(f"results: {args.out}   runtime: {results['runtime_seconds']} s")
    for failure in failures:
        print(f"FAILED {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
