"""The exported documents agree with the marshmallow contracts: what one accepts the other accepts."""

import inspect
import json
import re
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest

from eda_shop.contracts import CONTRACTS
from eda import discovery, names
from eda.contracts.envelope import decode, new_event, to_wire
from eda.contracts.export import asyncapi_document, event_schema, jsonschema_document
from eda.contracts.registry import CLIENTS, get
from eda.errors import ContractError

ASYNCAPI_SCHEMA = Path(__file__).parent.parent / "data" / "asyncapi-3.0.0.schema.json"
ITEMS = [{"sku": "SKU-1", "quantity": 2, "unit_price": Decimal("10.00")}, {"sku": "SKU-2", "quantity": 1}]
SAMPLES = {  # Python values, snake_case, as a handler passes them to ctx.publish
    "order.placed": {"order_id": "o-1", "user_id": "u-1", "total_amount": Decimal("20.00"), "currency": "EUR",
                     "items": ITEMS},
    "payment.succeeded": {"order_id": "o-1", "payment_id": "p-1", "amount": Decimal(20), "currency": "USD",
                          "items": ITEMS},
    "payment.failed": {"order_id": "o-1", "reason": "card_declined"},
    "stock.replenished": {"sku": "SKU-1", "quantity": 50},
    "inventory.reserved": {"order_id": "o-1", "items": ITEMS},
    "inventory.depleted": {"sku": "SKU-1", "remaining": 0},
    "order.cancelled": {"order_id": "o-1", "reason": "out_of_stock"},
    "order.payment-expired": {"order_id": "o-1"},
    "payment.refunded": {"order_id": "o-1", "payment_id": "p-1", "amount": Decimal("20.00")},
    "order.shipped": {"order_id": "o-1", "tracking_number": "1Z999", "carrier": "UPS"},
}


def sample_wire(event_type: str) -> dict:
    cause = new_event("order.placed", SAMPLES["order.placed"], "tests")
    return to_wire(cause.reaction(event_type, SAMPLES[event_type], "tests"))


def validator(schema):
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def errors(schema, instance) -> list[str]:
    return [e.message for e in validator(schema).iter_errors(instance)]


def test_every_contract_has_a_sample():
    assert set(SAMPLES) == {c.type for c in CONTRACTS}


@pytest.mark.parametrize("event_type", sorted(SAMPLES))
def test_sample_events_validate_against_their_schema_and_the_whole_document(event_type):
    # Given an event built and written the way eda writes it
    wire = sample_wire(event_type)
    # Then its own schema, and the document of every event, accept it
    assert errors(event_schema(get(event_type)), wire) == []
    assert errors(jsonschema_document(), wire) == []
    # And not under another type's schema
    other = next(c for c in CONTRACTS if c.type != event_type)
    assert errors(event_schema(other), wire)


def test_the_exported_schemas_are_valid_json_schemas():
    jsonschema.Draft202012Validator.check_schema(jsonschema_document())
    for c in CONTRACTS:
        jsonschema.Draft202012Validator.check_schema(event_schema(c))


def order_with(**changes) -> dict:
    wire = sample_wire("order.placed")
    for key, value in changes.items():
        if value is ...:
            del wire["data"][key]
        else:
            wire["data"][key] = value
    return wire


