"""Binary-mode CloudEvents (attributes in ce-* headers, the data alone in the body) are decoded and
validated exactly like structured ones."""

import json

import pytest

from eda.contracts.binary import decode_message, claimed_identity
from eda.contracts.envelope import CONTENT_TYPE, encode, new_event
from eda.errors import ContractError

DATA = {"orderId": "o-1", "userId": "u-1", "totalAmount": "10.00", "items": [{"sku": "A", "quantity": 1}]}
HEADERS = {"ce-specversion": "1.0", "ce-id": "e-1", "ce-type": "order.placed", "ce-source": "/shop/web",
           "ce-time": "2026-01-02T03:04:05Z"}


def test_a_binary_mode_event_is_decoded_with_its_extensions():
    headers = {**HEADERS, "ce-correlationid": "c-1", "ce-causationid": "e-0", "ce-traceparent": "00-ab-cd-01"}
    event = decode_message(json.dumps(DATA).encode(), "application/json", headers, {"order.placed"})
    assert (event.id, event.type, event.source, event.correlation_id, event.causation_id) == \
        ("e-1", "order.placed", "/shop/web", "c-1", "e-0")
    assert event.data["order_id"] == "o-1" and str(event.data["total_amount"]) == "10.00"


def test_byte_header_values_and_content_type_parameters_are_understood():
    headers = {k: v.encode() for k, v in HEADERS.items()}
    event = decode_message(json.dumps(DATA).encode(), "application/json; charset=utf-8", headers)
    assert event.correlation_id == "e-1"  # the event's own id when it has none


@pytest.mark.parametrize("change, content_type, message", [
    ({"ce-id": ""}, "application/json", "'id' is missing"),
    ({"ce-specversion": "0.3"}, "application/json", "not a CloudEvent 1.0"),
    ({"ce-type": "order.lost"}, "application/json", "unknown event type 'order.lost'"),
    ({}, "text/plain", "datacontenttype 'text/plain' is not application/json"),
])
def test_binary_mode_attributes_are_validated_like_structured_ones(change, content_type, message):
    with pytest.raises(ContractError, match=message):
        decode_message(json.dumps(DATA).encode(), content_type, {**HEADERS, **change})


def test_binary_mode_data_is_validated_by_its_contract():
    with pytest.raises(ContractError, match="items: Must hold at least one item"):
        decode_message(json.dumps({**DATA, "items": []}).encode(), "application/json", HEADERS)
    with pytest.raises(ContractError, match="body is not UTF-8 JSON"):
        decode_message(b"{not json", "application/json", HEADERS)


def test_a_structured_event_stays_structured_whatever_its_headers():
    event = new_event("order.shipped", {"order_id": "o", "tracking_number": "t", "carrier": "UPS"}, "tests")
    assert decode_message(encode(event), CONTENT_TYPE, {"ce-specversion": "1.0", "ce-type": "x"}).id == event.id
    assert decode_message(encode(event), None, None).id == event.id


@pytest.mark.parametrize("body, properties, headers, claimed", [
    # structured mode: the envelope in the body
    (b'{"id": "e-1", "type": "order.placed", "data": {"orderId": 42}}', {}, {}, ("e-1", "order.placed")),
    # binary mode: the ce-* headers, in any case; the body is data, whose own "id" is no event id
    (b'{"id": "SKU-1", "type": "widget"}', {"content_type": "application/json"},
     {"ce-specversion": "1.0", "CE-ID": b"e-2", "ce-type": "stock.replenished"}, ("e-2", "stock.replenished")),
    (b'{"id": "SKU-1", "type": "widget"}', {"content_type": "application/json"}, {"ce-specversion": "1.0"},
     (None, None)),
    # the AMQP properties first; a number as its digits; what is neither text nor a number, nothing
    (b'{"id": "body-id"}', {"message_id": "prop-id", "type": "t.x"}, {}, ("prop-id", "t.x")),
    (b'{"id": 5, "type": ["x"]}', {}, {}, ("5", None)),
    (b"not json", {}, None, (None, None)),
])
def test_a_message_that_is_no_valid_event_is_named_by_what_it_claims(body, properties, headers, claimed):
    assert claimed_identity(body, properties, headers) == claimed
