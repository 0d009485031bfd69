"""The compiled load and dump give exactly what marshmallow's Schema.load and Schema.dump give."""

import copy

import pytest
from decimal import Decimal

from marshmallow import ValidationError

from eda.contracts import registry
from eda.errors import ContractError

ITEM = {"sku": "SKU-1", "quantity": 2, "unitPrice": "10.00"}
VALID = {
    "order.placed": {"orderId": "o-1", "userId": "u-1", "totalAmount": "20.00", "currency": "EUR", "items": [ITEM]},
    "payment.succeeded": {"orderId": "o-1", "paymentId": "p-1", "amount": 20, "items": [ITEM]},
    "payment.failed": {"orderId": "o-1", "reason": "declined"},
    "stock.replenished": {"sku": "SKU-1", "quantity": 10},
    "inventory.reserved": {"orderId": "o-1", "items": [ITEM, {"sku": "SKU-2", "quantity": 1}]},
    "inventory.depleted": {"sku": "SKU-1", "remaining": 0},
    "order.cancelled": {"orderId": "o-1", "reason": "out_of_stock"},
    "payment.refunded": {"orderId": "o-1", "paymentId": "p-1", "amount": "20.00"},
    "order.shipped": {"orderId": "o-1", "trackingNumber": "1Z", "carrier": "UPS"},
}
ODD_VALUES = [None, "", 0, -1, 1, True, False, 1.5, 19.99, "abc", "12.345", "7", "NaN", "Infinity", "-0.01",
              [], [{}], {}, "x" * 201, "usd", "USD", 10**30]


def variants(data: dict):
    """The valid data, then each key removed or replaced by odd values, an unknown key, odd items."""
    yield data
    yield {**data, "unknownKey": 1}
    for key in data:
        yield {k: v for k, v in data.items() if k != key}
        for value in ODD_VALUES:
            yield {**data, key: value}
    if "items" in data:
        for key in ITEM:
            for value in ODD_VALUES:
                yield {**data, "items": [{**ITEM, key: value}]}
            yield {**data, "items": [{k: v for k, v in ITEM.items() if k != key}]}
        yield {**data, "items": [ITEM, "not an item"]}
        yield {**data, "items": [{**ITEM, "extra": True}]}


def outcome(load, data):
    try:
        return "ok", load(copy.deepcopy(data))
    except ValidationError as exc:
        return "error", exc.messages
    except ContractError as exc:
        return "error", exc.fields


@pytest.mark.parametrize("event_type", sorted(VALID))
def test_the_fast_load_agrees_with_marshmallow_on_every_variant(event_type):
    contract = registry.get(event_type)
    cases = list(variants(VALID[event_type]))
    for data in cases:
        assert outcome(contract.load, data) == outcome(contract.schema.load, data), data


@pytest.mark.parametrize("event_type", sorted(VALID))
def test_valid_data_takes_the_fast_path(event_type):
    contract = registry.get(event_type)
    assert contract.fast_load is not None
    assert contract.fast_load(copy.deepcopy(VALID[event_type])) == contract.schema.load(VALID[event_type])


def test_strict_loading_still_rejects_unknown_fields():
    with pytest.raises(ContractError, match="unknownKey"):
        registry.get("order.shipped").load({**VALID["order.shipped"], "unknownKey": 1}, strict=True)


PY_ITEM = {"sku": "SKU-1", "quantity": 2, "unit_price": Decimal("10.00")}
ODD_PY_VALUES = [None, "", 0, 7, True, 1.5, Decimal("19.999"), Decimal("-1"), "12.30", [], [PY_ITEM], {"a": 1}]


def python_variants(data: dict):
    """Handler-built data: each key removed or replaced by odd values, an unknown key, odd items."""
    yield data
    yield {**data, "unknown_key": 1}
    for key in data:
        yield {k: v for k, v in data.items() if k != key}
        for value in ODD_PY_VALUES:
            yield {**data, key: value}
    if "items" in data:
        for key in PY_ITEM:
            yield {**data, "items": [{k: v for k, v in PY_ITEM.items() if k != key}]}
            for value in ODD_PY_VALUES:
                yield {**data, "items": [{**PY_ITEM, key: value}]}


def dumped(dump, data):
    try:
        return "ok", dump(copy.deepcopy(data))
    except Exception as exc:  # marshmallow's own failure on odd data: the fast path must fail alike
        return "error", type(exc).__name__


@pytest.mark.parametrize("event_type", sorted(VALID))
def test_the_fast_dump_agrees_with_marshmallow_on_every_variant(event_type):
    contract = registry.get(event_type)
    assert contract.fast_dump is not None
    for data in python_variants(contract.schema.load(VALID[event_type])):
        assert dumped(contract.dump, data) == dumped(contract.schema.dump, data), data
