"""Provisioning's read models: one row per provision, for lists and for finding a plan's
provisions, kept by effects in the same transaction as the provision's events, so it is
never behind them; and the schools identification registered, for the tenant policy."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from services.provisioning.domain import Provision
from shared.schools import RegisteredSchools
from shared.store import Sql

Effect = Callable[[Sql], None]
Query = Callable[..., list[Any]]

_COLUMNS = (
    "provision_id",
    "plan_id",
    "measure_id",
    "school_id",
    "semester",
    "kind",
    "planned_eur",
    "committed_eur",
    "delivered_eur",
    "status",
    "version",
)


class ProvisionsReadModel:
    def __init__(self, prefix: str) -> None:
        self.table = f"{prefix}provisions"

    def create_table(self, sql: Sql) -> None:
        sql.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} ("
            "provision_id TEXT PRIMARY KEY, plan_id TEXT NOT NULL, measure_id TEXT NOT NULL, "
            "school_id TEXT NOT NULL, semester TEXT NOT NULL, kind TEXT NOT NULL, "
            "planned_eur TEXT NOT NULL, committed_eur TEXT NOT NULL, "
            "delivered_eur TEXT NOT NULL, status TEXT NOT NULL, version INTEGER NOT NULL)"
        )
        sql.execute(f"CREATE INDEX IF NOT EXISTS {self.table}_plan ON {self.table} (plan_id)")
        sql.execute(
            f"CREATE INDEX IF NOT EXISTS {self.table}_school "
            f"ON {self.table} (school_id, semester, status)"
        )

    def upsert(self, provision: Provision) -> Effect:
        row = (
            str(provision.id),
            provision.plan_id,
            provision.measure_id,
            provision.school_id,
            provision.semester,
            provision.kind,
            f"{provision.planned_eur:.2f}",
            f"{provision.committed_eur:.2f}",
            f"{provision.delivered_eur:.2f}",
            provision.status,
            provision.version,
        )
        updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[5:])

        def effect(sql: Sql) -> None:
            sql.execute(
                f"INSERT INTO {self.table} ({', '.join(_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_COLUMNS))}) "
                f"ON CONFLICT (provision_id) DO UPDATE SET {updates}",
                row,
            )

        return effect

    def of_plan(self, query: Query, plan_id: str) -> list[str]:
        rows = query(
            f"SELECT provision_id FROM {self.table} WHERE plan_id = ? ORDER BY provision_id",
            (plan_id,),
        )
        return [str(row["provision_id"]) for row in rows]

    def list(
        self,
        query: Query,
        *,
        school_ids: Sequence[str] | None,
        plan_id: str | None = None,
        semester: str | None = None,
        status: str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[dict[str, Any]]:
        clauses: list[str] = []
        params: list[object] = []
        if school_ids is not None:
            if not school_ids:
                return []
            clauses.append(f"school_id IN ({','.join('?' * len(school_ids))})")
            params.extend(school_ids)
        for column, value in (("plan_id", plan_id), ("semester", semester), ("status", status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if after is not None:
            clauses.append("provision_id > ?")
            params.append(after)
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        rows = query(
            f"SELECT * FROM {self.table} {where}ORDER BY provision_id LIMIT ?", (*params, limit)
        )
        return [dict(row) for row in rows]


class SchoolsReadModel(RegisteredSchools):
    """Which municipality each school identification registered belongs to (the shipped
    reference schools are known without an event): a municipal coordinator's tenant."""

    def __init__(self, prefix: str) -> None:
        self.table = f"{prefix}schools"

    def create_table(self, sql: Sql) -> None:
        sql.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} "
            "(school_id TEXT PRIMARY KEY, municipality TEXT NOT NULL)"
        )

    def effects_for(self, event_type: str, payload: dict[str, Any]) -> list[Effect]:
        if event_type != "school_registered":
            return []
        row = (payload["school_id"], payload["municipality"])

        def effect(sql: Sql) -> None:
            sql.execute(
                f"INSERT INTO {self.table} (school_id, municipality) VALUES (?, ?) "
                "ON CONFLICT (school_id) DO UPDATE SET municipality = excluded.municipality",
                row,
            )

        return [effect]
