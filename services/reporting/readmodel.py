"""Reporting's read models: the rows of ``domain.py`` as SQL tables, kept two ways.

- As events arrive (the inbox): ``SqlState`` reads the rows a batch of events touches
  and writes them back, inside the transaction that also appends the journal entries and
  the tracking records.
- All at once (rebuild, ``as_of`` replays): ``MemoryState`` folds journal entries in
  memory and ``write_all`` inserts the rows in bulk.

``digest`` is a sha256 over a canonical dump (every table in a fixed order, rows sorted
by key in Python, so the database's collation does not matter): equal digests mean equal
read models, whichever way and on whichever database they were built.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.reporting.domain import Key, Row, risk_group
from shared.schools import reference_schools
from shared.store import SQLITE, Sql

Query = Callable[..., list[Any]]

# Raise when a table's definition or a rule changes: the service then rebuilds the read
# models from the journal when it starts (or ``pumpurs migrate reporting`` does).
# 5: a departure ends the departed pupil's open signs (``pupil_departed``).
# 6: a re-enrolment moves the pupil to the new school (``pupil_re_enrolled``); plans keep
#    their close cause (indexed), and a semester's years row takes the pupil's last plan
#    in it, not the one whose id sorts last; a years row keeps its profile once known;
#    a departure dated before a sign's observation ends the sign on that observation day.
READ_MODEL_VERSION = 6


@dataclass(frozen=True)
class Table:
    name: str
    keys: tuple[str, ...]
    values: tuple[str, ...]
    types: dict[str, str] = field(default_factory=dict)
    indexes: tuple[tuple[str, ...], ...] = ()
    # On SQLite, store the rows in key order (WITHOUT ROWID): reports scan them by a
    # prefix of the key, and count distinct pupils in key order without sorting.
    clustered: bool = False

    @property
    def columns(self) -> tuple[str, ...]:
        return self.keys + self.values


_T, _I = "TEXT", "BIGINT"


def _integers(*names: str) -> dict[str, str]:
    return dict.fromkeys(names, _I)


TABLES: tuple[Table, ...] = (
    Table(
        "schools",
        ("school_id",),
        ("municipality", "kind", "owner", "grade_from", "grade_to"),
        _integers("grade_from", "grade_to"),
    ),
    Table("pupils", ("pupil_id",), ("school_id", "grade", "gender", "profile"), _integers("grade")),
    Table(
        "signs",
        ("pupil_id", "risk_group", "code", "observed_on"),
        ("school_id", "resolved_on"),
        clustered=True,
    ),
    Table(
        "plans",
        ("plan_id",),
        (
            "pupil_id",
            "school_id",
            "semester",
            "status",
            "supported",
            "previous_plan_id",
            "outcome",
            "approved_on",
            "close_cause",
        ),
        _integers("supported"),
        # close_cause: the few plans closed on a departure, which the report looks up
        # (``EsfReport.held``, ``EsfReport.earlier_schools``)
        (("pupil_id",), ("semester", "school_id"), ("close_cause", "semester")),
    ),
    Table(
        "years",
        ("school_year", "pupil_id"),
        (
            "profile",
            "s1_school",
            "s1_plan",
            "s1_outcome",
            "s2_school",
            "s2_plan",
            "s2_outcome",
            "s1_age",
            "s2_age",
        ),
        clustered=True,
    ),
    Table("ages", ("pupil_id", "on_date"), ("band",), clustered=True),
    Table(
        "plan_counts",
        ("semester", "school_id", "status"),
        ("plans", "continued"),
        _integers("plans", "continued"),
        clustered=True,
    ),
    Table(
        "hours",
        ("plan_id", "kind"),
        ("school_id", "semester", "hours", "cost_eur"),
        _integers("hours", "cost_eur"),
        (("semester", "school_id"),),
    ),
    Table(
        "hour_sums",
        ("semester", "school_id", "kind"),
        ("hours", "cost_eur"),
        _integers("hours", "cost_eur"),
        clustered=True,
    ),
    Table(
        "provisions",
        ("provision_id",),
        (
            "plan_id",
            "school_id",
            "semester",
            "kind",
            "planned_eur",
            "committed_eur",
            "delivered_eur",
            "status",
        ),
        _integers("planned_eur", "committed_eur", "delivered_eur"),
        (("semester", "school_id"),),
    ),
    Table(
        "material_sums",
        ("semester", "school_id", "kind"),
        ("planned_eur", "committed_eur", "delivered_eur"),
        _integers("planned_eur", "committed_eur", "delivered_eur"),
        clustered=True,
    ),
    Table(
        "budgets",
        ("school_id", "semester"),
        ("allocated_eur", "committed_eur", "spent_eur"),
        _integers("allocated_eur", "committed_eur", "spent_eur"),
    ),
)
BY_NAME = {table.name: table for table in TABLES}


def school_kind(schools: Callable[[str], Row | None], school_id: str) -> str | None:
    """A school's kind as registered, else as the reference data has it."""
    registered = schools(school_id)
    if registered is not None:
        return str(registered[1])
    known = reference_schools().get(school_id)
    return known.kind if known else None


