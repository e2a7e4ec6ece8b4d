"""Identification's own read models, kept by effects in the transaction of each save.

- ``identification_pupils``: one row per pupil with no personal data (school, grade,
  gender, at risk, status, erased, version), for lists and filters.
- ``identification_schools``: schools added by a national coordinator; together with
  the shipped reference schools they form the school directory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from uuid import UUID

from services.identification.domain import Pupil
from services.identification.sqlrows import insert_rows
from shared.schools import School as SchoolInfo
from shared.schools import reference_schools
from shared.store import Sql

Query = Callable[..., list[Any]]
_LIST_COLUMNS = {
    "pupil_id": "text",
    "school_id": "text",
    "grade": "int",
    "gender": "text",
    "at_risk": "int",
    "status": "text",
    "erased": "int",
    "version": "int",
}


class PupilsList:
    def __init__(self, prefix: str) -> None:
        self.table = f"{prefix}pupils"

    def create_table(self, sql: Sql) -> None:
        sql.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} ("
            "pupil_id TEXT PRIMARY KEY, school_id TEXT NOT NULL, grade INTEGER NOT NULL, "
            "gender TEXT NOT NULL, at_risk INTEGER NOT NULL, status TEXT NOT NULL, "
            "erased INTEGER NOT NULL, version INTEGER NOT NULL)"
        )
        sql.execute(
            f"CREATE INDEX IF NOT EXISTS {self.table}_school ON {self.table} (school_id, pupil_id)"
        )

    def upsert(self, sql: Sql, pupils: Iterable[Pupil]) -> None:
        """Effect: each pupil's row as the pupil now is."""
        insert_rows(
            sql,
            self.table,
            _LIST_COLUMNS,
            [
                (
                    str(p.id),
                    p.school_id,
                    p.grade,
                    p.gender,
                    int(p.at_risk),
                    p.status,
                    int(p.erased),
                    p.version,
                )
                for p in pupils
            ],
            "ON CONFLICT (pupil_id) DO UPDATE SET "
            "school_id = excluded.school_id, grade = excluded.grade, gender = excluded.gender, "
            "at_risk = excluded.at_risk, status = excluded.status, "
            "erased = excluded.erased, version = excluded.version",
        )

    def states(self, query: Query, pupil_ids: list[UUID]) -> dict[str, dict[str, Any]]:
        """School and status of each of these pupils, by pupil id."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(pupil_ids), 500):
            chunk = [str(pupil_id) for pupil_id in pupil_ids[start : start + 500]]
            rows = query(
                f"SELECT pupil_id, school_id, status FROM {self.table} "
                f"WHERE pupil_id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            found.update((row["pupil_id"], dict(row)) for row in rows)
        return found

    def page(
        self,
        query: Query,
        school_ids: list[str] | None,
        filters: dict[str, Any],
        limit: int,
        after: str | None,
    ) -> list[dict[str, Any]]:
        """Rows in pupil id order; ``school_ids`` None means every school."""
        clauses, params = ["pupil_id > ?"], [after or ""]  # type: list[str], list[Any]
        if school_ids is not None:
            clauses.append(f"school_id IN ({','.join('?' * len(school_ids)) or 'NULL'})")
            params.extend(school_ids)
        for column in ("school_id", "at_risk", "status"):
            if filters.get(column) is not None:
                clauses.append(f"{column} = ?")
                value = filters[column]
                params.append(int(value) if isinstance(value, bool) else value)
        rows = query(
            f"SELECT * FROM {self.table} WHERE {' AND '.join(clauses)} ORDER BY pupil_id LIMIT ?",
            [*params, limit],
        )
        return [
            {**dict(row), "at_risk": bool(row["at_risk"]), "erased": bool(row["erased"])}
            for row in rows
        ]


class SchoolDirectory:
    """The shipped reference schools and those registered here."""

    def __init__(self, prefix: str) -> None:
        self.table = f"{prefix}schools"

    def create_table(self, sql: Sql) -> None:
        sql.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} ("
            "school_id TEXT PRIMARY KEY, name TEXT NOT NULL, municipality TEXT NOT NULL, "
            "kind TEXT NOT NULL, owner TEXT NOT NULL, "
            "grade_from INTEGER NOT NULL, grade_to INTEGER NOT NULL)"
        )

    def add(self, sql: Sql, school: SchoolInfo) -> None:
        """Effect: a newly registered school."""
        sql.execute(
            f"INSERT INTO {self.table} "
            "(school_id, name, municipality, kind, owner, grade_from, grade_to) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                school.school_id,
                school.name,
                school.municipality,
                school.kind,
                school.owner,
                *school.grades,
            ),
        )

    def all(self, query: Query) -> list[SchoolInfo]:
        rows = query(f"SELECT * FROM {self.table} ORDER BY school_id")
        return [*reference_schools().values(), *map(_school, rows)]

    def get(self, query: Query, school_id: str) -> SchoolInfo | None:
        if school_id in reference_schools():
            return reference_schools()[school_id]
        rows = query(f"SELECT * FROM {self.table} WHERE school_id = ?", (school_id,))
        return _school(rows[0]) if rows else None


def _school(row: Any) -> SchoolInfo:
    grades = (int(row["grade_from"]), int(row["grade_to"]))
    return SchoolInfo(
        row["school_id"], row["name"], row["municipality"], row["kind"], row["owner"], grades
    )
