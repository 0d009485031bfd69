"""Bounded concurrency: a slow gateway does not serialise payments, and never gets more than --concurrency."""

import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("concurrency", [1, 4])
def test_payments_run_up_to_the_concurrency_and_no_further(eda, broker, gateway, make_order, concurrency):
    # Given a gateway that takes a while to answer, and a payment worker allowed `concurrency` handlers
    gateway.simulation.latency = 0.2
    eda.worker("payment", EDA_PAYMENT_GATEWAY_URL=gateway.url, EDA_CONCURRENCY=concurrency, EDA_PREFETCH=20)
    spy = broker.spy("payment.*")
    # When a batch of orders arrives
    eda.publish("order-placed", *(make_order() for _ in range(12)))
    # Then every order is paid, with as many gateway calls at once as allowed and never more
    assert len(spy.wait_for("payment.succeeded", count=12, timeout=30)) == 12
    assert gateway.simulation.peak_in_flight == concurrency
    assert gateway.simulation.charges == 12
