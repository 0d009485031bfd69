"""The shop's payment worker, in both styles (threads, async), builds its gateway breaker one way: a run
of 4xx answers (the request is wrong) never opens it, a run of 5xx answers (the gateway is) does.
On a TestBus with the in-process gateway simulation; tests/integration/test_breaker.py does it with
real workers on a real broker."""

import pybreaker
import pytest

from eda.settings import Settings
from eda.testing import TestBus
from eda_shop.workers.payment import Payment
from eda_shop.workers.payment_async import AsyncPayment


def order(order_id):
    return {"order_id": order_id, "user_id": "u-1", "total_amount": "30.00", "items": [{"sku": "A", "quantity": 1}]}


@pytest.mark.parametrize("style", [Payment, AsyncPayment], ids=["threads", "async"])
def test_a_run_of_4xx_answers_never_opens_the_breaker_and_a_run_of_5xx_answers_does(style, tmp_path):
    # Given the payment worker with no retries (each failure is one call) and the simulated gateway
    with TestBus(style, settings=Settings(state_dir=tmp_path, retry_delays=""), dead_letters="allow") as bus:
        payment = bus.worker("payment")
        simulation, fail_max = payment.gateway.simulation, payment.breaker.fail_max
        # When twice as many orders in a row as open the breaker are answered 422
        rejected = [f"rejected-{i}" for i in range(2 * fail_max)]
        simulation.reject_orders.update(rejected)
        for order_id in rejected:
            bus.publish("order.placed", order(order_id))
        # Then each is dead-lettered at once as permanent, and the breaker stays closed
        assert [d.exception_type for d in bus.dead_letters()] == ["PermanentError"] * len(rejected)
        assert "gateway answered 422" in bus.dead_letters()[0].reason
        assert payment.breaker.current_state == pybreaker.STATE_CLOSED
        # and the next order is charged
        bus.publish("order.placed", order("fine"))
        assert [e.data["order_id"] for e in bus.published("payment.succeeded")] == ["fine"]

        # When as many orders in a row as open it are answered 503
        failing = [f"failing-{i}" for i in range(fail_max)]
        simulation.fail_orders.update(failing)
        for order_id in failing:
            bus.publish("order.placed", order(order_id))
        # Then the breaker is open
        assert payment.breaker.current_state == pybreaker.STATE_OPEN
        assert [d.exception_type for d in bus.dead_letters()][len(rejected):] == ["GatewayError"] * fail_max
