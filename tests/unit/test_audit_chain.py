"""The hash chain: what verification reports for each kind of change, and where."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shared.chain import (
    CHANGED_RECORD,
    DIFFERS_FROM_CHECKPOINT,
    FORGED_CHECKPOINT,
    INSERTED_RECORD,
    MISSING_RECORD,
    TRUNCATED_TAIL,
    UNCHAINED_RECORD,
    Anchor,
    Link,
    Record,
    extend,
    link_hash,
    verify,
)


def records(n: int, start: int = 1, step: int = 1) -> list[Record]:
    return [
        Record(p, f"{p:032x}", 1, "services.planning.domain:Plan.Drafted", b'{"n": %d}' % p)
        for p in range(start, start + n * step, step)
    ]


def chained(n: int, step: int = 1) -> tuple[list[Record], list[Link]]:
    rs = records(n, step=step)
    return rs, extend(None, rs)


def test_an_untouched_chain_verifies_and_names_its_head() -> None:
    rs, links = chained(5)
    result = verify(rs, links)
    assert result.ok
    assert (result.head_position, result.head_hash, result.records) == (5, links[-1].hash, 5)


def test_gaps_in_notification_ids_are_part_of_the_chain() -> None:
    # PostgreSQL's sequence skips the ids of rolled-back inserts.
    rs, links = chained(4, step=3)
    assert [link.previous for link in links] == [0, 1, 4, 7]
    assert verify(rs, links).ok


def test_extending_a_chain_equals_chaining_everything_at_once() -> None:
    rs = records(6)
    first = extend(None, rs[:2])
    assert first + extend(first[-1], rs[2:]) == extend(None, rs)


def test_every_field_of_a_record_is_covered() -> None:
    record = records(1)[0]
    base = link_hash(bytes(32), 0, record)
    variants = [
        replace(record, originator_id=record.originator_id[:-1] + "f"),
        replace(record, originator_version=2),
        replace(record, topic=record.topic + "x"),
        replace(record, state=record.state + b" "),
        replace(record, position=2),
    ]
    assert all(link_hash(bytes(32), 0, v) != base for v in variants)
    # Length prefixes: moving a byte from the topic into the state is still a change.
    moved = replace(
        record, topic=record.topic[:-1], state=record.topic[-1:].encode() + record.state
    )
    assert link_hash(bytes(32), 0, moved) != base


def test_a_changed_byte_is_found_at_its_position() -> None:
    rs, links = chained(5)
    rs[2] = replace(rs[2], state=rs[2].state.replace(b"3", b"4"))
    broken = verify(rs, links).first_broken
    assert broken is not None and (broken.position, broken.reason) == (3, CHANGED_RECORD)


def test_a_deleted_record_whose_link_remains_is_missing() -> None:
    rs, links = chained(5)
    del rs[1]
    broken = verify(rs, links).first_broken
    assert broken is not None and (broken.position, broken.reason) == (2, MISSING_RECORD)


def test_a_deleted_record_and_link_are_named_by_the_next_link() -> None:
    rs, links = chained(5)
    del rs[3], links[3]
    broken = verify(rs, links).first_broken
    assert broken is not None and (broken.position, broken.reason) == (4, MISSING_RECORD)


def test_a_record_without_a_link_is_unchained() -> None:
    rs, links = chained(5)
    del links[4]
    broken = verify(rs, links).first_broken
    assert broken is not None and (broken.position, broken.reason) == (5, UNCHAINED_RECORD)


def test_a_record_slipped_into_a_gap_is_not_in_the_chain() -> None:
    rs, links = chained(3, step=2)  # positions 1, 3, 5
    intruder = records(1, start=4)[0]
    forged = extend(links[1], [intruder])[0]
    result = verify([*rs[:2], intruder, rs[2]], [*links[:2], forged, links[2]])
    assert result.first_broken is not None
    assert (result.first_broken.position, result.first_broken.reason) == (4, INSERTED_RECORD)


def test_a_truncated_tail_needs_an_anchor_and_is_found_with_one() -> None:
    rs, links = chained(6)
    kept_records, kept_links = rs[:4], links[:4]
    assert verify(kept_records, kept_links).ok  # the chain alone cannot tell
    anchor = Anchor(6, "a signed checkpoint", links[5].hash)
    broken = verify(kept_records, kept_links, [anchor]).first_broken
    assert broken is not None and (broken.position, broken.reason) == (5, TRUNCATED_TAIL)


def test_a_consumer_position_reveals_a_truncated_tail() -> None:
    rs, links = chained(6)
    broken = verify(rs[:3], links[:3], [Anchor(5, "reporting's inbox")]).first_broken
    assert broken is not None and (broken.position, broken.reason) == (4, TRUNCATED_TAIL)


def test_a_recomputed_chain_differs_from_a_checkpoint_taken_before() -> None:
    rs, links = chained(5)
    checkpoint = Anchor(4, "a signed checkpoint", links[3].hash)
    rs[1] = replace(rs[1], state=b"rewritten")
    rewritten = extend(None, rs)  # someone with write access recomputed every link
    assert verify(rs, rewritten).ok
    broken = verify(rs, rewritten, [checkpoint]).first_broken
    assert broken is not None and (broken.position, broken.reason) == (4, DIFFERS_FROM_CHECKPOINT)


def test_an_anchor_at_a_deleted_position_reveals_the_deletion() -> None:
    rs, links = chained(5)
    del rs[2], links[2]
    rechained = extend(None, rs)
    broken = verify(rs, rechained, [Anchor(3, "planning's inbox")]).first_broken
    assert broken is not None and (broken.position, broken.reason) == (3, MISSING_RECORD)


@pytest.mark.parametrize("position", [3, 9])
def test_a_checkpoint_whose_signature_fails_is_reported(position: int) -> None:
    rs, links = chained(5)
    forged = Anchor(position, "a checkpoint", links[2].hash, valid=False)
    broken = verify(rs, links, [forged]).first_broken
    assert broken is not None and (broken.position, broken.reason) == (position, FORGED_CHECKPOINT)


def test_the_head_is_the_stored_one_even_when_broken_early() -> None:
    rs, links = chained(5)
    rs[0] = replace(rs[0], topic="x")
    result = verify(rs, links)
    assert not result.ok and result.head_position == 5 and result.records == 5


def test_anchors_round_trip_through_rpc_dicts() -> None:
    anchor = Anchor(7, "a checkpoint", bytes(range(32)), valid=False)
    assert Anchor.from_dict(anchor.to_dict()) == anchor
