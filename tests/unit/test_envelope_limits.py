"""The envelope refuses what the wire cannot carry: attributes that become AMQP short strings."""

import orjson
import pytest

from eda.contracts.envelope import check_attribute, decode, encode, new_event
from eda.errors import ContractError

DATA = {"orderId": "o-1", "items": [{"sku": "A", "quantity": 1}]}
ROCKETS = "🚀" * 100  # 100 characters, 400 bytes of UTF-8


def body(**attributes) -> bytes:
    event = {"specversion": "1.0", "id": "e-1", "source": "shop/web", "type": "inventory.reserved",
             "time": "2026-12-01T00:00:00.000Z", "datacontenttype": "application/json", "data": DATA}
    event.update(attributes)
    return orjson.dumps({k: v for k, v in event.items() if v is not ...})


def test_a_well_formed_event_decodes():
    event = decode(body(correlationid="c-1", causationid="e-0"))
    assert (event.id, event.correlation_id, event.causation_id) == ("e-1", "c-1", "e-0")


@pytest.mark.parametrize("attribute", ["id", "source", "type", "correlationid", "causationid"])
@pytest.mark.parametrize("value, problem", [
    ("x" * 256, "256 bytes"), (ROCKETS, "400 bytes"), (12345, "not a string"), ({"a": 1}, "not a string"),
    ([1], "not a string"), (True, "not a string"),
])
def test_an_attribute_that_does_not_fit_an_amqp_short_string_is_a_contract_failure(attribute, value, problem):
    with pytest.raises(ContractError, match=problem) as error:
        decode(body(**{attribute: value}))
    assert repr(attribute) in str(error.value)


def test_255_bytes_fit():
    decode(body(id="x" * 255, correlationid="é" * 127))  # 254 bytes


def test_an_id_of_400_bytes_without_a_correlation_id_is_refused_before_it_becomes_one():
    with pytest.raises(ContractError, match="'id' is 400 bytes"):
        decode(body(id=ROCKETS, correlationid=...))


@pytest.mark.parametrize("time", [12, "x" * 65, {"t": 1}])
def test_a_time_that_is_not_a_short_string_is_refused(time):
    with pytest.raises(ContractError, match="'time'"):
        decode(body(time=time))


def test_an_error_quotes_at_most_a_clip_of_what_arrived():
    with pytest.raises(ContractError) as error:
        decode(body(type="t" * 5_000_000))
    assert len(str(error.value)) < 300


@pytest.mark.parametrize("raw", [b"\xff\xfe", b'{"id": "\\ud800"}', b"[" * 50_000, b""])
def test_bodies_that_are_not_utf8_json_are_contract_failures(raw):
    with pytest.raises(ContractError, match="not UTF-8 JSON|not a CloudEvent"):
        decode(raw)


@pytest.mark.parametrize("attributes", [
    {"correlation_id": "c" * 300}, {"correlation_id": 12345}, {"causation_id": ROCKETS}, {"id": ""},
])
def test_building_an_event_refuses_the_same(attributes):
    with pytest.raises(ContractError):
        new_event("inventory.reserved", {"order_id": "o-1", "items": [{"sku": "A", "quantity": 1}]}, "shop/web",
                  **attributes)


def test_a_source_that_does_not_fit_is_refused_when_building():
    with pytest.raises(ContractError, match="'source'"):
        new_event("inventory.reserved", {"order_id": "o-1", "items": [{"sku": "A", "quantity": 1}]}, "s" * 300)


def test_data_that_json_cannot_hold_is_a_contract_error_when_encoding():
    event = new_event("order.cancelled", {"order_id": "\ud800", "reason": "x"}, "shop/web")
    with pytest.raises(ContractError, match="cannot be written as JSON"):
        encode(event)


def test_check_attribute_allows_an_absent_optional_attribute():
    check_attribute("correlationid", None, required=False)
    with pytest.raises(ContractError):
        check_attribute("id", None)
