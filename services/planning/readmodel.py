"""Planning's read models, in its own database.

- pupils (and their active risk signs) and schools, built only from identification's
  events, each effect committed with the inbox's tracking record;
- plans, one row per plan for lists and the one-plan-per-pupil-per-semester rule,
  kept by effects in the same transaction as the plan's events.

A pupil who departs and re-enrols (``pupil_re_enrolled``) is the new school's pupil, with no
sign and not at risk; the old school's plans, closed by the departure, stay the old school's
and leave the semester free for a plan at the new one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from services.planning.domain import ACTIVE, INACTIVE, Plan, PupilView, SchoolView
from shared.schools import RegisteredSchools, reference_schools
from shared.store import Sql, add_missing_columns

Effect = Callable[[Sql], None]
Query = Callable[..., list[Any]]


class PupilsReadModel:
    """What planning knows of each pupil: school, grade, risk, active signs, departure."""

    _LATER_COLUMNS = {
        "departed": "INTEGER NOT NULL DEFAULT 0",
        "departure_reason": "TEXT",
        "departed_on": "TEXT",
        "erased": "INTEGER NOT NULL DEFAULT 0",
    }

    def __init__(self, prefix: str) -> None:
        self.table = f"{prefix}pupils"
        self.signs = f"{prefix}pupil_risk_signs"

    def create_table(self, sql: Sql) -> None:
        sql.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} ("
            "pupil_id TEXT PRIMARY KEY, school_id TEXT NOT NULL, grade INTEGER NOT NULL, "
            "gender TEXT NOT NULL, at_risk INTEGER NOT NULL DEFAULT 0, "
            "version INTEGER NOT NULL, applied_events INTEGER NOT NULL DEFAULT 1)"
        )
        add_missing_columns(sql, self.table, self._LATER_COLUMNS)
        sql.execute(f"CREATE INDEX IF NOT EXISTS {self.table}_school ON {self.table} (school_id)")
        sql.execute(
            f"CREATE TABLE IF NOT EXISTS {self.signs} ("
            "pupil_id TEXT NOT NULL, code TEXT NOT NULL, observed_on TEXT NOT NULL, "
            "active INTEGER NOT NULL, PRIMARY KEY (pupil_id, code))"
        )

    def effects_for(
        self, event_type: str, pupil_id: str, version: int, payload: dict[str, Any]
    ) -> list[Effect]:
        effects: list[Effect] = []
        if event_type == "school_registered":
            return []
        if event_type == "pupil_registered":
            return [lambda sql: self._registered(sql, pupil_id, version, payload)]
        if event_type == "pupil_flagged_at_risk":
            effects.append(lambda sql: self._set(sql, pupil_id, at_risk=1))
        elif event_type == "pupil_risk_cleared":
            effects.append(lambda sql: self._set(sql, pupil_id, at_risk=0))
        elif event_type == "risk_sign_recorded":
            effects.append(lambda sql: self._sign(sql, pupil_id, payload, active=True))
        elif event_type == "risk_sign_resolved":
            effects.append(lambda sql: self._sign(sql, pupil_id, payload, active=False))
        elif event_type == "pupil_departed":
            effects.append(
                lambda sql: self._set(
                    sql,
                    pupil_id,
                    departed=1,
                    departure_reason=payload["reason"],
                    departed_on=payload["on"].isoformat(),
                )
            )
        elif event_type == "pupil_re_enrolled":
            effects.append(lambda sql: self._re_enrolled(sql, pupil_id, payload))
        elif event_type == "pupil_erased":
            effects.append(lambda sql: self._set(sql, pupil_id, erased=1))
        effects.append(lambda sql: self._count(sql, pupil_id, version))
        return effects

    def _registered(self, sql: Sql, pupil_id: str, version: int, payload: dict[str, Any]) -> None:
        sql.execute(
            f"INSERT INTO {self.table} (pupil_id, school_id, grade, gender, at_risk, version) "
            "VALUES (?, ?, ?, ?, 0, ?) ON CONFLICT (pupil_id) DO NOTHING",
            (pupil_id, payload["school_id"], payload["grade"], payload["gender"], version),
        )

    def _re_enrolled(self, sql: Sql, pupil_id: str, payload: dict[str, Any]) -> None:
        """At a school again: the departure's signs ended with it (they were the old school's),
        so the pupil is at risk only once identification records a new sign."""
        self._set(
            sql,
            pupil_id,
            school_id=payload["school_id"],
            grade=payload["grade"],
            gender=payload["gender"],
            at_risk=0,
            departed=0,
            departure_reason=None,
            departed_on=None,
        )
        sql.execute(f"DELETE FROM {self.signs} WHERE pupil_id = ?", (pupil_id,))

    def _set(self, sql: Sql, pupil_id: str, **values: Any) -> None:
        assignments = ", ".join(f"{column} = ?" for column in values)
        sql.execute(
            f"UPDATE {self.table} SET {assignments} WHERE pupil_id = ?",
            (*values.values(), pupil_id),
        )

    def _sign(self, sql: Sql, pupil_id: str, payload: dict[str, Any], active: bool) -> None:
        observed_on = payload.get("observed_on")
        sql.execute(
            f"INSERT INTO {self.signs} (pupil_id, code, observed_on, active) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (pupil_id, code) DO UPDATE SET active = excluded.active"
            + (", observed_on = excluded.observed_on" if observed_on else ""),
            (
                pupil_id,
                payload["code"],
                observed_on.isoformat() if observed_on else "",
                int(active),
            ),
        )

    def _count(self, sql: Sql, pupil_id: str, version: int) -> None:
        # Every applied event of the pupil counts once: an audit that none was applied twice.
        sql.execute(
            f"UPDATE {self.table} SET version = ?, applied_events = applied_events + 1 "
            "WHERE pupil_id = ?",
            (version, pupil_id),
        )

    def get(self, query: Query, pupil_id: str) -> PupilView | None:
        rows = query(f"SELECT * FROM {self.table} WHERE pupil_id = ?", (pupil_id,))
        if not rows:
            return None
        codes = query(
            f"SELECT code FROM {self.signs} WHERE pupil_id = ? AND active = 1 ORDER BY code",
            (pupil_id,),
        )
        row = rows[0]
        return PupilView(
            pupil_id=pupil_id,
            school_id=row["school_id"],
            grade=int(row["grade"]),
            at_risk=bool(row["at_risk"]),
            departed=bool(row["departed"]),
            active_risk_codes=tuple(c["code"] for c in codes),
        )

    def list(self, query: Query, school_ids: list[str] | None, at_risk: bool | None) -> list[Any]:
        """The schools' pupils; one who has left is no longer theirs to plan for."""
        clauses: list[str] = ["departed = 0"]
        params: list[object] = []
        if school_ids is not None:
            if not school_ids:
                return []  # PostgreSQL refuses "IN ()": no school in the tenant, no pupil
            clauses.append(f"school_id IN ({','.join('?' * len(school_ids))})")
            params.extend(school_ids)
        if at_risk is not None:
            clauses.append("at_risk = ?")
            params.append(1 if at_risk else 0)
        where = f"WHERE {' AND '.join(clauses)} "
        rows = query(f"SELECT * FROM {self.table} {where}ORDER BY pupil_id", params)
        codes: dict[str, list[str]] = {}
        for sign in query(
            f"SELECT s.pupil_id, s.code FROM {self.signs} s JOIN {self.table} "
            f"ON {self.table}.pupil_id = s.pupil_id {where}AND s.active = 1 ORDER BY s.code",
            params,
        ):
            codes.setdefault(sign["pupil_id"], []).append(sign["code"])
        return [
            {
                "pupil_id": row["pupil_id"],
                "school_id": row["school_id"],
                "grade": row["grade"],
                "gender": row["gender"],
                "at_risk": bool(row["at_risk"]),
                "risk_codes": codes.get(row["pupil_id"], []),
            }
            for row in rows
        ]


