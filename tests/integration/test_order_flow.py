"""The reference application end to end: real worker processes started by the CLI on a real broker."""

import json

import pytest

from tests.support import handled

pytestmark = pytest.mark.integration


def publish(eda, event, data, *extra):
    code, output = eda.run("publish", event, "--data", json.dumps(data), *extra)
    assert code == 0, output
    return output.split()[-1]  # the confirmed event's id


def test_a_paid_order_with_stock_is_reserved_and_shipped(eda, broker, make_order):
    # Given the three workers and stock of the ordered SKU
    eda.worker("payment", "inventory", "shipping")
    spy = broker.spy()
    publish(eda, "stock-replenished", {"sku": "SKU-1", "quantity": 10})
    # When an order is placed
    order = make_order(amount=30, items=[("SKU-1", 3)])
    order_id = publish(eda, "order-placed", order)
    # Then it is charged, reserved and shipped, every reaction in the order's correlation
    shipped = spy.wait_for("order.shipped")[0]
    assert shipped["data"]["orderId"] == order["orderId"]
    assert shipped["data"]["trackingNumber"].startswith("1Z")
    paid = spy.of_type("payment.succeeded")[0]
    assert paid["data"]["amount"] == "30.00" and paid["data"]["currency"] == "USD"
    assert paid["data"]["items"] == [{"sku": "SKU-1", "quantity": 3, "unitPrice": "10.00"}]
    reserved = spy.of_type("inventory.reserved")[0]
    for event in (paid, reserved, shipped):
        assert event["correlationid"] == order_id
    assert paid["causationid"] == order_id
    assert reserved["causationid"] == paid["id"]
    assert shipped["causationid"] == reserved["id"]


def test_a_declined_order_fails_payment_and_is_not_reserved(eda, broker, make_order):
    worker = eda.worker("payment", "inventory")
    spy = broker.spy()
    order = make_order(amount="25000.00")
    publish(eda, "order-placed", order)
    failed = spy.wait_for("payment.failed")[0]
    assert failed["data"]["orderId"] == order["orderId"]
    assert "limit" in failed["data"]["reason"]
    worker.wait_for_log(handled("order.placed"))
    assert spy.of_type("payment.succeeded") == []


def test_an_order_out_of_stock_is_cancelled_and_refunded(eda, broker, make_order):
    eda.worker("payment", "inventory", "shipping")
    spy = broker.spy()
    publish(eda, "stock-replenished", {"sku": "SKU-2", "quantity": 2})
    order = make_order(amount=50, items=[("SKU-1", 1), ("SKU-2", 5)])
    publish(eda, "order-placed", order)
    refunded = spy.wait_for("payment.refunded")[0]
    cancelled = spy.of_type("order.cancelled")[0]
    assert cancelled["data"] == {"orderId": order["orderId"], "reason": "out_of_stock", "userId": order["userId"]}
    assert refunded["data"]["amount"] == "50.00"
    assert refunded["data"]["paymentId"] == spy.of_type("payment.succeeded")[0]["data"]["paymentId"]
    assert spy.of_type("inventory.reserved") == [] and spy.of_type("order.shipped") == []


def test_stock_falling_to_the_threshold_publishes_inventory_depleted(eda, broker, make_order):
    eda.worker("payment", "inventory")
    spy = broker.spy()
    publish(eda, "stock-replenished", {"sku": "SKU-3", "quantity": 8})
    publish(eda, "order-placed", make_order(items=[("SKU-3", 3)]))
    depleted = spy.wait_for("inventory.depleted")[0]
    assert depleted["data"] == {"sku": "SKU-3", "remaining": 5}
