"""The shop's order saga with payment, inventory and shipping on a TestBus: each order's instance ends
shipped, declined, cancelled or refunded; an order whose payment does not come in time is cancelled and
never charged afterwards, or refunded where the charge lands anyway."""

import pytest

from eda.sagas import Instances
from eda.settings import Settings
from eda.testing import TestBus
from eda_shop.workers.inventory import Inventory
from eda_shop.workers.order_saga import OrderSaga
from eda_shop.workers.payment import Payment
from eda_shop.workers.shipping import Shipping


def order(order_id, amount="30.00", sku="WIDGET", quantity=2):
    return {"order_id": order_id, "user_id": "u-1", "total_amount": amount,
            "items": [{"sku": sku, "quantity": quantity}]}


@pytest.fixture
def settings(tmp_path):
    return Settings(state_dir=tmp_path, retry_delays="10s,20s,40s")


def saga_of(settings, order_id):
    with Instances(settings, "order-saga") as instances:
        return instances.get(order_id)


def charges(bus):
    """The gateway's charge requests per order id (its idempotency key), failed ones included."""
    return dict(bus.worker("payment").gateway.simulation.calls)


def test_each_order_s_saga_ends_shipped_declined_or_refunded(settings):
    with TestBus(Payment, Inventory, Shipping, OrderSaga, settings=settings) as bus:
        bus.publish("stock.replenished", {"sku": "WIDGET", "quantity": 7})
        for placed in (order("o-1"), order("o-2", amount="20000.00"), order("o-3", quantity=50)):
            bus.publish("order.placed", placed, correlation_id=placed["order_id"])
        # Then every instance is completed, with the status its events led to
        ended = {key: saga_of(settings, key) for key in ("o-1", "o-2", "o-3")}
        assert {key: row.state["status"] for key, row in ended.items()} == {
            "o-1": "shipped", "o-2": "payment_failed", "o-3": "refunded"}
        assert all(row.completed for row in ended.values())
        assert ended["o-1"].state["paid"] and ended["o-1"].state["reserved"] and ended["o-1"].state["shipped"]
        assert ended["o-3"].state["cancel_reason"] == "out_of_stock"
        with Instances(settings, "order-saga") as instances:
            assert instances.list() == []
        # and each one's payment deadline, published when due, changes nothing
        assert [e.type for e in bus.scheduled()] == ["order.payment-expired"] * 3
        bus.advance(900)
        assert bus.scheduled() == [] and bus.published("order.cancelled")[0].data["reason"] == "out_of_stock"
        assert len(bus.published("order.cancelled")) == 1


def test_an_order_not_paid_in_time_is_cancelled_and_never_charged_afterwards(settings):
    with TestBus(Payment, Inventory, Shipping, OrderSaga, settings=settings,
                 options={"payment": {"breaker_fail_max": 100}, "order-saga": {"payment_timeout": 5.0}}) as bus:
        bus.publish("stock.replenished", {"sku": "WIDGET", "quantity": 7})
        # Given a gateway that is down: the order's charge fails and waits for its retry in 10 s
        gateway = bus.worker("payment").gateway.simulation
        gateway.down = True
        bus.publish("order.placed", order("o-1"), correlation_id="o-1", retries=False)
        assert saga_of(settings, "o-1").state["status"] == "placed"
        # When its 5 s payment deadline passes
        bus.advance(5)
        # Then the saga cancels the order, and payment records the cancellation
        [cancelled] = bus.published("order.cancelled")
        assert cancelled.data == {"order_id": "o-1", "reason": "payment_timeout", "user_id": "u-1"}
        assert saga_of(settings, "o-1").state["status"] == "cancelled"
        # When the gateway is back and the order's retry comes
        gateway.down = False
        bus.advance(10)
        # Then the order is not charged: payment fails it as cancelled, and the saga completes
        assert [e.data for e in bus.published("payment.failed")] == [{"order_id": "o-1", "reason": "cancelled"}]
        assert bus.published("payment.succeeded") == [] and bus.published("inventory.reserved") == []
        assert gateway.calls["o-1"] == 1  # the one attempt while it was down, none after
        ended = saga_of(settings, "o-1")
        assert ended.completed and ended.state["status"] == "cancelled" and not ended.state["paid"]


