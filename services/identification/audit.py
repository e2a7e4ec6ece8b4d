"""The record of every read of a pupil's personal data: who, when, which pupil.

Kept in an append-only table of identification's own database (UPDATE and DELETE
are refused by triggers), outside the event store: a read is not a change of the
pupil, so it must not bump the pupil's version (that would turn every GET into a
conflict for the next writer) nor travel on the bus to every other service (the
access log is itself sensitive, and no consumer needs it). It holds no personal
data of the pupil, so erasure leaves it in place as the controller's evidence of
who saw the data before.

A person's read through the API has no ``purpose``; another service's read names one
(reporting's ``esf_age_band``: the pupil's age band on a day, worked out from the birth
date, which itself never leaves identification).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from shared.store import SQLITE, Sql, add_missing_columns

Query = Callable[..., list[Any]]


class PersonalDataReads:
    def __init__(self, prefix: str) -> None:
        self.table = f"{prefix}personal_data_reads"

    def create_table(self, sql: Sql) -> None:
        t = self.table
        sql.execute(
            f"CREATE TABLE IF NOT EXISTS {t} (read_id TEXT PRIMARY KEY, "
            "pupil_id TEXT NOT NULL, reader TEXT NOT NULL, role TEXT NOT NULL, "
            "read_at TEXT NOT NULL, purpose TEXT)"
        )
        sql.execute(f"CREATE INDEX IF NOT EXISTS {t}_pupil ON {t} (pupil_id, read_at)")
        # A table made before reads had a purpose gains the column (rows kept as they are).
        add_missing_columns(sql, self.table, {"purpose": "TEXT"})
        if sql.dialect == SQLITE:
            for op in ("UPDATE", "DELETE"):
                sql.execute(
                    f"CREATE TRIGGER IF NOT EXISTS {t}_no_{op.lower()} BEFORE {op} ON {t} "
                    "BEGIN SELECT RAISE(ABORT, 'the record of reads is append-only'); END"
                )
            return
        sql.execute(
            f"CREATE OR REPLACE FUNCTION {t}_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'the record of reads is append-only' "
            "USING ERRCODE = 'insufficient_privilege'; END $$"
        )
        sql.execute(
            f"CREATE OR REPLACE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON {t} "
            f"FOR EACH ROW EXECUTE FUNCTION {t}_refuse()"
        )

    def record(
        self, sql: Sql, pupil_id: UUID, reader: str, role: str, purpose: str | None = None
    ) -> None:
        sql.execute(
            f"INSERT INTO {self.table} (read_id, pupil_id, reader, role, read_at, purpose) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (uuid4().hex, str(pupil_id), reader, role, datetime.now(UTC).isoformat(), purpose),
        )

    def of_pupil(self, query: Query, pupil_id: UUID) -> list[dict[str, Any]]:
        rows = query(
            f"SELECT reader, role, read_at, purpose FROM {self.table} WHERE pupil_id = ? "
            "ORDER BY read_at, read_id",
            (str(pupil_id),),
        )
        return [
            {"by": r["reader"], "role": r["role"], "at": r["read_at"], "purpose": r["purpose"]}
            for r in rows
        ]
