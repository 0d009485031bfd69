"""The shop's ledger on a TestBus: each user's running balance from payments and refunds, and why its
events must come in order, and what it does with a refund that overtook its charge."""

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


def test_a_refund_before_its_charge_is_held_and_applied_right_after_the_charge(tmp_path):
    with TestBus(Ledger, settings=Settings(state_dir=tmp_path)) as bus:
        ledger = bus.worker("ledger")
        bus.publish("payment.succeeded", {"order_id": "o-1", "payment_id": "p-1", "amount": "5.00", "user_id": "u-1",
                                          "items": [{"sku": "WIDGET", "quantity": 1}]})
        # Given a refund that reached the ledger before its charge (and a redelivered copy of it)
        refund = {"order_id": "o-9", "payment_id": "p-9", "amount": "10.00", "user_id": "u-1"}
        bus.publish("payment.refunded", refund)
        bus.publish("payment.refunded", refund)
        # Then it is held, not applied, and not dead-lettered
        assert ledger.balance("u-1") == Decimal("5.00")
        assert bus.dead_letters() == []
        # When the charge comes
        bus.publish("payment.succeeded", {"order_id": "o-9", "payment_id": "p-9", "amount": "10.00",
                                          "user_id": "u-1", "items": [{"sku": "WIDGET", "quantity": 1}]})
        # Then the charge and then the refund are applied, once each, the balances chaining in that order
        entries = ledger.store.read("SELECT kind, amount, balance FROM entries WHERE order_id = 'o-9'")
        assert sorted(entries, key=lambda e: e[0]) == [("charge", "10.00", "15.00"), ("refund", "-10.00", "5.00")]
        assert ledger.balance("u-1") == Decimal("5.00")
        assert ledger.store.read("SELECT * FROM held_refunds") == []
