"""A service's audit chain as stored: read it, verify it, adopt events stored before it.

The links are written by the recorders in ``shared/store.py``, in the same transaction as
the events. Here they are read back beside the stored records, in batches, up to one
bound taken in a single statement, so a save committing meanwhile is either wholly inside
the range or wholly after it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from shared.chain import Anchor, Link, Record, Verification, extend, verify
from shared.checkpoint import CheckpointLog, Verifier
from shared.store import SQLITE, ServiceApplication, Sql, insert_links

log = logging.getLogger(__name__)

BATCH = 5000  # rows a query: fewer round trips (PostgreSQL verifies 2-3x faster than at 1000)
YIELD_EVERY = 500  # rows between yields to the service's other greenlets under eventlet
Query = Callable[[str, Sequence[Any]], list[Any]]


def _position(app: ServiceApplication) -> str:
    return "rowid" if app.dialect == SQLITE else "notification_id"


def bound(app: ServiceApplication, query: Query | None = None) -> int:
    """The highest position of either table, read in one statement (one snapshot)."""
    query = query or app.query
    row = query(
        f"SELECT (SELECT MAX({_position(app)}) FROM {app.events_table}) AS records, "
        f"(SELECT MAX(position) FROM {app.chain_table}) AS links",
        (),
    )[0]
    return max(int(row["records"] or 0), int(row["links"] or 0))


def read_records(
    app: ServiceApplication, upto: int, query: Query | None = None
) -> Iterator[Record]:
    """The stored records up to ``upto``, ascending, each exactly as the database holds it."""
    query, pos = query or app.query, _position(app)
    statement = (
        f"SELECT {pos} AS position, originator_id, originator_version, topic, state "
        f"FROM {app.events_table} WHERE {pos} > ? AND {pos} <= ? ORDER BY {pos} LIMIT ?"
    )
    after = 0
    while True:
        rows = query(statement, (after, upto, BATCH))
        for n, row in enumerate(rows, 1):
            yield Record(
                int(row["position"]),
                str(row["originator_id"]),
                int(row["originator_version"]),
                str(row["topic"]),
                bytes(row["state"]),
            )
            if n % YIELD_EVERY == 0:
                time.sleep(0)  # under eventlet: let the service's other greenlets run
        if len(rows) < BATCH:
            return
        after = int(rows[-1]["position"])


def read_links(app: ServiceApplication, upto: int, query: Query | None = None) -> Iterator[Link]:
    query = query or app.query
    statement = (
        f"SELECT position, previous, hash FROM {app.chain_table} "
        "WHERE position > ? AND position <= ? ORDER BY position LIMIT ?"
    )
    after = 0
    while True:
        rows = query(statement, (after, upto, BATCH))
        for row in rows:
            yield Link(int(row["position"]), int(row["previous"]), bytes(row["hash"]))
        if len(rows) < BATCH:
            return
        after = int(rows[-1]["position"])


def verify_store(app: ServiceApplication, anchors: Sequence[Anchor] = ()) -> Verification:
    """Recompute the service's chain from its stored records, checking ``anchors`` too."""
    upto = bound(app)
    return verify(read_records(app, upto), read_links(app, upto), anchors)


def adopt_unchained(app: ServiceApplication) -> int:
    """Chain the events of a store from before the chain existed (its chain table is empty).

    Only an empty chain is adopted: links missing from a chain that has any are a finding
    for verification to report, never something to fill in.
    """
    with app.transaction() as sql:
        if app.dialect != SQLITE:
            sql.execute(f"LOCK TABLE {app.events_table} IN EXCLUSIVE MODE")
        query = _query_on(sql)
        if query(f"SELECT 1 AS one FROM {app.chain_table} LIMIT 1", ()):
            return 0
        links = extend(None, read_records(app, bound(app, query), query))
        insert_links(sql, app.chain_table, links)
    if links:
        log.warning("audit chain started over %s events stored before it existed", len(links))
    return len(links)


def _query_on(sql: Sql) -> Query:
    return lambda statement, params: sql.execute(statement, params).fetchall()


def tracking_anchor(consumer: ServiceApplication, source: str) -> Anchor | None:
    """The last position of ``source`` that ``consumer``'s inbox has applied, if any."""
    last = consumer.last_tracked(source)
    return Anchor(last, f"{consumer.name}'s inbox") if last else None


def witness_anchors(
    service: str, witnesses: Sequence[ServiceApplication], key: Verifier
) -> list[Anchor]:
    """What other stores know of ``service``'s chain: the latest checkpoint reporting signed
    of it, and the last position each consumer's inbox applied from it."""
    anchors = []
    for witness in witnesses:
        if witness.name == service:
            continue  # a store cannot vouch for itself: it is cut together with the chain
        if witness.name == "reporting":
            signed = CheckpointLog(witness).latest(service)
            if signed is not None:
                anchors.append(signed.anchor(key, "reporting's checkpoint"))
        if (tracked := tracking_anchor(witness, service)) is not None:
            anchors.append(tracked)
    return anchors