class SchoolsReadModel(RegisteredSchools):
    """Schools as identification registers them; the shipped reference data until then."""

    def __init__(self, prefix: str) -> None:
        self.table = f"{prefix}schools"

    def create_table(self, sql: Sql) -> None:
        sql.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} ("
            "school_id TEXT PRIMARY KEY, municipality TEXT NOT NULL, kind TEXT NOT NULL, "
            "owner TEXT NOT NULL, grade_from INTEGER NOT NULL, grade_to INTEGER NOT NULL)"
        )

    def effects_for(self, event_type: str, payload: dict[str, Any]) -> list[Effect]:
        if event_type != "school_registered":
            return []
        return [lambda sql: self._registered(sql, payload)]

    def _registered(self, sql: Sql, p: dict[str, Any]) -> None:
        sql.execute(
            f"INSERT INTO {self.table} (school_id, municipality, kind, owner, grade_from, "
            "grade_to) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (school_id) DO UPDATE SET "
            "municipality = excluded.municipality, kind = excluded.kind, "
            "owner = excluded.owner, grade_from = excluded.grade_from, "
            "grade_to = excluded.grade_to",
            (
                p["school_id"],
                p["municipality"],
                p["kind"],
                p["owner"],
                p["grade_from"],
                p["grade_to"],
            ),
        )

    def get(self, query: Query, school_id: str) -> SchoolView:
        rows = query(f"SELECT kind, owner FROM {self.table} WHERE school_id = ?", (school_id,))
        if rows:
            return SchoolView(school_id, rows[0]["kind"], rows[0]["owner"])
        known = reference_schools().get(school_id)
        if known is not None:
            return SchoolView(school_id, known.kind, known.owner)
        # A school nobody described: the longest chain, general education.
        return SchoolView(school_id, "general", "municipal")


