"""4. Reporting: rebuild of the read models against a bare scan of the same journal, the ESF
report over national-scale data, and the rebuild's peak memory.

Data, generated straight into a fresh reporting store (no HTTP, no broker): 600 schools in
41 municipalities (a tenth vocational, state-owned), 60,000 pupils at risk, 100,000 plans
of the school year 2019/20 (40,000 pupils continued into semester II) through their
lifecycle (drafted, a measure, submitted, approved at every level, fully approved; then
by share: consultations, material support requested, committed, ordered and delivered
against the school's budget, evaluation, closing), about 1.04 million contract-valid
journal entries in all (``--quick``: a tenth). A sample of them is checked against the
contracts before anything is measured.

- bare scan: read every journal entry in the rebuild's pages (20,000 entries, ordered by
  ``seq``, the columns the rebuild reads) and decode its payload (``json.loads``); no rows.
- rebuild: ``ReportingApplication.rebuild()``: drop the read models, fold the journal in
  memory, write the rows, in one transaction (then the digest, not timed).
Each runs in a fresh child process (``python -m bench.reporting child ...``), which times
only its work and reports its peak resident memory (``ru_maxrss``) and its memory before
the work; the rounds alternate which goes first. Rate = entries / seconds, the median.
Target: rebuild >= a quarter of the bare scan's rate.

- ESF report: ``esf_report`` in this process on the rebuilt store, JSON, for the school
  year (all 100,000 plans): nationwide, one municipality, one school, five times each.
  Target: <= 1 s. Beside it, as a peer: one SQL pass over the plans table counting its
  distinct pupils. An ``as_of`` replay of the whole journal is timed once (info).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections import abc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.testing import REPO

SCHOOL_YEAR = "2019-2020"
SEM1, SEM2 = "2019-2020-1", "2019-2020-2"
MUNICIPALITIES = 41
GROUPS = {
    "learning": ("learning.absences", "learning.low_achievement", "learning.low_motivation"),
    "economic": ("economic.low_income", "economic.lacks_essentials"),
    "family": ("family.lack_of_care",),
    "social_health": ("social_health.health",),
}
CODES = [c for codes in GROUPS.values() for c in codes]
CONSULTATIONS = ("subject_teacher", "psychologist", "social_pedagogue", "teacher_assistant")
MATERIAL = ("public_transport", "meals", "learning_materials", "personal_items")
RECEIVED = datetime(2020, 1, 1, tzinfo=UTC)
TARGET_RATIO = 0.25  # rebuild / bare scan, entries per second
TARGET_REPORT_MS = 1000.0


# -- the data ----------------------------------------------------------------------------------


class Generator:
    """Journal rows as reporting would have received them, in a plausible order."""

    def __init__(self, plans: int, seed: int = 7) -> None:
        self.rnd = random.Random(seed)
        self.plans = plans
        self.notification = {"identification": 0, "planning": 0, "provisioning": 0}
        self.seq = 0
        self.schools: list[tuple[str, str, bool]] = []

    def entry(self, source: str, event_type: str, aggregate: str, payload: dict[str, Any]) -> tuple:
        self.notification[source] += 1
        self.seq += 1
        moment = RECEIVED + timedelta(microseconds=self.seq * 10)
        return (
            moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            source,
            self.notification[source],
            str(uuid.UUID(int=self.rnd.getrandbits(128))),
            event_type,
            1,
            aggregate,
            1,
            moment.isoformat(),
            "bench",
            json.dumps(payload, separators=(",", ":")),
        )

    def uid(self) -> str:
        return str(uuid.UUID(int=self.rnd.getrandbits(128), version=4))

    def rows(self) -> Iterator[tuple]:
        rnd = self.rnd
        for n in range(600):
            vocational = n % 10 == 0
            school = (f"school-{n:03d}", f"municipality-{n % MUNICIPALITIES:02d}", vocational)
            self.schools.append(school)
            yield self.entry(
                "identification",
                "school_registered",
                self.uid(),
                {
                    "school_id": school[0],
                    "name": f"Skola {n}",
                    "municipality": school[1],
                    "kind": "vocational" if vocational else "general",
                    "owner": "state" if vocational else "municipal",
                    "grade_from": 1,
                    "grade_to": 4 if vocational else 12,
                },
            )
            for semester in (SEM1, SEM2):
                where = {"school_id": school[0], "semester": semester}
                yield self.entry("provisioning", "budget_opened", self.uid(), where)
                amount = {
                    "amount_eur": f"{rnd.randrange(20_000, 60_000)}.00",
                    "previous_eur": "0.00",
                }
                yield self.entry("provisioning", "budget_set", self.uid(), {**where, **amount})
        continued = self.plans * 2 // 5
        for n in range(self.plans - continued):
            yield from self.pupil_with_plans(second=n < continued)

    def pupil_with_plans(self, second: bool) -> Iterator[tuple]:
        rnd = self.rnd
        school, _, vocational = rnd.choice(self.schools)
        pupil = self.uid()
        grade = rnd.randint(1, 4) if vocational else rnd.randint(5, 12)
        payload = {"school_id": school, "grade": grade, "gender": rnd.choice("FM")}
        yield self.entry("identification", "pupil_registered", pupil, payload)
        code = rnd.choice(CODES)
        observed_on = f"2019-{rnd.randint(9, 12):02d}-{rnd.randint(1, 28):02d}"
        sign = {"code": code, "observed_on": observed_on, "source": "journal"}
        yield self.entry("identification", "risk_sign_recorded", pupil, sign)
        previous = yield from self.plan(pupil, school, vocational, SEM1, None, second)
        if second:
            yield from self.plan(pupil, school, vocational, SEM2, previous, False)
        elif rnd.random() < 0.1:
            yield self.entry("identification", "risk_sign_resolved", pupil, {"code": code})

    def plan(
        self,
        pupil: str,
        school: str,
        vocational: bool,
        semester: str,
        previous: str | None,
        continues: bool,
    ) -> abc.Generator[tuple, None, str]:  # the entries, then the plan's id
        rnd = self.rnd
        plan = self.uid()
        levels = ["school", "national"] if vocational else ["school", "municipality", "national"]
        yield self.entry(
            "planning",
            "plan_drafted",
            plan,
            {
                "pupil_id": pupil,
                "school_id": school,
                "semester": semester,
                "levels": levels,
                "risk_codes": [],
                "previous_plan_id": previous,
            },
        )
        consultation = rnd.random() < 0.4
        kind = rnd.choice(CONSULTATIONS if consultation else MATERIAL)
        material = not consultation and rnd.random() < 0.5
        measure = self.uid()
        amount = f"{rnd.randrange(20, 400)}.00"
        yield self.entry(
            "planning",
            "measure_added",
            plan,
            {
                "measure_id": measure,
                "kind": kind,
                "risk_code": "learning.absences",
                "hours": "10.00" if consultation else None,
                "amount_eur": None if consultation else amount,
            },
        )
        yield self.entry("planning", "plan_submitted", plan, {"pending_level": levels[0]})
        for level in levels:
            yield self.entry("planning", "plan_approved", plan, {"level": level, "by": "x"})
        yield self.entry(
            "planning",
            "plan_fully_approved",
            plan,
            {
                "plan_id": plan,
                "pupil_id": pupil,
                "school_id": school,
                "semester": semester,
                "status": "approved",
                "material_measures": [],
            },
        )
        if consultation:
            hours = f"{rnd.randint(1, 4)}.00"
            yield self.entry(
                "planning",
                "consultation_logged",
                plan,
                {
                    "consultation_id": self.uid(),
                    "measure_id": measure,
                    "kind": kind,
                    "date": "2019-10-01",
                    "hours": hours,
                    "remote": False,
                    "rate_eur": "15.00",
                    "cost_eur": f"{int(hours[0]) * 15}.00",
                },
            )
            yield self.entry("planning", "plan_started", plan, {})
        if material:
            yield from self.provision(plan, measure, school, semester, kind, amount)
        if continues or rnd.random() < 0.3:
            yield self.entry(
                "planning",
                "plan_evaluated",
                plan,
                {
                    "risk_outcomes": {},
                    "outcome": "continues_learning"
                    if continues
                    else rnd.choice(["continues_learning", "left_education", "graduated"]),
                },
            )
            if not continues and rnd.random() < 0.5:
                yield self.entry(
                    "planning",
                    "plan_closed",
                    plan,
                    {"outcome": "continues_learning", "cause": "evaluated"},
                )
        return plan

    def provision(
        self, plan: str, measure: str, school: str, semester: str, kind: str, amount: str
    ) -> Iterator[tuple]:
        provision = self.uid()
        ids = {"provision_id": provision, "plan_id": plan, "measure_id": measure}
        where = {"school_id": school, "semester": semester}
        yield self.entry(
            "provisioning",
            "provision_requested",
            provision,
            {**ids, **where, "status": "requested", "kind": kind, "planned_eur": amount},
        )
        money = {"provision_id": provision, "amount_eur": amount}
        yield self.entry("provisioning", "budget_committed", self.uid(), {**where, **money})
        yield self.entry(
            "provisioning",
            "provision_committed",
            provision,
            {**ids, "status": "requested", "amount_eur": amount},
        )
        yield self.entry(
            "provisioning",
            "provision_delivered",
            provision,
            {
                **ids,
                "status": "delivered",
                "delivery_id": self.uid(),
                "amount_eur": amount,
                "delivered_on": "2019-11-15",
            },
        )
        yield self.entry("provisioning", "budget_spent", self.uid(), {**where, **money})


def app_env(store: str, data_dir: Path, environ: dict[str, str]) -> dict[str, str]:
    from shared.store import store_env

    return store_env("reporting", data_dir, environ)


def _envelope(row: tuple) -> Any:
    from shared.contracts import Envelope

    return Envelope.from_message(
        {
            "event_id": row[3],
            "event_type": row[4],
            "schema_version": row[5],
            "source": row[1],
            "notification_id": row[2],
            "previous_id": None,
            "occurred_at": row[8],
            "aggregate_id": row[6],
            "aggregate_version": row[7],
            "actor": row[9],
            "payload": json.loads(row[10]),
        }
    )


def generate(env: dict[str, str], plans: int) -> dict[str, Any]:
    """Write the journal straight into a fresh store; check a sample against the contracts."""
    from services.reporting.application import ReportingApplication
    from services.reporting.journal import _COLUMNS
    from shared.contracts import registry

    started = time.perf_counter()
    app = ReportingApplication(env)
    generator = Generator(plans)
    statement = (
        f"INSERT INTO {app.journal.table} ({', '.join(_COLUMNS)}) "
        f"VALUES ({', '.join('?' * len(_COLUMNS))})"
    )
    batch: list[tuple] = []
    checked = 0
    for row in generator.rows():
        if generator.seq <= 2000 or generator.seq % 997 == 0:
            registry.load(_envelope(row))
            checked += 1
        batch.append(row)
        if len(batch) == 20_000:
            with app.transaction() as sql:
                sql.executemany(statement, batch)
            batch = []
    if batch:
        with app.transaction() as sql:
            sql.executemany(statement, batch)
    entries = app.journal.count(app.query)
    app.close()
    return {
        "entries": entries,
        "plans": plans,
        "schools": len(generator.schools),
        "contract_checked": checked,
        "seconds": round(time.perf_counter() - started, 1),
    }


# -- the measured work, each in a child process ----------------------------------------------


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(what: str, env: dict[str, str]) -> dict[str, Any]:
    from services.reporting.application import ReportingApplication

    app = ReportingApplication(env)
    before = _rss_mib()
    cpu, started = time.process_time(), time.perf_counter()
    if what == "rebuild":
        rebuilt = app.rebuild()
        assert rebuilt is not None
        seconds, entries = rebuilt.seconds, rebuilt.entries
        cpu_seconds = time.process_time() - cpu
        digest = rebuilt.digest  # computed after the timed part
    else:
        entries, loads = 0, json.loads
        with app.reading() as query:
            for page in app.journal.entries(query):
                for *_, payload in page:
                    loads(payload)
                entries += len(page)
        seconds, cpu_seconds, digest = (
            time.perf_counter() - started,
            time.process_time() - cpu,
            None,
        )
    app.close()
    return {
        "entries": entries,
        "seconds": round(seconds, 3),
        "per_second": round(entries / seconds, 1),
        "cpu_seconds": round(cpu_seconds, 3),
        "rss_before_mib": round(before, 1),
        "peak_rss_mib": round(_rss_mib(), 1),
        "digest": digest,
    }


def run_child(what: str, env: dict[str, str]) -> dict[str, Any]:
    from bench.stack import meter

    child_process = subprocess.Popen(
        [sys.executable, "-m", "bench.reporting", "child", what, json.dumps(env)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    cpu = meter(child=child_process.pid)
    out, err = child_process.communicate(timeout=1800)
    if child_process.returncode != 0:
        raise RuntimeError(f"{what} child failed: {err[-2000:]}")
    # The child is gone: its own CPU is in its result; what the meter saw is the rest.
    machine = cpu.read()
    result = dict(json.loads(out.strip().splitlines()[-1]))
    busy, child_cores = machine["machine_busy_cores"], result["cpu_seconds"] / machine["seconds"]
    result["other_work_cores"] = round(max(busy - child_cores, 0.0), 2)
    return result


# -- the report -------------------------------------------------------------------------------


def time_reports(env: dict[str, str], repeats: int = 5) -> dict[str, Any]:
    from services.reporting.application import ReportingApplication, ReportRequest
    from services.reporting.report import Period
    from shared.auth import Principal

    app = ReportingApplication(env)
    auditor = Principal("bench", "auditor")
    year = Period.school_year(SCHOOL_YEAR)
    scopes = {
        "nationwide": ReportRequest(year),
        "municipality": ReportRequest(year, municipality="municipality-07"),
        "school": ReportRequest(year, school_id="school-123"),
    }
    results: dict[str, Any] = {}
    for name, request in scopes.items():
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            report = app.esf_report(request, auditor)
            times.append(time.perf_counter() - started)
        results[name] = {
            "median_ms": round(statistics.median(times) * 1000, 1),
            "max_ms": round(max(times) * 1000, 1),
            "plans": sum(report["indicators"]["plans_by_status"].values()),
            "pupils_supported": report["indicators"]["pupils_supported"]["total"],
        }
    peer = []
    for _ in range(repeats):
        started = time.perf_counter()
        app.query(f"SELECT COUNT(DISTINCT pupil_id) AS n FROM {app.models['plans']}")
        peer.append(time.perf_counter() - started)
    results["peer_scan_median_ms"] = round(statistics.median(peer) * 1000, 1)
    results["ratio_nationwide_to_peer"] = round(
        results["nationwide"]["median_ms"] / results["peer_scan_median_ms"], 1
    )
    started = time.perf_counter()
    replayed = app.esf_report(ReportRequest(year, as_of=datetime.now(UTC)), auditor)
    results["as_of_replay_seconds"] = round(time.perf_counter() - started, 1)
    live = app.esf_report(ReportRequest(year), auditor)
    results["as_of_replay_equals_live"] = replayed["indicators"] == live["indicators"]
    app.close()
    return results


def run(store: str, plans: int, workdir: Path, rounds: int = 2) -> dict[str, Any]:
    from bench.stack import log, settle

    environ = dict(os.environ)
    data_dir = workdir / f"reporting-{store}"
    stores = None
    if store == "postgres":
        from shared.testing import Stores

        stores = Stores("postgres", data_dir, environ)
        environ.update(stores.env(["reporting"]))
    env = app_env(store, data_dir, environ)
    try:
        log(f"reporting [{store}]: generating {plans} plans into the journal")
        data = generate(env, plans)
        log(f"reporting [{store}]: {data['entries']} entries in {data['seconds']} s")
        scans: list[dict[str, Any]] = []
        rebuilds: list[dict[str, Any]] = []
        for r in range(rounds):
            for what in ("scan", "rebuild") if r % 2 == 0 else ("rebuild", "scan"):
                settle()
                result = run_child(what, env)
                (scans if what == "scan" else rebuilds).append(result)
                log(
                    f"reporting [{store}] {what}: {result['per_second']:,.0f} entries/s, "
                    f"peak {result['peak_rss_mib']} MiB"
                )
        digests = {r["digest"] for r in rebuilds}
        settle()
        reports = time_reports(env)
        scan_rate = statistics.median(r["per_second"] for r in scans)
        rebuild_rate = statistics.median(r["per_second"] for r in rebuilds)
        return {
            "store": store,
            "data": data,
            "scan": scans,
            "rebuild": rebuilds,
            "scan_per_second": scan_rate,
            "rebuild_per_second": rebuild_rate,
            "ratio": round(rebuild_rate / scan_rate, 3),
            "rebuild_peak_rss_mib": max(r["peak_rss_mib"] for r in rebuilds),
            "rebuild_rss_before_mib": max(r["rss_before_mib"] for r in rebuilds),
            "rebuild_digests_equal": len(digests) == 1,
            "report": reports,
        }
    finally:
        if stores is not None:
            stores.drop()


def table_rows(results: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """Rows for bench/__main__.py's table: measurement, ours, peer, ratio, target, other work."""
    from bench.__main__ import fmt, other, verdict

    rows: list[tuple[str, ...]] = []
    for r in results:
        s, n = r["store"], r["data"]["entries"]
        rows.append(
            (
                f"4 rebuild [{s}] entries/s, journal of {n:,}",
                fmt(r["rebuild_per_second"]),
                fmt(r["scan_per_second"]) + " scan",
                fmt(r["ratio"], "x"),
                f">= {TARGET_RATIO}x "
                f"{verdict(r['rebuild_per_second'] >= TARGET_RATIO * r['scan_per_second'])}",
                other(*r["scan"], *r["rebuild"]),
            )
        )
        rows.append(
            (
                "  rebuild peak memory (resident, child)",
                f"{r['rebuild_peak_rss_mib']} MiB",
                f"{r['rebuild_rss_before_mib']} MiB before",
                "",
                "(info)",
                "",
            )
        )
        report = r["report"]
        worst = max(
            report[scope]["median_ms"] for scope in ("nationwide", "municipality", "school")
        )
        rows.append(
            (
                f"  ESF report, {r['data']['plans']:,} plans: nation/municipality/school",
                "/".join(
                    fmt(report[x]["median_ms"]) for x in ("nationwide", "municipality", "school")
                )
                + " ms",
                fmt(report["peer_scan_median_ms"], " ms scan"),
                fmt(report["ratio_nationwide_to_peer"], "x"),
                f"<= {TARGET_REPORT_MS:.0f} ms {verdict(worst <= TARGET_REPORT_MS)}",
                "",
            )
        )
        rows.append(
            (
                "  ESF report as_of: replay of the whole journal",
                f"{report['as_of_replay_seconds']} s",
                "",
                "",
                "(info) equals live: " + str(report["as_of_replay_equals_live"]),
                "",
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.reporting")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("child")
    c.add_argument("what", choices=["scan", "rebuild"])
    c.add_argument("env")
    r = sub.add_parser("run")
    r.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    r.add_argument("--plans", type=int, default=100_000)
    r.add_argument("--rounds", type=int, default=2)
    args = p.parse_args(argv)
    if args.command == "child":
        print(json.dumps(child(args.what, json.loads(args.env))))
        return 0
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-reporting-", dir=REPO / "var") as tmp:
        print(json.dumps(run(args.store, args.plans, Path(tmp), args.rounds), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
