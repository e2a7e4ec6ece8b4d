"""Journal import: a 10,000-row e-journal file against saving the same aggregates in batches.

On the same generated file (``journal_csv``), each measurement on a fresh store:

- import: ``IdentificationApplication.import_journal`` in this process, all of it timed:
  decoding and checking every row, looking up the personal codes, a new key per pupil,
  sealing, building the aggregates, and saving 500 rows a transaction (events, list rows,
  wrapped keys and code index together).
- batched_save (the baseline the target is set against): the same aggregates saved
  straight through the Application, ``app.save(*pupils)`` 500 a transaction; timed:
  building each batch's aggregates (``Pupil(...)``, ``record_risk_sign``) and saving them.
  What they are made of (rows read, keys, sealed values) is prepared beforehand, untimed.
- prebuilt_save: the same, with the aggregates built beforehand: only ``app.save`` timed.
- prebuilt_save_with_tables: built beforehand, saved with their list and vault rows
  (``save_pupils``), which the import must also write.
- import_over_http: ``pumpurs serve identification`` on a fresh store, the file POSTed to
  ``/imports/journal`` as a teacher would, timed from request to answer. That process's
  outbox relay publishes the new events meanwhile, on the same CPU.

Rate = data rows / seconds, the median of the rounds (the order rotated each round).
Target: import >= half the batched_save rate. Each row also gives rows per CPU second of
the process doing the work (this one; the service's for HTTP; PostgreSQL's own CPU is not
in it), which a machine shared with other work disturbs much less than wall-clock time.

Call ``run(store, rows, workdir, keys_dir, rounds=3)`` (as bench/__main__.py calls the
others), or ``python -m bench.journal_import [--store sqlite|postgres] [--rows N]
[--rounds N]`` on its own, with RabbitMQ (and PostgreSQL) described by the environment.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import requests

from shared.testing import Stores

SCHOOL = "daugavpils-10-vsk"
SEMESTER = "2019-2020-1"
BATCH = 500
TARGET_RATIO = 0.5
SUBJECTS = (
    "Latviešu valoda",
    "Matemātika",
    "Angļu valoda",
    "Krievu valoda",
    "Vēsture",
    "Ģeogrāfija",
    "Bioloģija",
    "Fizika",
    "Ķīmija",
    "Informātika",
    "Mūzika",
    "Sports un veselība",
)
GIVEN = ("Jānis", "Anna", "Ģirts", "Līga", "Ēriks", "Ilze", "Kārlis", "Žanna", "Ņikita", "Ūna")
FAMILY = ("Bērziņš", "Ozola", "Kalniņš", "Liepiņa", "Šņore", "Čakste", "Ķēniņš", "Ļaviņa")
HEADER = (
    "personal_code",
    "given_name",
    "family_name",
    "grade",
    "birth_date",
    "gender",
    "unexcused_lessons",
)


def old_code(born: date, serial: int) -> str:
    """``DDMMYY-2NNNK`` for one born in the 2000s: the serial (mod 1000), or the next one
    that a check digit fits, and that digit."""
    from services.identification.personal_code import check_digit

    while True:
        first_ten = f"{born:%d%m}{born.year % 100:02d}2{serial % 1000:03d}"
        digit = check_digit(first_ten)
        if digit is not None:
            return f"{first_ten[:6]}-{first_ten[6:]}{digit}"
        serial += 1


def journal_csv(rows: int, seed: int = 20191231) -> bytes:
    """A school's semester export: unique valid codes (one in ten old-format), Latvian
    names, about 15% over 20 unexcused lessons and 20% with a mark of 3 or less or nv."""
    rng = random.Random(seed)
    lines = [",".join((*HEADER, *SUBJECTS))]
    old_codes: set[str] = set()
    for i in range(rows):
        born = date(2003, 1, 1) + timedelta(days=rng.randrange(12 * 365))
        if i % 10 == 0:
            serial = i // 10
            while (code := old_code(born, serial)) in old_codes:
                serial += 1
            old_codes.add(code)
        else:
            code = f"32{i // 100_000:04d}-{i % 100_000:05d}"
        absences = rng.randrange(21, 60) if rng.random() < 0.15 else rng.randrange(0, 21)
        marks = [str(rng.randrange(4, 11)) for _ in SUBJECTS]
        if rng.random() < 0.2:
            marks[rng.randrange(len(marks))] = rng.choice(("1", "2", "3", "nv"))
        lines.append(
            ",".join(
                (
                    code,
                    rng.choice(GIVEN),
                    rng.choice(FAMILY),
                    str(rng.randrange(1, 13)),
                    born.isoformat(),
                    rng.choice("FM"),
                    str(absences),
                    *marks,
                )
            )
        )
    return ("\n".join(lines) + "\n").encode("utf-8")


def _app(stores: Stores, service_env: dict[str, str]) -> Any:
    from services.identification.application import IdentificationApplication
    from shared.store import store_env

    env = {**os.environ, **service_env}
    return IdentificationApplication(store_env("identification", stores.data_dir, env))


def _fresh(store: str, workdir: Path, label: str) -> tuple[Stores, dict[str, str]]:
    stores = Stores(store, Path(tempfile.mkdtemp(prefix=f"{label}-", dir=workdir)), os.environ)
    return stores, stores.env(["identification"])


def measure_import(app: Any, raw: bytes) -> dict[str, Any]:
    started, cpu = time.perf_counter(), time.process_time()
    report = app.import_journal(school_id=SCHOOL, semester=SEMESTER, raw=raw, by="bench")
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    rows = report.rows
    return {
        "rows": rows,
        "registered": report.registered,
        "signs_recorded": report.signs_recorded,
        "errors": len(report.errors),
        "events": app.head(),
        "seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds, 1),
        "rows_per_cpu_second": round(rows / cpu, 1),
    }


def _inputs(app: Any, raw: bytes) -> list[tuple[Any, Any, list[tuple[str, str]]]]:
    """What the aggregates are made of, prepared as the import prepares it: each row's new
    pupil (id, key, sealed personal data, wrapped key, digest) and its sealed signs."""
    from services.identification.journal import Semester, parse_journal
    from services.identification.views import EVIDENCE

    semester = Semester.parse(SEMESTER)
    inputs = []
    for row in parse_journal(raw, app.school(SCHOOL)).rows:
        new = app.new_pupil(SCHOOL, row.grade, row.gender, row.personal, "bench")
        signs = [(code, new.key.seal(EVIDENCE, text)) for code, text in row.signs(semester)]
        inputs.append((row, new, signs))
    return inputs


def _aggregate(new: Any, row: Any, signs: list[tuple[str, str]]) -> Any:
    """The same aggregate the import makes: registered, then its journal signs."""
    from services.identification.domain import JOURNAL, Pupil

    end = date(2019, 12, 31)
    personal = new.pupil.personal_data
    pupil = Pupil(new.pupil.id, SCHOOL, row.grade, row.gender, personal, "bench")
    for code, sealed in signs:
        pupil.record_risk_sign(code, end, sealed, JOURNAL, "bench")
    return pupil


def measure_batched_save(app: Any, raw: bytes, mode: str) -> dict[str, Any]:
    """``construct``: build each batch's aggregates and ``app.save`` them (both timed);
    ``save``: the aggregates built beforehand, only ``app.save`` timed;
    ``save_pupils``: built beforehand, saved with their list and vault rows."""
    inputs = _inputs(app, raw)
    built = [_aggregate(new, row, signs) for row, new, signs in inputs]
    news = [new for _, new, _ in inputs]  # their wrapped keys and digests, for the vault
    started, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(inputs), BATCH):
        if mode == "construct":
            chunk = inputs[start : start + BATCH]
            app.save(*(_aggregate(new, row, signs) for row, new, signs in chunk))
        elif mode == "save":
            app.save(*built[start : start + BATCH])
        else:
            app.save_pupils(built[start : start + BATCH], news[start : start + BATCH])
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "rows": len(inputs),
        "events": app.head(),
        "seconds": round(seconds, 3),
        "rows_per_second": round(len(inputs) / seconds, 1),
        "rows_per_cpu_second": round(len(inputs) / cpu, 1),
        "batch_rows": BATCH,
    }


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_http(
    store: str, raw: bytes, rows: int, workdir: Path, keys_dir: Path
) -> dict[str, Any]:
    from bench.stack import vhost
    from shared.testing import ServiceProcess, token_for

    stores, service_env = _fresh(store, workdir, "journal-http")
    try:
        with vhost("journal") as broker:
            service = ServiceProcess(
                "identification",
                {
                    **service_env,
                    "AMQP_URI": broker.uri,
                    "PUMPURS_KEYS_DIR": str(keys_dir),
                    "PUMPURS_LOG_LEVEL": "WARNING",
                },
                stores.data_dir,
            )
            service.start()
            try:
                token = token_for("teacher", keys_dir, school=SCHOOL)
                cpu = _cpu_seconds(service.proc.pid)  # type: ignore[union-attr]
                started = time.perf_counter()
                answer = requests.post(
                    f"{service.url}/imports/journal",
                    params={"school_id": SCHOOL, "semester": SEMESTER},
                    data=raw,
                    headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
                    timeout=600,
                )
                seconds = time.perf_counter() - started
                cpu = _cpu_seconds(service.proc.pid) - cpu  # type: ignore[union-attr]
            finally:
                service.stop()
    finally:
        stores.drop()
    if answer.status_code != 200:
        raise RuntimeError(f"import over HTTP answered {answer.status_code}: {answer.text[:200]}")
    report = answer.json()
    if report["rows"] != rows or report["errors"]:
        raise RuntimeError(f"import over HTTP reported {report['rows']} rows, errors")
    return {
        "rows": rows,
        "registered": report["registered"],
        "signs_recorded": report["signs_recorded"],
        "seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds, 1),
        "rows_per_cpu_second": round(rows / cpu, 1),
        "body_bytes": len(raw),
    }


MEASUREMENTS = (
    "import",
    "batched_save",
    "prebuilt_save",
    "prebuilt_save_with_tables",
    "import_over_http",
)


def _measure(
    label: str, store: str, raw: bytes, rows: int, workdir: Path, keys_dir: Path
) -> dict[str, Any]:
    """One measurement on a fresh store."""
    if label == "import_over_http":
        return measure_http(store, raw, rows, workdir, keys_dir)
    stores, service_env = _fresh(store, workdir, f"journal-{label}")
    try:
        os.environ.update({k: v for k, v in service_env.items() if k.startswith("POSTGRES_")})
        app = _app(stores, service_env)
        try:
            if label == "import":
                return measure_import(app, raw)
            mode = {"batched_save": "construct", "prebuilt_save": "save"}.get(label, "save_pupils")
            return measure_batched_save(app, raw, mode)
        finally:
            app.close()
    finally:
        stores.drop()


def run(store: str, rows: int, workdir: Path, keys_dir: Path, rounds: int = 3) -> dict[str, Any]:
    """Import vs batched save of the same aggregates on ``store`` (sqlite or postgres).

    Every measurement runs once a round on a fresh store, the order rotated each round;
    each rate is the median over the rounds (the machine may be shared: see ``runs``).
    """
    from statistics import median

    from bench.stack import log

    os.environ.setdefault("PUMPURS_KEYS_DIR", str(keys_dir))
    raw = journal_csv(rows)
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in MEASUREMENTS}
    for round_ in range(rounds):
        shift = round_ % len(MEASUREMENTS)
        for label in MEASUREMENTS[shift:] + MEASUREMENTS[:shift]:
            runs[label].append(_measure(label, store, raw, rows, workdir, keys_dir))
            log(f"journal/{store} round {round_ + 1}: {label} {runs[label][-1]['rows_per_second']}")
    results: dict[str, Any] = {
        "store": store,
        "file_rows": rows,
        "file_bytes": len(raw),
        "rounds": rounds,
        "batch_rows": BATCH,
    }
    rates = ("rows_per_second", "rows_per_cpu_second")
    for label, measured in runs.items():
        results[label] = {k: v for k, v in measured[0].items() if k not in ("seconds", *rates)}
        for rate in rates:
            results[label][rate] = round(median(m[rate] for m in measured), 1)
        results[label]["runs"] = [m["rows_per_second"] for m in measured]

    def ratio(label: str, to: str = "batched_save", rate: str = rates[0]) -> float:
        return round(results[label][rate] / results[to][rate], 2)

    results["ratio"] = ratio("import")
    results["ratio_per_round"] = [
        round(i["rows_per_second"] / b["rows_per_second"], 2)
        for i, b in zip(runs["import"], runs["batched_save"], strict=True)
    ]
    results["ratio_cpu"] = ratio("import", rate="rows_per_cpu_second")
    results["ratio_over_http"] = ratio("import_over_http")
    results["ratio_to_prebuilt_save"] = ratio("import", "prebuilt_save")
    results["ratio_to_prebuilt_save_with_tables"] = ratio("import", "prebuilt_save_with_tables")
    results["target_ratio"] = TARGET_RATIO
    # Judged on the rates themselves: 0.496 shows as 0.5 but does not meet 0.5.
    results["met"] = (
        results["import"]["rows_per_second"]
        >= TARGET_RATIO * results["batched_save"]["rows_per_second"]
    )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.journal_import", description=__doc__)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    from bench.stack import Stack

    workdir = Path(tempfile.mkdtemp(prefix="journal-bench-"))
    with Stack(want_postgres=args.store == "postgres"):
        results = run(args.store, args.rows, workdir, workdir / "keys", args.rounds)
    print(json.dumps(results, indent=2))
    return 0 if results["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