class ReadModels:
    """The tables, named with the service's prefix (``reporting_rm_plans``...)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = f"{prefix}rm_"
        self.meta = f"{self.prefix}meta"

    def __getitem__(self, name: str) -> str:
        return self.prefix + name

    # -- tables ----------------------------------------------------------------------------
    def create_tables(self, sql: Sql) -> None:
        for table in TABLES:
            name = self[table.name]
            columns = ", ".join(f"{c} {table.types.get(c, _T)}" for c in table.columns)
            clustered = " WITHOUT ROWID" if table.clustered and sql.dialect == SQLITE else ""
            sql.execute(
                f"CREATE TABLE IF NOT EXISTS {name} ({columns}, "
                f"PRIMARY KEY ({', '.join(table.keys)})){clustered}"
            )
            for index in table.indexes:
                sql.execute(
                    f"CREATE INDEX IF NOT EXISTS {name}_{'_'.join(index)} "
                    f"ON {name} ({', '.join(index)})"
                )

    def create_meta(self, sql: Sql) -> None:
        sql.execute(
            f"CREATE TABLE IF NOT EXISTS {self.meta} (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )

    def drop_tables(self, sql: Sql) -> None:
        for table in TABLES:
            sql.execute(f"DROP TABLE IF EXISTS {self[table.name]}")

    def version(self, sql: Sql) -> int | None:
        row = sql.execute(f"SELECT value FROM {self.meta} WHERE name = 'version'").fetchone()
        return int(row["value"]) if row else None

    def set_version(self, sql: Sql, version: int = READ_MODEL_VERSION) -> None:
        sql.execute(
            f"INSERT INTO {self.meta} (name, value) VALUES ('version', ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (str(version),),
        )

    # -- all at once ----------------------------------------------------------------------
    def write_all(
        self, sql: Sql, state: MemoryState, pause: Callable[[], None], batch: int = 20_000
    ) -> None:
        for table in TABLES:
            rows = [(*key, *row) for key, row in state.tables[table.name].items()]
            statement = (
                f"INSERT INTO {self[table.name]} ({', '.join(table.columns)}) "
                f"VALUES ({', '.join('?' * len(table.columns))})"
            )
            for start in range(0, len(rows), batch):
                sql.executemany(statement, rows[start : start + batch])
                pause()

    # -- the canonical dump -----------------------------------------------------------------
    def digest(self, query: Query) -> str:
        h = hashlib.sha256()
        for table in TABLES:
            columns = ", ".join(table.columns)
            rows = [
                tuple(row[c] for c in table.columns)
                for row in query(f"SELECT {columns} FROM {self[table.name]}")
            ]
            rows.sort(key=lambda r: r[: len(table.keys)])
            h.update(f"{table.name}\n".encode())
            for row in rows:
                h.update(json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode())
                h.update(b"\n")
        return h.hexdigest()


class SqlState:
    """Rows read and written inside an open transaction, written back by ``flush``.

    The events of a batch share one: a row several of them change (a school's counters)
    is read once and written once. Its own queries (``open_sign``, ``open_signs``,
    ``plans_of``) read the tables, so they write back what is pending first."""

    def __init__(self, sql: Sql, models: ReadModels) -> None:
        self.sql = sql
        self.models = models
        self._known: dict[tuple[str, Key], Row | None] = {}
        self._pending: dict[tuple[str, Key], Row] = {}

    def get(self, name: str, key: Key) -> Row | None:
        slot = (name, tuple(key))
        if slot not in self._known:
            self._known[slot] = self._select(name, key)
        row = self._known[slot]
        return None if row is None else list(row)  # a rule may change it before ``put``

    def put(self, name: str, key: Key, row: Row) -> None:
        slot = (name, tuple(key))
        self._known[slot] = self._pending[slot] = list(row)

    def flush(self) -> None:
        rows: dict[str, list[Row]] = {}
        for (name, key), row in self._pending.items():
            rows.setdefault(name, []).append([*key, *row])
        self._pending.clear()
        for name, table_rows in rows.items():
            self._upsert(BY_NAME[name], table_rows)

    def _where(self, table: Table) -> str:
        return " AND ".join(f"{k} = ?" for k in table.keys)

    def _select(self, name: str, key: Key) -> Row | None:
        table = BY_NAME[name]
        row = self.sql.execute(
            f"SELECT {', '.join(table.values)} FROM {self.models[name]} WHERE {self._where(table)}",
            key,
        ).fetchone()
        return None if row is None else [row[c] for c in table.values]

    def _upsert(self, table: Table, rows: list[Row]) -> None:
        """Write a table's pending rows: on PostgreSQL in one statement (one round trip a
        table, not one a row; the keys are distinct, as one statement needs)."""
        updates = ", ".join(f"{c} = excluded.{c}" for c in table.values)
        into = f"INSERT INTO {self.models[table.name]} ({', '.join(table.columns)}) "
        conflict = f" ON CONFLICT ({', '.join(table.keys)}) DO UPDATE SET {updates}"
        one_row = into + f"VALUES ({', '.join('?' * len(table.columns))})" + conflict
        if self.sql.dialect == SQLITE:
            self.sql.executemany(one_row, rows)
        elif len(rows) == 1:
            self.sql.execute(one_row, rows[0])
        else:
            arrays = ", ".join(f"?::{table.types.get(c, _T)}[]" for c in table.columns)
            columns = [list(column) for column in zip(*rows, strict=True)]
            self.sql.execute(f"{into}SELECT * FROM unnest({arrays}){conflict}", columns)

    def open_sign(self, pupil_id: str, group: str, code: str) -> str | None:
        self.flush()
        row = self.sql.execute(
            f"SELECT observed_on FROM {self.models['signs']} "
            "WHERE pupil_id = ? AND risk_group = ? AND code = ? AND resolved_on IS NULL",
            (pupil_id, group, code),
        ).fetchone()
        return None if row is None else str(row["observed_on"])

    def open_signs(self, pupil_id: str) -> list[tuple[Key, Row]]:
        self.flush()
        rows = self.sql.execute(
            f"SELECT risk_group, code, observed_on, school_id FROM {self.models['signs']} "
            "WHERE pupil_id = ? AND resolved_on IS NULL ORDER BY risk_group, code, observed_on",
            (pupil_id,),
        ).fetchall()
        keys = ("risk_group", "code", "observed_on")
        return [((pupil_id, *(row[k] for k in keys)), [row["school_id"], None]) for row in rows]

    def plans_of(self, pupil_id: str) -> list[tuple[Key, Row]]:
        self.flush()
        values = BY_NAME["plans"].values
        rows = self.sql.execute(
            f"SELECT plan_id, {', '.join(values)} FROM {self.models['plans']} WHERE pupil_id = ?",
            (pupil_id,),
        ).fetchall()
        return [((row["plan_id"],), [row[c] for c in values]) for row in rows]

    def school_kind(self, school_id: str) -> str | None:
        return school_kind(lambda s: self.get("schools", (s,)), school_id)


class MemoryState:
    """Rows in dictionaries, for folding the whole journal."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[Key, Row]] = {table.name: {} for table in TABLES}
        # pupil_id -> code -> observed_on of the pupil's unresolved sign of that code
        self._open: dict[str, dict[str, str]] = {}
        self._plans_of: dict[str, list[Key]] = {}

    def get(self, name: str, key: Key) -> Row | None:
        return self.tables[name].get(key)

    def put(self, name: str, key: Key, row: Row) -> None:
        table = self.tables[name]
        if name == "plans" and key not in table:
            self._plans_of.setdefault(row[0], []).append(key)
        elif name == "signs":
            pupil_id, _, code, observed_on = key
            if row[1] is None:
                self._open.setdefault(pupil_id, {})[code] = observed_on
            else:
                codes = self._open.get(pupil_id)
                if codes is not None and codes.get(code) == observed_on:
                    del codes[code]
                    if not codes:
                        del self._open[pupil_id]
        table[key] = row

    def open_sign(self, pupil_id: str, group: str, code: str) -> str | None:
        codes = self._open.get(pupil_id)
        return None if codes is None else codes.get(code)

    def open_signs(self, pupil_id: str) -> list[tuple[Key, Row]]:
        signs = self.tables["signs"]
        keys = [
            (pupil_id, risk_group(code), code, observed_on)
            for code, observed_on in sorted(self._open.get(pupil_id, {}).items())
        ]
        return [(key, list(signs[key])) for key in keys]

    def plans_of(self, pupil_id: str) -> list[tuple[Key, Row]]:
        plans = self.tables["plans"]
        return [(key, plans[key]) for key in self._plans_of.get(pupil_id, ())]

    def school_kind(self, school_id: str) -> str | None:
        return school_kind(lambda s: self.get("schools", (s,)), school_id)

    def size(self) -> int:
        return sum(len(rows) for rows in self.tables.values())
