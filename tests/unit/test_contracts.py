"""Contracts without a broker: the envelope, money, camelCase data, and what makes an event invalid."""

import json
from decimal import Decimal

import pytest

from eda.contracts.envelope import decode, encode, new_event, to_wire
from eda.contracts.registry import get
from eda.errors import ContractError, UnknownEvent

ORDER = {"orderId": "o-1", "userId": "u-1", "totalAmount": 19.99,
         "items": [{"sku": "A", "quantity": 2, "unitPrice": "9.995"}]}


def test_money_is_accepted_as_number_or_string_and_written_with_two_decimals():
    contract = get("order-placed")
    for amount in (100, 100.0, "100", "100.00"):
        data = contract.load({**ORDER, "totalAmount": amount})
        assert data["total_amount"] == Decimal("100.00")
        assert contract.dump(data)["totalAmount"] == "100.00"
    assert contract.load(ORDER)["total_amount"] == Decimal("19.99")


def test_currency_defaults_to_usd_and_must_be_three_letters():
    contract = get("order-placed")
    assert contract.load(ORDER)["currency"] == "USD"
    with pytest.raises(ContractError, match="currency"):
        contract.load({**ORDER, "currency": "usd"})


@pytest.mark.parametrize("change, field", [
    ({"items": []}, "items"),
    ({"items": [{"sku": "A", "quantity": 0}]}, "items.0.quantity"),
    ({"items": [{"sku": "A", "quantity": "2"}]}, "items.0.quantity"),
    ({"totalAmount": "NaN"}, "totalAmount"),
    ({"totalAmount": -1}, "totalAmount"),
    ({"userId": None}, "userId"),
])
def test_invalid_order_data_names_the_field_at_fault(change, field):
    with pytest.raises(ContractError) as err:
        get("order-placed").load({**ORDER, **change})
    assert field + ":" in str(err.value)


def test_consumers_ignore_unknown_fields_but_the_cli_rejects_them():
    contract = get("order-placed")
    assert "gift_wrap" not in contract.load({**ORDER, "giftWrap": True})
    with pytest.raises(ContractError, match="giftWrap: Unknown field"):
        contract.load({**ORDER, "giftWrap": True}, strict=True)


def test_wire_data_written_with_python_names_is_refused_with_the_wire_name_meant():
    # Given an order written with the Python names (order_id) where the wire has camelCase (orderId)
    written = {("order_id" if k == "orderId" else k): v for k, v in ORDER.items()}
    # When it is loaded as CLI input, then the error names the wire field each key stands for
    with pytest.raises(ContractError, match=r"order_id: Unknown field \(did you mean 'orderId'\?\)"):
        get("order-placed").load(written, strict=True)
    # and a misspelt key gets the closest field
    with pytest.raises(ContractError, match=r"curency: Unknown field \(did you mean 'currency'\?\)"):
        get("order-placed").load({**ORDER, "curency": "EUR"}, strict=True)


def test_an_event_round_trips_through_the_wire_format():
    data = get("order-placed").load(ORDER)
    event = new_event("order-placed", data, "tests")
    wire = json.loads(encode(event))
    assert wire["type"] == "order.placed" and wire["specversion"] == "1.0"
    assert wire["correlationid"] == event.id and "causationid" not in wire
    assert wire["data"]["totalAmount"] == "19.99" and wire["data"]["items"][0]["unitPrice"] == "10.00"
    back = decode(encode(event))
    assert back.id == event.id and back.data == data


def test_a_reaction_keeps_the_correlation_and_names_its_cause():
    cause = new_event("order-placed", get("order-placed").load(ORDER), "tests", correlation_id="c-1")
    reaction = cause.reaction("payment.failed", {"order_id": "o-1", "reason": "declined"}, "eda/payment")
    wire = to_wire(reaction)
    assert wire["correlationid"] == "c-1" and wire["causationid"] == cause.id


@pytest.mark.parametrize("body, message", [
    (b"\xff\xfe", "not UTF-8 JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"specversion": "0.3", "id": "1", "source": "s", "type": "order.placed"}', "specversion"),
    (b'{"specversion": "1.0", "source": "s", "type": "order.placed", "data": {}}', "'id'"),
    (b'{"specversion": "1.0", "id": "1", "source": "s", "type": "no.such", "data": {}}', "unknown event type"),
    (b'{"specversion": "1.0", "id": "1", "source": "s", "type": "order.placed"}', "no data"),
    (b'{"specversion": "1.0", "id": "1", "source": "s", "type": "order.placed", "datacontenttype": "text/xml",'
     b' "data": {}}', "datacontenttype"),
])
def test_a_body_that_is_not_a_valid_cloudevent_is_a_contract_error(body, message):
    with pytest.raises(ContractError, match=message):
        decode(body)


def test_a_worker_takes_only_the_types_it_handles():
    event = new_event("order-placed", get("order-placed").load(ORDER), "tests")
    with pytest.raises(ContractError, match="not handled here"):
        decode(encode(event), accepted_types={"payment.succeeded"})


def test_contracts_are_found_by_cli_name_or_type_and_unknown_names_list_the_known():
    assert get("order-placed") is get("order.placed")
    with pytest.raises(UnknownEvent, match="known events: order-placed"):
        get("order-shipped-twice")
