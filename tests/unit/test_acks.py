"""Batched acks: a multiple ack never covers a delivery whose work is not done."""

from eda.runtime.amqp_consumer import Acks


class Channel:
    """Records what would go to the broker (the channel is not what is under test)."""

    def __init__(self):
        self.sent = []

    def basic_ack(self, tag, multiple=False):
        self.sent.append(("ack", tag, multiple))

    def basic_reject(self, tag, requeue):
        self.sent.append(("reject", tag, requeue))


def acks_for(*tags, flush_at=100):
    channel = Channel()
    acks = Acks(channel, flush_at=flush_at)
    for tag in tags:
        acks.delivered(tag)
    return acks, channel


def test_acks_are_held_until_the_flush_then_sent_as_one_multiple_ack():
    acks, channel = acks_for(1, 2, 3)
    for tag in (1, 2, 3):
        acks.ack(tag)
    assert channel.sent == []
    acks.flush()
    assert channel.sent == [("ack", 3, True)]


def test_a_delivery_still_being_handled_stops_the_multiple_ack_below_it():
    # Given deliveries 1..5 where 3 is still being handled
    acks, channel = acks_for(1, 2, 3, 4, 5)
    for tag in (1, 2, 4, 5):
        acks.ack(tag)
    # When the acks are flushed
    acks.flush()
    # Then 1-2 go as a multiple ack; 4 and 5 wait, since a multiple ack for them would cover 3
    assert channel.sent == [("ack", 2, True)]
    # and once 3 is done, one multiple ack covers 3 to 5
    channel.sent.clear()
    acks.ack(3)
    acks.flush()
    assert channel.sent == [("ack", 5, True)]


def test_too_many_waiting_acks_go_one_by_one_rather_than_wait_for_a_slow_delivery():
    acks, channel = acks_for(1, 2, 3, 4, flush_at=3)
    for tag in (2, 3):
        acks.ack(tag)
    acks.flush()
    assert channel.sent == []
    acks.ack(4)  # the third waiting ack: sent now, one by one, none covering 1
    assert channel.sent == [("ack", 2, False), ("ack", 3, False), ("ack", 4, False)]


def test_a_forced_flush_sends_every_held_ack_without_covering_unfinished_work():
    acks, channel = acks_for(1, 2, 3)
    acks.ack(2)
    acks.flush(force=True)
    assert channel.sent == [("ack", 2, False)]


def test_a_rejected_delivery_goes_at_once_and_does_not_block_the_others():
    acks, channel = acks_for(1, 2, 3)
    acks.reject(1, requeue=True)
    acks.ack(2)
    acks.ack(3)
    acks.flush()
    assert channel.sent == [("reject", 1, True), ("ack", 3, True)]


def test_many_held_acks_are_flushed_without_waiting_for_the_loop():
    acks, channel = acks_for(*range(1, 9), flush_at=4)
    for tag in range(1, 5):
        acks.ack(tag)
    assert channel.sent == [("ack", 4, True)]


def test_an_empty_flush_sends_nothing():
    acks, channel = acks_for(1)
    acks.flush()
    assert channel.sent == []
