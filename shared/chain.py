"""The hash chain over a service's stored events, and its verification.

Each stored event record gets one chain entry (a *link*): its position (the record's
notification id), the position of the record before it, and a SHA-256 hash over the
previous link's hash and the record exactly as stored (position, originator id as stored,
version, topic, state bytes). Changing, removing or inserting a record anywhere breaks every
hash from there on; erasing a pupil's key changes no stored record, so it breaks nothing.

A chain alone cannot show that its own tail was cut off, nor that someone with write access
recomputed it after an edit: both need an *anchor* kept outside the chained tables (a signed
checkpoint, or the last position a consumer has seen). ``verify`` checks the anchors it is
given in position order with everything else, and names the first position that is wrong.

Nothing here touches a database: the records and links come in as iterables.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

GENESIS = bytes(32)  # the "previous hash" of the first link

# The reasons a position can be broken, as verification reports them.
CHANGED_RECORD = "changed_record"
MISSING_RECORD = "missing_record"
UNCHAINED_RECORD = "unchained_record"
INSERTED_RECORD = "inserted_record"
TRUNCATED_TAIL = "truncated_tail"
DIFFERS_FROM_CHECKPOINT = "differs_from_checkpoint"
FORGED_CHECKPOINT = "forged_checkpoint"
MALFORMED_RECORD = "malformed_record"

_NUMBERS = struct.Struct(">qqq")
_LENGTH = struct.Struct(">q")


@dataclass(frozen=True)
class Record:
    """One stored event as the database holds it (the originator id as its stored text)."""

    position: int
    originator_id: str
    originator_version: int
    topic: str
    state: bytes


@dataclass(frozen=True)
class Link:
    """The chain entry of the record at ``position``."""

    position: int
    previous: int
    hash: bytes


def link_hash(previous_hash: bytes, previous: int, record: Record) -> bytes:
    """Every field length-prefixed, so no two different records hash the same input."""
    digest = hashlib.sha256(previous_hash)
    digest.update(_NUMBERS.pack(previous, record.position, record.originator_version))
    for part in (record.originator_id.encode(), record.topic.encode(), record.state):
        digest.update(_LENGTH.pack(len(part)))
        digest.update(part)
    return digest.digest()


def extend(head: Link | None, records: Iterable[Record]) -> list[Link]:
    """The links of new records appended after ``head`` (None: the chain is empty)."""
    links = []
    previous, previous_hash = (head.position, head.hash) if head else (0, GENESIS)
    for record in records:
        link = Link(record.position, previous, link_hash(previous_hash, previous, record))
        links.append(link)
        previous, previous_hash = link.position, link.hash
    return links


@dataclass(frozen=True)
class Anchor:
    """Something outside the chained tables that knows a position (and perhaps its hash)."""

    position: int
    source: str
    hash: bytes | None = None
    valid: bool = True  # False: a checkpoint whose signature does not verify

    def to_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "source": self.source,
            "hash": self.hash.hex() if self.hash is not None else None,
            "valid": self.valid,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Anchor:
        raw = data.get("hash")
        return cls(
            position=int(data["position"]),
            source=str(data["source"]),
            hash=bytes.fromhex(raw) if raw else None,
            valid=bool(data.get("valid", True)),
        )


@dataclass(frozen=True)
class Broken:
    position: int
    reason: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"position": self.position, "reason": self.reason, "message": self.message}


@dataclass
class Verification:
    """The outcome: the stored head, how many records were read, the first broken position."""

    head_position: int = 0
    head_hash: bytes = GENESIS
    records: int = 0
    first_broken: Broken | None = None
    anchors: list[Anchor] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.first_broken is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "head_position": self.head_position,
            "head_hash": self.head_hash.hex(),
            "records": self.records,
            "first_broken": self.first_broken.to_dict() if self.first_broken else None,
            "anchors": [a.to_dict() for a in self.anchors],
        }


def _pairs(
    records: Iterable[Record], links: Iterable[Link]
) -> Iterator[tuple[Record | None, Link | None]]:
    """Records and links joined on position, both ascending; a side may be missing."""
    rs, ls = iter(records), iter(links)
    r, lk = next(rs, None), next(ls, None)
    while r is not None or lk is not None:
        if lk is None or (r is not None and r.position < lk.position):
            yield r, None
            r = next(rs, None)
        elif r is None or lk.position < r.position:
            yield None, lk
            lk = next(ls, None)
        else:
            yield r, lk
            r, lk = next(rs, None), next(ls, None)


class _Walk:
    """Recomputes the chain pair by pair; the first problem found is kept."""

    def __init__(self, anchors: Sequence[Anchor]) -> None:
        self.result = Verification(anchors=list(anchors))
        self.pending = sorted(anchors, key=lambda a: a.position)
        self.previous, self.previous_hash = 0, GENESIS

    def step(self, record: Record | None, link: Link | None) -> Broken | None:
        position = (record or link).position  # type: ignore[union-attr]
        if (broken := self._anchors_before(position)) is not None:
            return broken
        if record is None:
            return Broken(position, MISSING_RECORD, f"the record at {position} is missing")
        if link is None:
            return Broken(position, UNCHAINED_RECORD, f"the record at {position} has no link")
        if link.previous > self.previous:
            missing = link.previous
            return Broken(
                missing,
                MISSING_RECORD,
                f"the link at {position} follows {missing}, whose record is missing",
            )
        if link.previous < self.previous:
            return Broken(
                self.previous,
                INSERTED_RECORD,
                f"the link at {position} follows {link.previous}: {self.previous} is not chained",
            )
        expected = link_hash(self.previous_hash, self.previous, record)
        if expected != link.hash:
            return Broken(
                position, CHANGED_RECORD, f"the record at {position} does not match its link"
            )
        self.previous, self.previous_hash = position, expected
        return self._anchors_at(position)

    def _anchors_before(self, position: int) -> Broken | None:
        while self.pending and self.pending[0].position < position:
            anchor = self.pending.pop(0)
            if not anchor.valid:
                return _forged(anchor)
            if anchor.position > self.previous:
                return Broken(
                    anchor.position,
                    MISSING_RECORD,
                    f"{anchor.source} knows position {anchor.position}, which is missing",
                )
        return None

    def _anchors_at(self, position: int) -> Broken | None:
        while self.pending and self.pending[0].position == position:
            anchor = self.pending.pop(0)
            if not anchor.valid:
                return _forged(anchor)
            if anchor.hash is not None and anchor.hash != self.previous_hash:
                return Broken(
                    position,
                    DIFFERS_FROM_CHECKPOINT,
                    f"the chain at {position} differs from {anchor.source}: "
                    "the history up to here was rewritten",
                )
        return None

    def finish(self) -> Broken | None:
        for anchor in self.pending:
            if not anchor.valid:
                return _forged(anchor)
        if self.pending:
            last = self.pending[-1]
            return Broken(
                self.previous + 1,
                TRUNCATED_TAIL,
                f"{last.source} knows position {last.position}; "
                f"the stored chain ends at {self.previous}",
            )
        return None


def _forged(anchor: Anchor) -> Broken:
    return Broken(
        anchor.position, FORGED_CHECKPOINT, f"{anchor.source}: its signature does not verify"
    )


def verify(
    records: Iterable[Record], links: Iterable[Link], anchors: Sequence[Anchor] = ()
) -> Verification:
    """Recompute the chain over ``records`` (ascending) against the stored ``links``."""
    walk = _Walk(anchors)
    result = walk.result
    for record, link in _pairs(records, links):
        if link is not None:
            result.head_position, result.head_hash = link.position, link.hash
        if record is not None:
            result.records += 1
        if result.first_broken is None:
            result.first_broken = walk.step(record, link)
    if result.first_broken is None:
        result.first_broken = walk.finish()
    return result