class PlansReadModel:
    """One row per plan; at most one live plan per pupil and semester."""

    # A plan a departure closed (1) does not hold the pupil's semester.
    _DEPARTURE_MARK = "ended_by_departure"
    # Neither a deactivated (deleted) plan nor one a departure closed counts: the pupil may
    # get a new plan that semester (at the school the pupil re-enrolled at, say).
    _LIVE = f"status <> '{INACTIVE}' AND {_DEPARTURE_MARK} = 0"

    def __init__(self, prefix: str) -> None:
        self.table = f"{prefix}plans"

    def create_table(self, sql: Sql) -> bool:
        """Create the table, or bring an earlier release's up to date. True when the
        departure mark was added only now: rows of plans a departure had already closed
        need it (``mark_ended_by_departure``)."""
        sql.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} ("
            "plan_id TEXT PRIMARY KEY, pupil_id TEXT NOT NULL, school_id TEXT NOT NULL, "
            "semester TEXT NOT NULL, status TEXT NOT NULL, pending_level TEXT, "
            "previous_plan_id TEXT, next_plan_id TEXT, outcome TEXT, "
            "spent_eur TEXT NOT NULL, version INTEGER NOT NULL)"
        )
        added = add_missing_columns(
            sql, self.table, {self._DEPARTURE_MARK: "INTEGER NOT NULL DEFAULT 0"}
        )
        # The index of earlier releases counted plans a departure closed: replaced.
        sql.execute(f"DROP INDEX IF EXISTS {self.table}_one_per_semester")
        sql.execute(
            f"CREATE UNIQUE INDEX IF NOT EXISTS {self.table}_one_live_per_semester "
            f"ON {self.table} (pupil_id, semester) WHERE {self._LIVE}"
        )
        sql.execute(
            f"CREATE INDEX IF NOT EXISTS {self.table}_school "
            f"ON {self.table} (school_id, semester, status)"
        )
        return bool(added)

    def mark_ended_by_departure(self, sql: Sql, plan_ids: Iterable[str]) -> None:
        sql.executemany(
            f"UPDATE {self.table} SET {self._DEPARTURE_MARK} = 1 WHERE plan_id = ?",
            ((plan_id,) for plan_id in plan_ids),
        )

    def upsert(self, plan: Plan) -> Effect:
        row = (
            str(plan.id),
            plan.pupil_id,
            plan.school_id,
            plan.semester,
            plan.status,
            plan.pending_level,
            plan.previous_plan_id,
            plan.next_plan_id,
            plan.outcome,
            f"{plan.spent_eur:.2f}",
            plan.version,
            int(plan.closed_on_departure),
        )
        mark = self._DEPARTURE_MARK

        def effect(sql: Sql) -> None:
            # A closed plan stays closed: the mark, once set, is kept (a plan loaded from a
            # snapshot older than the mark does not know it, see Plan.upcast_v1_v2).
            sql.execute(
                f"INSERT INTO {self.table} (plan_id, pupil_id, school_id, semester, status, "
                "pending_level, previous_plan_id, next_plan_id, outcome, spent_eur, version, "
                f"{mark}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (plan_id) DO UPDATE SET "
                "school_id = excluded.school_id, status = excluded.status, "
                "pending_level = excluded.pending_level, next_plan_id = excluded.next_plan_id, "
                "outcome = excluded.outcome, spent_eur = excluded.spent_eur, "
                f"version = excluded.version, {mark} = CASE WHEN {self.table}.{mark} = 1 "
                f"THEN 1 ELSE excluded.{mark} END",
                row,
            )

        return effect

    def live_plan(self, query: Query, pupil_id: str, semester: str) -> str | None:
        """The plan that holds the pupil's semester, if one does (the unique index's rows)."""
        rows = query(
            f"SELECT plan_id FROM {self.table} WHERE pupil_id = ? AND semester = ? "
            f"AND {self._LIVE}",
            (pupil_id, semester),
        )
        return str(rows[0]["plan_id"]) if rows else None

    def active_plans(self, query: Query, pupil_id: str) -> list[str]:
        marks = ",".join("?" * len(ACTIVE))
        rows = query(
            f"SELECT plan_id FROM {self.table} WHERE pupil_id = ? AND status IN ({marks}) "
            "ORDER BY plan_id",
            (pupil_id, *ACTIVE),
        )
        return [str(row["plan_id"]) for row in rows]

    def list(
        self,
        query: Query,
        *,
        school_ids: Sequence[str] | None,
        semester: str | None,
        status: str | None,
        limit: int,
        after: str | None,
    ) -> list[dict[str, Any]]:
        clauses: list[str] = []
        params: list[object] = []
        if school_ids is not None:
            if not school_ids:
                return []
            clauses.append(f"school_id IN ({','.join('?' * len(school_ids))})")
            params.extend(school_ids)
        for column, value in (("semester", semester), ("status", status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if after is not None:
            clauses.append("plan_id > ?")
            params.append(after)
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        rows = query(
            f"SELECT * FROM {self.table} {where}ORDER BY plan_id LIMIT ?", (*params, limit)
        )
        return [dict(row) for row in rows]


class ProvisionsReadModel:
    """Provisioning's status of each material measure, as its events report it. Kept beside
    the plan, not in it: provisioning's decisions do not change the plan's version."""

    def __init__(self, prefix: str) -> None:
        self.table = f"{prefix}provisions"

    def create_table(self, sql: Sql) -> None:
        sql.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} ("
            "plan_id TEXT NOT NULL, measure_id TEXT NOT NULL, provision_id TEXT NOT NULL, "
            "status TEXT NOT NULL, PRIMARY KEY (plan_id, measure_id))"
        )

    def effects_for(self, event_type: str, payload: dict[str, Any]) -> list[Effect]:
        if not event_type.startswith("provision_") or "plan_id" not in payload:
            return []
        row = (
            payload["plan_id"],
            payload["measure_id"],
            payload["provision_id"],
            payload["status"],
        )

        def effect(sql: Sql) -> None:
            sql.execute(
                f"INSERT INTO {self.table} (plan_id, measure_id, provision_id, status) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (plan_id, measure_id) DO UPDATE SET "
                "provision_id = excluded.provision_id, status = excluded.status",
                row,
            )

        return [effect]

    def statuses(self, query: Query, plan_id: str) -> dict[str, str]:
        rows = query(f"SELECT measure_id, status FROM {self.table} WHERE plan_id = ?", (plan_id,))
        return {row["measure_id"]: row["status"] for row in rows}
