"""Planning's read model of pupils, built from identification's events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.store import Sql

Effect = Callable[[Sql], None]


class PupilsReadModel:
    def __init__(self, prefix: str) -> None:
        self.table = f"{prefix}pupils"

    def create_table(self, sql: Sql) -> None:
        sql.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} ("
            "pupil_id TEXT PRIMARY KEY, school_id TEXT NOT NULL, grade INTEGER NOT NULL, "
            "gender TEXT NOT NULL, at_risk INTEGER NOT NULL DEFAULT 0, "
            "version INTEGER NOT NULL, applied_events INTEGER NOT NULL DEFAULT 1)"
        )
        sql.execute(f"CREATE INDEX IF NOT EXISTS {self.table}_school ON {self.table} (school_id)")

    def effects_for(
        self, event_type: str, pupil_id: str, version: int, payload: dict[str, Any]
    ) -> list[Effect]:
        if event_type == "pupil_registered":
            return [lambda sql: self._registered(sql, pupil_id, version, payload)]
        if event_type == "pupil_flagged_at_risk":
            return [lambda sql: self._set_at_risk(sql, pupil_id, version, True)]
        return [lambda sql: self._count(sql, pupil_id, version)]

    def _registered(self, sql: Sql, pupil_id: str, version: int, payload: dict[str, Any]) -> None:
        sql.execute(
            f"INSERT INTO {self.table} (pupil_id, school_id, grade, gender, at_risk, version) "
            "VALUES (?, ?, ?, ?, 0, ?) ON CONFLICT (pupil_id) DO NOTHING",
            (pupil_id, payload["school_id"], payload["grade"], payload["gender"], version),
        )

    def _set_at_risk(self, sql: Sql, pupil_id: str, version: int, at_risk: bool) -> None:
        sql.execute(
            f"UPDATE {self.table} SET at_risk = ?, version = ?, "
            "applied_events = applied_events + 1 WHERE pupil_id = ?",
            (1 if at_risk else 0, version, pupil_id),
        )

    def _count(self, sql: Sql, pupil_id: str, version: int) -> None:
        # Every applied event of the pupil counts once: an audit that none was applied twice.
        sql.execute(
            f"UPDATE {self.table} SET version = ?, applied_events = applied_events + 1 "
            "WHERE pupil_id = ?",
            (version, pupil_id),
        )

    def list(
        self, query: Callable[..., list[Any]], school_ids: list[str] | None, at_risk: bool | None
    ) -> list[dict[str, Any]]:
        clauses: list[str] = []
        params: list[object] = []
        if school_ids is not None:
            clauses.append(f"school_id IN ({','.join('?' * len(school_ids))})")
            params.extend(school_ids)
        if at_risk is not None:
            clauses.append("at_risk = ?")
            params.append(1 if at_risk else 0)
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        rows = query(f"SELECT * FROM {self.table} {where}ORDER BY pupil_id", params)
        return [
            {
                "pupil_id": row["pupil_id"],
                "school_id": row["school_id"],
                "grade": row["grade"],
                "gender": row["gender"],
                "at_risk": bool(row["at_risk"]),
            }
            for row in rows
        ]
