"""The shop's ledger on a TestBus: each user's running balance from payments and refunds, and why its
events must come in order (a refund before its charge is refused)."""

from decimal import Decimal

from eda.settings import Settings
from eda.testing import TestBus
from eda_shop.workers.inventory import Inventory
from eda_shop.workers.ledger import Ledger
from eda_shop.workers.payment import Payment


def order(order_id, user_id, amount="30.00", quantity=1):
    return {"order_id": order_id, "user_id": user_id, "total_amount": amount,
            "items": [{"sku": "WIDGET", "quantity": quantity}]}


def test_the_ledger_keeps_each_users_balance_from_charges_and_refunds(tmp_path):
    with TestBus(Payment, Inventory, Ledger, settings=Settings(state_dir=tmp_path)) as bus:
        bus.publish("stock.replenished", {"sku": "WIDGET", "quantity": 3})
        bus.publish("order.placed", order("o-1", "u-1", "30.00"))
        bus.publish("order.placed", order("o-2", "u-1", "12.50"))
        bus.publish("order.placed", order("o-3", "u-2", "40.00", quantity=9))  # out of stock: refunded
        # payment's events carry the user id, the partition key of both contracts
        assert {e.data["user_id"] for e in bus.published("payment.succeeded")} == {"u-1", "u-2"}
        assert [e.data["user_id"] for e in bus.published("payment.refunded")] == ["u-2"]
        ledger = bus.worker("ledger")
        assert ledger.balance("u-1") == Decimal("42.50")
        assert ledger.balance("u-2") == Decimal("0.00")  # charged 40.00, refunded 40.00
        assert bus.dead_letters() == []


def test_a_redelivered_charge_changes_nothing(tmp_path):
    with TestBus(Ledger, settings=Settings(state_dir=tmp_path)) as bus:
        charge = {"order_id": "o-1", "payment_id": "p-1", "amount": "10.00", "user_id": "u-1",
                  "items": [{"sku": "WIDGET", "quantity": 1}]}
        bus.publish("payment.succeeded", charge)
        bus.publish("payment.succeeded", charge)
        assert bus.worker("ledger").balance("u-1") == Decimal("10.00")


def test_a_refund_before_its_charge_is_dead_lettered_as_out_of_order(tmp_path):
    with TestBus(Ledger, settings=Settings(state_dir=tmp_path)) as bus, bus.expect_dead_letters():
        bus.publish("payment.refunded", {"order_id": "o-9", "payment_id": "p-9", "amount": "10.00", "user_id": "u-1"})
        [dead] = bus.dead_letters("ledger")
        assert dead.reason == "refund of order o-9 before its charge: events out of order"
        assert bus.worker("ledger").balance("u-1") == Decimal("0.00")
