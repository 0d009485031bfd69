"""Failover lists: the brokers of a URL, the message when none answers, and publishing through a lost
connection (what was not confirmed is sent again, within the reconnect window)."""

import pytest

from eda.connection import broker_address, broker_urls, open_connection
from eda.errors import AccessRefused, BrokerUnavailable
from eda.publishing.failover import Progress, publish_through_losses, reiterable
from eda.settings import Settings


def test_a_failover_url_lists_its_brokers_in_order():
    assert broker_urls("amqp://u:p@h1:5672//;amqp://u:p@h2:5673/v; amqp://h3//") == [
        "amqp://u:p@h1:5672//", "amqp://u:p@h2:5673/v", "amqp://h3//"]
    assert broker_urls("amqp://guest:guest@localhost:5672//") == ["amqp://guest:guest@localhost:5672//"]
    assert broker_address("amqp://u:secret@h2:5673/v") == "h2:5673"
    assert broker_address("amqps://u:secret@h2/v") == "h2:5671"


def test_when_no_broker_of_the_list_answers_each_is_named_without_its_password():
    # Given two brokers on ports where nothing listens
    settings = Settings(broker_url="amqp://u:s3cret@127.0.0.1:1//;amqp://u:s3cret@127.0.0.1:2//")
    # When a connection is opened, then the error names both, and their reasons, and no password
    with pytest.raises(BrokerUnavailable) as raised:
        open_connection(settings, timeout=2)
    assert str(raised.value) == (
        "cannot reach any of the 2 brokers of amqp://u:***@127.0.0.1:1//;amqp://u:***@127.0.0.1:2//: "
        "127.0.0.1:1 connection refused (is RabbitMQ running?); 127.0.0.1:2 connection refused (is RabbitMQ running?)")
    assert not isinstance(raised.value, AccessRefused)


def test_progress_holds_what_was_confirmed_in_memory_bounded_by_what_is_in_flight():
    progress = Progress()
    for index in (0, 1, 3, 5):
        progress.confirm(index)
    assert [i for i in range(7) if progress.confirmed(i)] == [0, 1, 3, 5] and progress.count == 4
    progress.confirm(2)
    progress.confirm(4)
    assert progress.done == 6 and progress.count == 6 and not progress._ahead


def test_a_one_pass_iterator_is_kept_for_a_second_pass():
    assert reiterable(iter([1, 2])) == [1, 2]
    items = [1, 2]
    assert reiterable(items) is items


class Broker:
    """Stands in for a broker connection that is lost after ``lose_after`` confirms, ``losses`` times."""

    def __init__(self, items, lose_after, losses):
        self.items, self.lose_after, self.losses = items, lose_after, losses
        self.sent = []

    def attempt(self, progress):
        confirmed_now = 0
        for index, item in enumerate(self.items):
            if progress.confirmed(index):
                continue
            self.sent.append(item)
            if self.losses and confirmed_now == self.lose_after:
                self.losses -= 1
                raise BrokerUnavailable("lost the broker connection: connection reset")
            progress.confirm(index)
            confirmed_now += 1


def test_a_lost_connection_sends_again_only_what_was_not_confirmed():
    broker = Broker(list("abcdefgh"), lose_after=3, losses=2)
    publish_through_losses(broker.attempt, 60, connected=lambda: True)
    # every item went out; the one in flight at each loss went out twice, nothing more
    assert broker.sent == list("abcd") + list("defg") + list("gh")


def test_a_broker_unreachable_from_the_start_fails_at_once():
    broker = Broker(list("ab"), lose_after=0, losses=1)
    with pytest.raises(BrokerUnavailable, match="connection reset"):
        publish_through_losses(broker.attempt, 60, connected=lambda: False)


def test_a_broker_away_longer_than_the_window_ends_the_publish():
    broker = Broker(list("ab"), lose_after=0, losses=1000)
    with pytest.raises(BrokerUnavailable, match=r"stayed unreachable for over 0s: lost the broker connection"):
        publish_through_losses(broker.attempt, 0, connected=lambda: True)
