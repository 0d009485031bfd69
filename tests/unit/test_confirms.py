"""Publisher confirms: the delivery-tag bookkeeping (acks with ``multiple``, nacks, ``basic.return``) and
the one confirm-window loop that ``eda publish``, the Producer, ``eda dlq replay`` and the outbox relay
publish through. No broker: a stand-in answers on the channel as RabbitMQ does."""

import socket
from collections import defaultdict
from types import SimpleNamespace

import pytest

from eda.contracts.envelope import Event
from eda.errors import BrokerUnavailable, PublishError, Unroutable
from eda.publishing.confirms import Confirms
from eda.publishing.publisher import Publisher


class Outcomes:
    """Callbacks for publishes, remembering how each was settled (None: taken by the broker)."""

    def __init__(self):
        self.settled = {}

    def of(self, name):
        def settled(error):
            assert name not in self.settled, f"{name} settled twice"
            self.settled[name] = error
        return settled


# The bookkeeping


def test_tags_count_from_one_in_publish_order_and_an_ack_settles_its_own_tag_only():
    confirms, outcomes = Confirms(), Outcomes()
    assert [confirms.sent(f"m{i}", outcomes.of(i)) for i in range(1, 4)] == [1, 2, 3]
    confirms.ack(2)
    assert outcomes.settled == {2: None} and len(confirms) == 2


def test_an_ack_with_multiple_settles_every_tag_up_to_its_own_and_no_later_one():
    confirms, outcomes = Confirms(), Outcomes()
    for i in range(1, 6):
        confirms.sent(f"m{i}", outcomes.of(i))
    confirms.ack(1)
    confirms.ack(4, multiple=True)
    assert list(outcomes.settled) == [1, 2, 3, 4] and set(outcomes.settled.values()) == {None}
    assert len(confirms) == 1


def test_a_nack_settles_with_an_error_naming_the_publish():
    confirms, outcomes = Confirms(), Outcomes()
    event = Event(type="order.placed", data={}, source="tests", id="e-7")
    confirms.sent(event, outcomes.of("event"))
    confirms.sent("event d-1", outcomes.of("text"))
    confirms.nack(2, multiple=True)
    assert all(isinstance(e, PublishError) and not isinstance(e, Unroutable) for e in outcomes.settled.values())
    assert str(outcomes.settled["event"]) == "order.placed e-7: the broker refused it (nack)"
    assert str(outcomes.settled["text"]) == "event d-1: the broker refused it (nack)"


def test_a_returned_mandatory_message_is_unroutable_when_its_ack_comes_and_the_others_are_not():
    confirms, outcomes = Confirms(), Outcomes()
    confirms.sent("event a", outcomes.of("a"), message_id="a")
    confirms.sent("event b", outcomes.of("b"), message_id="b")
    confirms.returned("a", "ns.events", "order.placed")
    confirms.ack(2, multiple=True)
    assert isinstance(outcomes.settled["a"], Unroutable) and outcomes.settled["b"] is None
    assert str(outcomes.settled["a"]) == \
        "event a: routed to no queue (exchange 'ns.events', routing key 'order.placed')"


def test_two_copies_of_one_message_returned_make_each_unroutable_once():
    confirms, outcomes = Confirms(), Outcomes()
    for name in ("first", "second", "third"):
        confirms.sent(name, outcomes.of(name), message_id="same-id")
    confirms.returned("same-id", "", "q")
    confirms.returned("same-id", "", "q")
    confirms.ack(3, multiple=True)
    assert [type(outcomes.settled[n]) for n in ("first", "second", "third")] == [Unroutable, Unroutable, type(None)]


def test_an_answer_for_a_tag_already_settled_changes_nothing():
    confirms, outcomes = Confirms(), Outcomes()
    confirms.sent("m1", outcomes.of(1))
    confirms.ack(1)
    confirms.nack(1)
    confirms.ack(1, multiple=True)
    assert outcomes.settled == {1: None}


def test_fail_all_settles_everything_unsettled_with_the_error_and_forgets_returns():
    confirms, outcomes = Confirms(), Outcomes()
    confirms.sent("m1", outcomes.of(1), message_id="x")
    confirms.sent("m2", outcomes.of(2))
    confirms.returned("x", "", "q")
    lost = BrokerUnavailable("connection lost")
    confirms.fail_all(lost)
    assert outcomes.settled == {1: lost, 2: lost} and len(confirms) == 0
    confirms.sent("m3", outcomes.of(3), message_id="x")  # tags go on; the old return is forgotten
    confirms.ack(3)
    assert outcomes.settled[3] is None


# The window, through a Publisher on a stand-in for RabbitMQ


