"""Ordering per key, the pure parts: the partition key a publisher sets, the partitions' arguments and
names, what an ordered worker must declare, and how `eda status` shows partitions."""

import json
from decimal import Decimal

import pytest
from marshmallow import fields

from eda import EventData, Worker, contract, handles
from eda.contracts.envelope import Event, encode, new_event
from eda.contracts.registry import all_contracts
from eda.errors import DefinitionError
from eda.fields import Id, Money
from eda.publishing.partitioning import partition_headers, partition_key
from eda.runtime.partitions import check_ordered
from eda.status import PARTITION, QueueStatus, as_table, problems
from eda.topology import Topology, partition_queue_arguments

all_contracts()  # the installed contracts first: other tests read the registry's order


class Customer(EventData):
    customer_id = Id(required=True)


@contract("unit.keyed.changed", key="account_id")
class KeyedChanged(EventData):
    account_id = Id()
    amount = Money()


@contract("unit.nested.changed", key="customer.customer_id")
class NestedChanged(EventData):
    customer = fields.Nested(Customer, required=True)


@contract("unit.counted", key="number")
class Counted(EventData):
    number = fields.Integer(required=True, strict=True)


@contract("unit.unkeyed")
class Unkeyed(EventData):
    account_id = Id()


def event(event_type, data):
    return new_event(event_type, data, "test")


def test_the_header_carries_the_value_of_the_field_the_contract_names_as_its_key():
    assert partition_headers(event("unit.keyed.changed", {"account_id": "a-1"})) == {"eda-partition-key": "a-1"}
    assert partition_key(event("unit.nested.changed", {"customer": {"customer_id": "c-7"}})) == "c-7"
    assert partition_key(event("unit.counted", {"number": 42})) == "42"  # a number in its JSON form


def test_no_header_without_a_key_or_without_its_value():
    assert partition_headers(event("unit.unkeyed", {"account_id": "a-1"})) == {}
    assert partition_headers(event("unit.keyed.changed", {"amount": Decimal("1.00")})) == {}
    assert partition_headers(Event("unit.never.registered", {"x": 1}, "test")) == {}


def test_an_event_carried_by_its_body_alone_has_its_key_read_from_the_wire_data():
    # eda publish streams its input and an outbox relay reads rows: their events hold no data
    full = event("unit.nested.changed", {"customer": {"customer_id": "c-9"}})
    body = encode(full)
    assert json.loads(body)["data"] == {"customer": {"customerId": "c-9"}}
    bare = new_event("unit.nested.changed", {}, "test")
    assert partition_headers(bare, body) == {"eda-partition-key": "c-9"}
    assert partition_headers(bare, b"not json") == {}


@pytest.mark.parametrize("key, problem", [("acount_id", "'acount_id' is not a field"),
                                          ("items", "'items' is not a field holding one value")])
def test_a_key_that_is_not_one_field_is_refused_when_the_contract_is_defined(key, problem):
    with pytest.raises(DefinitionError, match=problem):
        @contract(f"unit.bad.{key}", key=key)
        class Bad(EventData):
            account_id = Id()
            items = fields.List(fields.String())


def test_partition_queues_have_a_single_active_consumer_and_the_work_queues_dead_lettering():
    arguments = partition_queue_arguments("shop", "ledger")
    assert arguments == {"x-single-active-consumer": True, "x-dead-letter-exchange": "shop.dlx",
                         "x-dead-letter-routing-key": "shop.ledger"}
    quorum = partition_queue_arguments("shop", "ledger", "quorum", 7)
    assert quorum["x-queue-type"] == "quorum" and quorum["x-delivery-limit"] == 7
    assert quorum["x-single-active-consumer"] is True


def test_partitions_and_their_consistent_hash_exchange_are_named_after_the_worker():
    topology = Topology("shop", partitions=3)
    exchange = topology.partitions_exchange("ledger")
    assert (exchange.name, exchange.type, exchange.arguments) == (
        "shop.ledger.partitions", "x-consistent-hash", {"hash-header": "eda-partition-key"})
    queue = topology.partition_queue("ledger", 2)
    assert (queue.name, queue.exchange.name, queue.routing_key) == ("shop.ledger.p2", "shop.ledger.partitions", "1")
    assert topology.ordered_queue_names("ledger") == ["shop.ledger.p0", "shop.ledger.p1", "shop.ledger.p2",
                                                      "shop.ledger.dlq"]


def test_an_ordered_worker_needs_each_contract_to_name_its_field_as_key():
    class Ordered(Worker):
        name = "unit-ordered"
        ordered_by = "account_id"

        @handles("unit.keyed.changed")
        def keyed(self, event, ctx):
            pass

    check_ordered(Ordered)  # the contract names account_id: fine

    class Unordered(Ordered):
        name = "unit-ordered-wrongly"

        @handles("unit.unkeyed")
        def unkeyed(self, event, ctx):
            pass

    with pytest.raises(DefinitionError, match=r"the contract of unit.unkeyed names no key: declare it with "
                                              r"@contract\('unit.unkeyed', \.\.\., key='account_id'\)"):
        check_ordered(Unordered)


def test_status_shows_each_partition_with_whether_it_has_its_active_consumer():
    rows = [QueueStatus("ledger", "shop.ledger.p0", PARTITION, True, 3, 2, active=True),
            QueueStatus("ledger", "shop.ledger.p1", PARTITION, True, 0, 0, active=False),
            QueueStatus("ledger", "shop.ledger.dlq", "dlq", True, 0, 0)]
    lines = as_table(rows).splitlines()
    assert lines[0].split() == ["WORKER", "QUEUE", "KIND", "MESSAGES", "CONSUMERS", "ACTIVE"]
    assert [line.split() for line in lines[1:]] == [["ledger", "shop.ledger.p0", "partition", "3", "2", "yes"],
                                                    ["ledger", "shop.ledger.p1", "partition", "0", "0", "no"],
                                                    ["ledger", "shop.ledger.dlq", "dlq", "0", "0", "-"]]
    assert problems(rows) == ["shop.ledger.p1 has no active consumer"]
