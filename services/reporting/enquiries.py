"""Reporting's age enquiries still waiting for identification's answer.

A pupil's plan becoming supported needs the pupil's age band on the day of that first full
approval (``domain.age_enquiry``). The enquiry is written here in the same transaction as
the event's journal entry and read-model rows, so none is lost and none is made twice; a
timer sends them in batches over RPC (``age_bands`` of identification) and each answer
is journalled and folded in the transaction that deletes its enquiry. If identification
does not answer, the enquiries simply stay here and are sent again at the next tick:
nothing waits for them.

Every replica's timer ticks, so a batch is first claimed (``asked_at``): another replica
leaves a claimed enquiry alone until the claim is ``CLAIM_SECONDS`` old, and identification,
which records each read of a pupil's data, is asked once, not once a replica.

This table is work to do, not a read model: a rebuild leaves it alone and then adds an
enquiry for every supported plan whose answer the journal does not hold (which is also
how a journal from before age enquiries gets its enquiries).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.store import POSTGRES, Sql, add_missing_columns

Query = Callable[..., list[Any]]
Enquiry = tuple[str, str]  # (pupil id, day as YYYY-MM-DD)
# Longer than an RPC call may take (PUMPURS_AGE_RPC_TIMEOUT): a claim outlives its call
# unless the replica died meanwhile, and then another asks after this.
CLAIM_SECONDS = 60


class AgeEnquiries:
    def __init__(self, prefix: str) -> None:
        self.table = f"{prefix}age_enquiries"

    def create_table(self, sql: Sql) -> None:
        sql.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} (pupil_id TEXT NOT NULL, "
            "on_date TEXT NOT NULL, asked_since TEXT NOT NULL, PRIMARY KEY (pupil_id, on_date))"
        )
        add_missing_columns(sql, self.table, {"asked_at": "TEXT"})

    def add(self, sql: Sql, enquiries: Iterable[Enquiry]) -> None:
        since = datetime.now(UTC).isoformat()
        sql.executemany(
            f"INSERT INTO {self.table} (pupil_id, on_date, asked_since) VALUES (?, ?, ?) "
            "ON CONFLICT (pupil_id, on_date) DO NOTHING",
            [(pupil_id, on, since) for pupil_id, on in enquiries],
        )

    def all(self, query: Query) -> set[Enquiry]:
        rows = query(f"SELECT pupil_id, on_date FROM {self.table}")
        return {(str(row["pupil_id"]), str(row["on_date"])) for row in rows}

    def claim(self, sql: Sql, limit: int, now: datetime) -> list[Enquiry]:
        """The oldest enquiries no replica is asking, now claimed for this one.

        On PostgreSQL the rows are locked in the subquery, in its order, skipping those
        another replica is claiming this moment: two replicas neither wait for each other
        nor lock the same rows in opposite orders (a deadlock). SQLite has one writer at
        a time. The claim condition is checked again on the rows locked."""
        free = "(asked_at IS NULL OR asked_at < ?)"
        lock = " FOR UPDATE SKIP LOCKED" if sql.dialect == POSTGRES else ""
        expired = (now - timedelta(seconds=CLAIM_SECONDS)).isoformat()
        rows = sql.execute(
            f"UPDATE {self.table} SET asked_at = ? WHERE {free} AND (pupil_id, on_date) IN "
            f"(SELECT pupil_id, on_date FROM {self.table} WHERE {free} "
            f"ORDER BY asked_since, pupil_id, on_date LIMIT ?{lock}) RETURNING pupil_id, on_date",
            (now.isoformat(), expired, expired, limit),
        ).fetchall()
        return sorted((str(row["pupil_id"]), str(row["on_date"])) for row in rows)

    def unclaim(self, sql: Sql, enquiries: Iterable[Enquiry]) -> None:
        """Free enquiries whose asking failed, for the next tick of any replica."""
        sql.executemany(
            f"UPDATE {self.table} SET asked_at = NULL WHERE pupil_id = ? AND on_date = ?",
            list(enquiries),
        )

    def settle(self, sql: Sql, enquiry: Enquiry) -> bool:
        """Delete the enquiry; False if it was gone (another replica's answer came first)."""
        rows = sql.execute(
            f"DELETE FROM {self.table} WHERE pupil_id = ? AND on_date = ? RETURNING pupil_id",
            enquiry,
        ).fetchall()
        return bool(rows)

    def count(self, query: Query) -> int:
        return int(query(f"SELECT COUNT(*) AS n FROM {self.table}")[0]["n"])

    def oldest_age_seconds(self, query: Query, now: datetime) -> float:
        """How long the oldest enquiry has waited; 0 when none waits."""
        since = query(f"SELECT MIN(asked_since) AS since FROM {self.table}")[0]["since"]
        if since is None:
            return 0.0
        return max(0.0, (now - datetime.fromisoformat(str(since))).total_seconds())
