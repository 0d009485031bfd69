"""Workers ordered by the flow (``ordered_by = eda.FLOW``): partitions chosen by the CloudEvent's correlation
id, which every event of one flow shares, whatever key each contract names."""

from marshmallow import fields

from eda import FLOW, EventData, Worker, contract, handles
from eda.fields import Id
from eda.runtime.partitions import check_ordered
from eda.testing import TestBus
from eda.topology import Topology

import pytest


@pytest.fixture
def shipments(own_contracts):
    """Two contracts of one flow keyed by different fields (as the shop's payment events are keyed by
    user), and a worker ordered by the flow that records what it handled."""

    @contract("parcel.packed", key="warehouse_id")
    class ParcelPacked(EventData):
        parcel_id = Id(required=True)
        warehouse_id = Id(required=True)
        step = fields.Integer(required=True)

    @contract("parcel.sent", key="carrier_id")
    class ParcelSent(EventData):
        parcel_id = Id(required=True)
        carrier_id = Id(required=True)
        step = fields.Integer(required=True)

    class Tracker(Worker):
        name = "tracker"
        ordered_by = FLOW
        handled = []

        @handles("parcel.packed")
        def packed(self, event, ctx):
            self.handled.append((event.correlation_id, event.data["step"]))

        @handles("parcel.sent")
        def sent(self, event, ctx):
            self.handled.append((event.correlation_id, event.data["step"]))

    Tracker.handled = []
    return Tracker


def test_a_worker_ordered_by_the_flow_hashes_the_correlation_id_property():
    exchange = Topology("shop").partitions_exchange("order-saga", FLOW)
    assert exchange.name == "shop.order-saga.flow-partitions"  # RabbitMQ keeps an exchange's first arguments
    assert exchange.type == "x-consistent-hash"
    assert exchange.arguments == {"hash-property": "correlation_id"}
    assert Topology("shop").partitions_exchange("ledger", "user_id").arguments == {"hash-header": "eda-partition-key"}
    # A partition queue declares its exchange with the same arguments (RabbitMQ refuses others)
    assert Topology("shop").partition_queue("order-saga", 0, FLOW).exchange.arguments == {"hash-property": "correlation_id"}


def test_a_worker_ordered_by_the_flow_needs_no_key_in_its_contracts(shipments):
    check_ordered(shipments)  # the contracts name other keys: no DefinitionError


def test_the_events_of_one_flow_go_through_one_partition_in_order_whatever_their_keys(shipments):
    with TestBus(shipments) as bus:
        routed = {}  # correlation id -> the partition queues its events reached
        bus.broker.taps.append(lambda published: routed.setdefault(
            published.properties.get("correlation_id"), set()).update(published.queues))
        # When four flows each publish packed and sent events whose keys differ from event to event
        for step in (1, 2, 3):
            for flow in ("f-1", "f-2", "f-3", "f-4"):
                bus.publish("parcel.packed", {"parcel_id": flow, "warehouse_id": f"w-{step}", "step": step},
                            correlation_id=flow)
                bus.publish("parcel.sent", {"parcel_id": flow, "carrier_id": f"c-{step}", "step": step + 10},
                            correlation_id=flow)
        # Then each flow's events were handled in the order they were published
        for flow in ("f-1", "f-2", "f-3", "f-4"):
            assert [s for f, s in shipments.handled if f == flow] == [1, 11, 2, 12, 3, 13]
        # and each flow's events went through a single partition, the flows spread over several
        assert bus.runner.consumers[0].ordered
        assert set(routed) == {"f-1", "f-2", "f-3", "f-4"}
        assert all(len(queues) == 1 and next(iter(queues)).startswith("testbus.tracker.p")
                   for queues in routed.values()), routed
        assert len({q for queues in routed.values() for q in queues}) > 1


@pytest.mark.parametrize("processed_before", [True, False], ids=["a copy of an event processed before", "a new event"])
def test_an_event_whose_record_cannot_be_read_waits_at_its_partitions_head_and_is_checked_again(
        shipments, processed_before):
    from eda.errors import StoreUnavailable

    shipments.record_processed = True
    with TestBus(shipments) as bus:
        # Given an ordered worker with a record of processed events that cannot be read once
        [consumer] = bus.runner.consumers
        answers = [StoreUnavailable("the state database is unavailable"), processed_before]

        def was_processed(event_id):
            answer = answers.pop(0) if answers else False
            if isinstance(answer, Exception):
                raise answer
            return answer

        consumer.processed.was_processed = was_processed
        # When an event arrives while the record is away
        published_at = bus.broker.clock()
        bus.publish("parcel.packed", {"parcel_id": "p-1", "warehouse_id": "w-1", "step": 1}, correlation_id="f-1")
        # Then it waited at the head of its partition for its retry's time (the bus's clock jumped to it),
        # and its record was read again before it ran: a copy of an event processed before is acked
        # without being handled again, a new event is handled; neither is dead-lettered
        assert bus.broker.clock() - published_at >= 1.0
        assert answers == []
        assert shipments.handled == ([] if processed_before else [("f-1", 1)])
        assert bus.dead_letters() == []


def test_a_poison_message_whose_dead_letter_copy_was_refused_once_is_dead_lettered_and_its_flow_goes_on(shipments):
    from eda.contracts.building import python_event
    from eda.memory import open_connection
    from eda.publishing.publisher import Publisher

    shipments.record_processed = True
    with TestBus(shipments) as bus:
        # Given an ordered worker whose DLQ refuses one copy (deleted, and declared again)
        settlement, refusals = bus.runner.settlement, [RuntimeError("the DLQ refused the copy")]
        send_copy = settlement._send_copy

        def refusing_once(exchange, routing_key, message, headers, callback, keep_expiration=False):
            if exchange == bus.runner.topology.dlx.name and refusals:
                return callback(refusals.pop())
            return send_copy(exchange, routing_key, message, headers, callback, keep_expiration)

        settlement._send_copy = refusing_once
        # When a message of a flow that is no event arrives (its body not JSON), then an event of the same flow
        poison, _ = python_event("parcel.packed", {"parcel_id": "p", "warehouse_id": "w", "step": 1}, "t", "f-1")
        with bus.expect_dead_letters():
            other_client = open_connection(bus.broker)  # as another program would send it, on the bus's broker
            Publisher(other_client).publish_encoded([(poison, b"\xff not json")], bus.runner.topology.events.name)
            other_client.release()
            bus.publish("parcel.packed", {"parcel_id": "p", "warehouse_id": "w", "step": 2}, correlation_id="f-1")
            bus.advance(5)
        # Then the poison message is dead-lettered once the DLQ takes its copy, and the flow's event after it runs
        assert refusals == [] and len(bus.dead_letters()) == 1
        assert shipments.handled == [("f-1", 2)]
