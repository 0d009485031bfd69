"""The reference shop's workers together on a TestBus: the order flow without a broker."""

from eda.settings import Settings
from eda.testing import TestBus
from eda_shop.workers.inventory import Inventory
from eda_shop.workers.payment import Payment
from eda_shop.workers.shipping import Shipping


def order(order_id, amount="30.00", sku="WIDGET", quantity=2):
    return {"order_id": order_id, "user_id": "u-1", "total_amount": amount,
            "items": [{"sku": sku, "quantity": quantity}]}


def test_orders_are_shipped_declined_or_cancelled_and_refunded(tmp_path):
    with TestBus(Payment, Inventory, Shipping, settings=Settings(state_dir=tmp_path)) as bus:
        bus.publish("stock.replenished", {"sku": "WIDGET", "quantity": 7})
        bus.publish("order.placed", order("o-1"))
        bus.publish("order.placed", order("o-2", amount="20000.00"))
        bus.publish("order.placed", order("o-3", quantity=50))
        assert [e.data["order_id"] for e in bus.published("order.shipped")] == ["o-1"]
        assert [e.data["order_id"] for e in bus.published("payment.failed")] == ["o-2"]
        assert [e.data["order_id"] for e in bus.published("payment.refunded")] == ["o-3"]
        assert [e.data for e in bus.published("inventory.depleted")] == [{"sku": "WIDGET", "remaining": 5}]
        shipped = bus.published("order.shipped")[0]
        assert shipped.correlation_id == bus.published("order.placed")[0].id
        assert bus.worker("inventory").stock_of("WIDGET") == 5
        assert bus.dead_letters() == []


def test_a_repeated_reservation_ships_under_the_same_tracking_number(tmp_path):
    with TestBus(Shipping, settings=Settings(state_dir=tmp_path)) as bus:
        reserved = {"order_id": "o-1", "items": [{"sku": "WIDGET", "quantity": 1}]}
        bus.publish("inventory.reserved", reserved)
        bus.publish("inventory.reserved", reserved)
        numbers = {e.data["tracking_number"] for e in bus.published("order.shipped")}
        assert len(numbers) == 1 and numbers.pop().startswith("1Z")
