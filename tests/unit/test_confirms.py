"""When the relay may count a batch as taken by the broker (and record its position)."""

from __future__ import annotations

from shared.outbox import Confirms


def batch(size: int) -> Confirms:
    confirms = Confirms()
    confirms.expect(size)
    return confirms


def test_a_later_messages_ack_does_not_confirm_the_ones_before_it() -> None:
    confirms = batch(500)
    confirms.ack(500, multiple=False)
    assert not confirms.settled
    confirms.ack(3, multiple=False)
    confirms.ack(499, multiple=True)  # the rest, in one frame
    assert confirms.settled and not confirms.refused


def test_single_acks_in_any_order_confirm_the_batch_when_each_message_has_one() -> None:
    confirms = batch(4)
    for tag in (2, 4, 1):
        confirms.ack(tag, multiple=False)
        assert not confirms.settled
    confirms.ack(3, multiple=False)
    assert confirms.settled and confirms.confirmed_up_to == 4


def test_a_refusal_after_a_later_messages_ack_still_fails_the_batch() -> None:
    confirms = batch(3)
    confirms.ack(3, multiple=False)
    confirms.ack(1, multiple=False)
    assert not confirms.settled
    confirms.nack(2, multiple=False)
    assert confirms.settled and confirms.refused == 1


def test_the_next_batch_waits_for_its_own_messages() -> None:
    confirms = batch(2)
    confirms.ack(2, multiple=True)
    assert confirms.settled
    confirms.expect(2)  # tags 3 and 4
    assert not confirms.settled
    confirms.ack(4, multiple=True)
    assert confirms.settled