def test_a_charge_that_lands_after_the_cancellation_is_refunded_and_nothing_is_reserved(settings):
    # Given the saga and inventory running, and no payment worker yet (the payment never answers)
    with TestBus(Inventory, Shipping, OrderSaga, settings=settings,
                 options={"order-saga": {"payment_timeout": 5.0}}) as bus:
        bus.publish("stock.replenished", {"sku": "WIDGET", "quantity": 7})
        bus.publish("order.placed", order("o-1"), correlation_id="o-1")
        bus.advance(5)
        assert saga_of(settings, "o-1").state["status"] == "cancelled"
    # When payment starts at last: it finds the order placed before its cancellation in its queue
    with TestBus(Payment, Inventory, Shipping, OrderSaga, settings=settings) as bus:
        bus.publish("order.placed", order("o-1"), correlation_id="o-1")  # its queue held these two, in order
        bus.publish("order.cancelled", {"order_id": "o-1", "reason": "payment_timeout", "user_id": "u-1"},
                    correlation_id="o-1")
        # Then it charged the order (it did not know yet), and refunds it on the cancellation
        assert [e.data["order_id"] for e in bus.published("payment.succeeded")] == ["o-1"]
        assert [e.data["order_id"] for e in bus.published("payment.refunded")] == ["o-1"]
        # and inventory, which saw the cancellation first, reserved nothing
        assert bus.published("inventory.reserved") == [] and bus.published("order.shipped") == []
        assert bus.worker("inventory").stock_of("WIDGET") == 7
        ended = saga_of(settings, "o-1")
        assert ended.completed and ended.state["status"] == "refunded" and ended.state["paid"]


def test_a_charge_racing_the_cancellation_in_payment_is_refunded_and_fails_as_cancelled(settings):
    # Given an order whose cancellation payment recorded while the gateway was charging it
    with TestBus(Payment, settings=settings) as bus:
        payment = bus.worker("payment")
        real_charge = payment.gateway.charge

        def charge_while_cancelled(order_id, amount, currency):
            answer = real_charge(order_id, amount, currency)
            assert payment.charges.record_cancellation(order_id) is None  # another instance's, meanwhile
            return answer

        payment.gateway.charge = charge_while_cancelled
        bus.publish("order.placed", order("o-1"))
        # Then the charge is refunded at once, and the order fails as cancelled: never both charged and failed
        assert [e.data for e in bus.published("payment.failed")] == [{"order_id": "o-1", "reason": "cancelled"}]
        assert bus.published("payment.succeeded") == [] and bus.published("payment.refunded") == []
        assert payment.gateway.simulation.calls["refund-o-1"] == 1
        assert payment.charges.refund_state("o-1")["refund_id"] is not None
        # and a redelivery of the order changes nothing more
        bus.publish(bus.published("order.placed")[0])
        assert payment.gateway.simulation.calls["refund-o-1"] == 1 and payment.gateway.simulation.calls["o-1"] == 1


def test_events_of_an_order_in_another_order_still_end_it_shipped(settings):
    with TestBus(OrderSaga, settings=settings) as bus:
        # When an order's reservation is published (by hand) before its payment
        bus.publish("order.placed", order("o-1"), correlation_id="o-1")
        bus.publish("inventory.reserved", {"order_id": "o-1", "items": [{"sku": "WIDGET", "quantity": 2}]})
        assert saga_of(settings, "o-1").state["status"] == "placed"
        bus.publish("payment.succeeded", {"order_id": "o-1", "payment_id": "p-1", "amount": "30.00",
                                          "user_id": "u-1", "items": [{"sku": "WIDGET", "quantity": 2}]})
        assert saga_of(settings, "o-1").state["status"] == "reserved"
        bus.publish("order.shipped", {"order_id": "o-1", "tracking_number": "1Z1", "carrier": "UPS"})
        ended = saga_of(settings, "o-1")
        assert ended.completed and ended.state["status"] == "shipped" and ended.version == 4
        # and its deadline, when it comes, finds it completed
        bus.advance(900)
        assert bus.published("order.cancelled") == []