INVALID = {
    "negative amount": order_with(totalAmount="-5.00"),
    "amount not a number": order_with(totalAmount="abc"),
    "no items": order_with(items=[]),
    "item quantity zero": order_with(items=[{"sku": "SKU-1", "quantity": 0}]),
    "quantity as a string": order_with(items=[{"sku": "SKU-1", "quantity": "2"}]),
    "orderId missing": order_with(orderId=...),
    "lower-case currency": order_with(currency="usd"),
    "empty user id": order_with(userId=""),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_an_invalid_sample_fails_the_schema_and_the_contract(case):
    wire = INVALID[case]
    assert errors(event_schema(get("order.placed")), wire), f"the schema accepted: {case}"
    with pytest.raises(ContractError):
        decode(json.dumps(wire).encode())


@pytest.mark.parametrize("wire", [
    order_with(totalAmount=20),  # money as a JSON number is accepted on input
    order_with(totalAmount=19.99),
    order_with(giftWrap=True),  # an unknown (newer, optional) field is ignored by consumers
    {**sample_wire("order.placed"), "traceparent": "00-abc-def-01"},  # a CloudEvents extension attribute
], ids=["amount number", "amount float", "unknown data field", "extension attribute"])
def test_what_the_contract_accepts_the_schema_accepts(wire):
    decode(json.dumps(wire).encode())
    assert errors(event_schema(get("order.placed")), wire) == []


def test_the_envelope_attributes_are_checked():
    schema = event_schema(get("order.placed"))
    for change in ({"specversion": "0.3"}, {"type": "payment.failed"}, {"datacontenttype": "text/plain"},
                   {"time": "yesterday"}, {"id": ""}):
        assert errors(schema, {**sample_wire("order.placed"), **change}), change
    wire = sample_wire("order.placed")
    del wire["data"]
    assert errors(schema, wire)


def test_each_schema_carries_its_contract_version():
    for c in CONTRACTS:
        schema = event_schema(c)
        assert schema["x-version"] == c.version and schema["properties"]["data"]["x-version"] == c.version
        assert schema["$id"].endswith(f":{c.type}:v{c.version}")


def test_money_is_a_two_decimal_string_or_a_number():
    amount = event_schema(get("payment.refunded"))["properties"]["data"]["properties"]["amount"]
    assert amount == {"anyOf": [{"type": "string", "pattern": r"^\d+\.\d{2}$"}, {"type": "number", "minimum": 0}]}


def test_published_by_matches_what_the_workers_publish():
    # The AsyncAPI document's publishers come from this table: it must name every ctx.publish of a worker.
    for name, cls in discovery.discover().items():
        for event_type in re.findall(r'ctx\.publish\("([\w.-]+)"', inspect.getsource(inspect.getmodule(cls))):
            assert name in get(event_type).published_by, f"{name} publishes {event_type}"


@pytest.fixture(scope="module")
def asyncapi():
    return asyncapi_document("shop", discovery.discover())


def test_the_asyncapi_document_is_valid_asyncapi_3(asyncapi):
    schema = json.loads(ASYNCAPI_SCHEMA.read_text())
    found = [f"{list(e.absolute_path)}: {e.message[:200]}"
             for e in jsonschema.Draft7Validator(schema).iter_errors(asyncapi)]
    assert found == []


def test_asyncapi_has_a_channel_per_routing_key_with_its_publishers_and_consumers(asyncapi):
    operations = asyncapi["operations"].values()
    for c in CONTRACTS:
        channel = asyncapi["channels"][c.type]
        assert channel["address"] == c.type
        assert channel["bindings"]["amqp"]["exchange"] == {"name": "shop.events", "type": "topic", "durable": True,
                                                           "autoDelete": False}
        message = asyncapi["components"]["messages"][c.type]
        assert message["payload"]["properties"]["type"]["const"] == c.type and message["x-version"] == c.version
        senders = {o["x-eda-worker"] for o in operations
                   if o["action"] == "send" and o["channel"]["$ref"] == f"#/channels/{c.type}"}
        assert senders == set(c.published_by)
        receivers = {o["x-eda-worker"] for o in operations
                     if o["action"] == "receive" and o["messages"][0]["$ref"].endswith(f"/messages/{c.type}")}
        assert receivers == set(discovery.consumers_of(c.type))
    assert CLIENTS in get("order.placed").published_by


def test_asyncapi_names_each_worker_queue_from_eda_names(asyncapi):
    for name, cls in discovery.discover().items():
        channel = asyncapi["channels"][f"queue.{name}"]
        assert channel["address"] == names.work_queue("shop", name)
        assert channel["bindings"]["amqp"]["queue"]["name"] == names.work_queue("shop", name)
        assert set(channel["messages"]) == set(cls.handlers)


def test_resolving_every_reference_of_the_asyncapi_document(asyncapi):
    # Every local $ref points at something that exists.
    def refs(node):
        if isinstance(node, dict):
            if "$ref" in node and node["$ref"].startswith("#/"):
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(asyncapi):
        target = asyncapi
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        assert target, ref


def test_a_saga_s_queue_says_what_it_correlates_by_and_the_schema_of_its_state(asyncapi):
    saga = asyncapi["channels"]["queue.order-saga"]
    assert saga["x-eda-saga"]["correlation"] == "order_id"
    state = saga["x-eda-saga"]["state"]
    assert state["type"] == "object" and state["properties"]["status"] == {"type": "string"}
    assert state["properties"]["paid"] == {"type": "boolean", "default": False}
    assert "ordered by the flow (correlation id)" in saga["description"]
    assert "x-eda-saga" not in asyncapi["channels"]["queue.payment"]
    # and what the state schema says, a stored state of an order satisfies
    stored = {"status": "refunded", "user_id": "u-1", "total_amount": "5.00", "paid": True, "cancel_reason": "x"}
    assert errors(state, stored) == [] and errors(state, {"paid": "yes"}) != []