class Broker:
    """RabbitMQ's side of one confirm-mode channel: it answers the publishes it received when the
    publisher drains the connection, ``per_drain`` of them each time, in order. Tags in ``refuse`` are
    nacked, those in ``unrouted`` returned before their ack; ``silent`` answers nothing; ``lost``
    drops the connection at the first drain."""

    connection_errors = (ConnectionError,)
    transport = SimpleNamespace(driver_type="amqp")

    def __init__(self, per_drain=1, refuse=(), unrouted=(), silent=False, lost=False):
        self.per_drain, self.refuse, self.unrouted, self.silent, self.lost = per_drain, refuse, unrouted, silent, lost
        self.events = defaultdict(set)
        self.connection = True  # py-amqp's channel.connection: set while it is open
        self.received = []  # (tag, routing key, message)
        self.answered = 0
        self.in_flight_at_each_publish = []
        self.publisher = None

    # The connection and channel py-amqp would give

    def channel(self):
        return self

    def confirm_select(self):
        pass

    def send_method(self, method, fmt, args, message):
        self.received.append((len(self.received) + 1, args[2], message))
        self.in_flight_at_each_publish.append(self.publisher.in_flight)

    def drain_events(self, timeout):
        if self.lost:
            raise ConnectionError("Connection reset by peer")
        if self.silent or self.answered == len(self.received):
            raise socket.timeout()
        for tag, routing_key, message in self.received[self.answered:self.answered + self.per_drain]:
            if tag in self.unrouted:
                for callback in self.events["basic_return"]:
                    callback(None, "ns.events", routing_key, message)
            for callback in self.events["basic_nack" if tag in self.refuse else "basic_ack"]:
                callback(tag, False)
            self.answered += 1

    def close(self):
        pass


def publisher_on(broker, window):
    broker.publisher = Publisher(broker, window=window)
    return broker.publisher


def send_to(publisher):
    def send(item, settled):
        publisher.send("ns.events", f"k.{item}", b"{}", {"message_id": f"m-{item}"}, mandatory=True,
                       label=f"item {item}", callback=settled)
    return send


def test_at_most_the_window_is_in_flight_and_past_it_the_loop_waits_until_half_are_settled():
    broker = Broker(per_drain=1)
    publisher = publisher_on(broker, window=10)
    confirmed = []
    errors = publisher.publish_all(range(35), send_to(publisher), on_confirmed=confirmed.append)
    assert errors == [] and confirmed == list(range(35)) and publisher.in_flight == 0
    in_flight = broker.in_flight_at_each_publish  # before each publish
    assert max(in_flight) == 9
    assert in_flight[:11] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 5]  # the 10th sent filled it: drained down to 5


def test_acks_that_cover_many_tags_confirm_each_item_in_publish_order():
    broker = Broker(per_drain=7)
    publisher = publisher_on(broker, window=4)
    confirmed = []
    assert publisher.publish_all("abcdefghij", send_to(publisher), on_confirmed=confirmed.append) == []
    assert "".join(confirmed) == "abcdefghij"


def test_the_loop_stops_sending_after_the_first_refusal_and_returns_it_once_all_sent_are_settled():
    broker = Broker(per_drain=1, refuse={3})
    publisher = publisher_on(broker, window=4)
    confirmed = []
    errors = publisher.publish_all(range(1, 21), send_to(publisher), on_confirmed=confirmed.append)
    assert [str(e) for e in errors] == ["item 3: the broker refused it (nack)"]
    assert len(broker.received) < 20 and publisher.in_flight == 0  # what was sent is settled
    assert confirmed == [i for i in range(1, len(broker.received) + 1) if i != 3]


def test_without_stop_at_error_every_item_is_sent_and_each_failure_returned():
    broker = Broker(per_drain=2, refuse={3}, unrouted={5})
    publisher = publisher_on(broker, window=4)
    confirmed = []
    errors = publisher.publish_all(range(1, 9), send_to(publisher), on_confirmed=confirmed.append,
                                   stop_at_error=False)
    assert len(broker.received) == 8 and confirmed == [1, 2, 4, 6, 7, 8]
    assert [type(e) for e in errors] == [PublishError, Unroutable]
    assert str(errors[1]) == "item 5: routed to no queue (exchange 'ns.events', routing key 'k.5')"


def test_a_connection_lost_while_waiting_fails_everything_in_flight_and_raises():
    broker = Broker(lost=True)
    publisher = publisher_on(broker, window=4)
    outcomes = Outcomes()
    with pytest.raises(BrokerUnavailable, match="lost the broker connection while waiting for confirms"):
        publisher.publish_all(range(3), lambda item, settled: send_to(publisher)(item, outcomes.of(item)))
    assert sorted(outcomes.settled) == [0, 1, 2]
    assert all(isinstance(e, BrokerUnavailable) for e in outcomes.settled.values())


def test_a_broker_that_answers_nothing_is_unavailable_after_the_timeout():
    broker = Broker(silent=True)
    publisher = publisher_on(broker, window=4)
    with pytest.raises(BrokerUnavailable, match="the broker confirmed nothing"):
        publisher.publish_all(range(2), send_to(publisher), timeout=0.05)
    assert publisher.in_flight == 2  # still the broker's to settle


def test_an_on_confirmed_that_raises_stops_the_sending_and_its_error_is_raised_as_it_is():
    # Given a caller whose on_confirmed fails at the third item (its output closed, say)
    broker = Broker(per_drain=1)
    publisher = publisher_on(broker, window=4)
    printed = []

    def on_confirmed(item):
        if item == 3:
            raise BrokenPipeError(32, "Broken pipe")
        printed.append(item)

    # When it publishes 20 items
    with pytest.raises(BrokenPipeError) as raised:
        publisher.publish_all(range(1, 21), send_to(publisher), on_confirmed=on_confirmed)
    # Then nothing more is sent, what was sent is settled, and the caller's own error comes out as it is,
    # once the sending stopped: no BrokerUnavailable (which would send everything again)
    assert not isinstance(raised.value, BrokerUnavailable)
    assert len(broker.received) < 20 and publisher.in_flight == 0 and printed == [1, 2]
