"""The payment gateway's circuit breaker: an outage pauses the worker instead of failing events."""

import pytest

from tests.support import Accounting, wait_until

pytestmark = pytest.mark.integration

FAIL_MAX, CONCURRENCY = 3, 4


def breaker_change(new_state):
    return lambda r: "circuit breaker" in str(r.get("message", "")) and str(r["message"]).endswith(f"-> {new_state}")


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_an_outage_opens_the_breaker_and_every_order_is_charged_once_after_it(eda, broker, gateway, namespace,
                                                                              make_order, queue_type):
    # Given a payment worker whose breaker opens after 3 failures and probes again after 1s,
    # with a retry schedule (200ms, 400ms) far shorter than the outage to come, and on a quorum queue a
    # delivery limit (against crash loops) lower than the number of probes
    gateway.simulation.down = True
    worker = eda.worker("payment", EDA_PAYMENT_GATEWAY_URL=gateway.url, EDA_BREAKER_FAIL_MAX=FAIL_MAX,
                        EDA_BREAKER_RESET_TIMEOUT=1, EDA_CONCURRENCY=CONCURRENCY, EDA_QUEUE_TYPE=queue_type,
                        EDA_DELIVERY_LIMIT=2)
    spy = broker.spy("payment.*")
    work, dlq = f"{namespace}.payment", f"{namespace}.payment.dlq"
    # When orders arrive while the gateway is down
    order_ids = eda.publish("order-placed", *(make_order() for _ in range(20)))
    # Then the breaker opens, and its state change is logged
    worker.wait_for_log(breaker_change("open"), what="the breaker opening")
    # and the worker holds nothing while it is open: every order waits in its queue
    wait_until(lambda: broker.depth(work) == len(order_ids), message="every order given back to the queue")
    # and failed probes keep it open over several reset timeouts, without the orders' attempts running out
    wait_until(lambda: worker.count(breaker_change("open")) >= 4, message="three failed half-open probes")
    assert worker.count(breaker_change("half-open")) >= 3
    assert broker.depth(dlq) == 0
    # only the gateway calls made before the breaker opened (those under way then included) counted as
    # attempts, once each: an order given back while the breaker is open is not charged an attempt
    retries = [r for r in worker.records if str(r.get("message", "")).startswith("failed; retrying")]
    assert len(retries) <= (FAIL_MAX - 1) + (CONCURRENCY - 1)
    assert {r["attempt"] for r in retries} <= {1}
    assert gateway.simulation.charges == 0

    # When the gateway answers again
    gateway.simulation.down = False
    # Then the breaker closes and every order is charged exactly once
    paid = spy.wait_for("payment.succeeded", count=len(order_ids), timeout=30)
    assert sorted(e["causationid"] for e in paid) == sorted(order_ids)
    Accounting(order_ids, spy=spy, broker=broker, dlqs=[dlq]).wait_all_accounted()
    assert gateway.simulation.charges == len(order_ids)
    worker.wait_for_log(breaker_change("closed"), what="the breaker closing")
    assert broker.depth(dlq) == 0
    assert broker.depth(work) == 0
    assert len(spy.of_type("payment.succeeded")) == len(order_ids)  # none paid twice
