"""The payment gateway's circuit breaker: an outage pauses the worker instead of failing events, and a call
that reached the gateway and failed is an attempt of the retry schedule, whether or not it opened the
breaker; only a call the open breaker refused is not."""

from collections import Counter

import kombu
import pytest

from eda import names
from tests.support import Accounting, wait_until

pytestmark = pytest.mark.integration

FAIL_MAX, CONCURRENCY = 3, 4


def breaker_change(new_state, old_state=None):
    def match(r):
        message = str(r.get("message", ""))
        return ("circuit breaker" in message and message.endswith(f"-> {new_state}")
                and (old_state is None or message.endswith(f" {old_state} -> {new_state}")))
    return match


def retries_of(worker) -> list[dict]:
    return [r for r in worker.records if str(r.get("message", "")).startswith("failed; retrying")]


@pytest.fixture
def retry_queues_deleted(broker_url, namespace):
    """Deletes the payment worker's retry queues of the delays a test names (the shared fixture knows only
    the default and the tests' usual delays)."""
    delays = []
    yield delays.extend
    with kombu.Connection(broker_url) as conn:
        channel = conn.channel()
        for delay in delays:
            channel.queue_delete(names.retry_queue(namespace, "payment", delay))


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_an_outage_opens_the_breaker_and_every_order_is_charged_once_after_it(eda, broker, gateway, namespace,
                                                                              make_order, queue_type):
    # Given a payment worker whose breaker opens after 3 failures and probes again after 1s, with a retry
    # schedule of six attempts (more than the calls any one order can make before the gateway is back:
    # one before the breaker opens, one per failed probe), and on a quorum queue a delivery limit
    # (against crash loops) lower than the number of times the open breaker gives an order back
    gateway.simulation.down = True
    worker = eda.worker("payment", EDA_PAYMENT_GATEWAY_URL=gateway.url, EDA_PAYMENT_BREAKER_FAIL_MAX=FAIL_MAX,
                        EDA_PAYMENT_BREAKER_RESET_TIMEOUT=1, EDA_CONCURRENCY=CONCURRENCY, EDA_QUEUE_TYPE=queue_type,
                        EDA_DELIVERY_LIMIT=2, EDA_RETRY_DELAYS="200ms,200ms,200ms,400ms,400ms,400ms")
    spy = broker.spy("payment.*")
    work, dlq = f"{namespace}.payment", f"{namespace}.payment.dlq"
    # When orders arrive while the gateway is down
    event_ids = eda.publish("order-placed", *(make_order() for _ in range(20)))
    # Then the breaker opens, and its state change is logged
    worker.wait_for_log(breaker_change("open"), what="the breaker opening")
    # and the worker holds nothing while it is open: every order waits in its queue
    wait_until(lambda: broker.depth(work) == len(event_ids), message="every order given back to the queue")
    # and failed probes keep it open over several reset timeouts, without any order dead-lettered
    wait_until(lambda: worker.count(breaker_change("open", "half-open")) >= 3, message="three failed probes")
    assert broker.depth(dlq) == 0
    assert gateway.simulation.charges == 0

    # When the gateway answers again
    gateway.simulation.down = False
    # Then the breaker closes and every order is charged exactly once
    paid = spy.wait_for("payment.succeeded", count=len(event_ids), timeout=30)
    assert sorted(e["causationid"] for e in paid) == sorted(event_ids)
    Accounting(event_ids, spy=spy, broker=broker, dlqs=[dlq]).wait_all_accounted()
    assert gateway.simulation.charges == len(event_ids)
    worker.wait_for_log(breaker_change("closed"), what="the breaker closing")
    assert broker.depth(dlq) == 0
    assert broker.depth(work) == 0
    assert len(spy.of_type("payment.succeeded")) == len(event_ids)  # none paid twice
    # and each call that reached the gateway and failed (the one that opened the breaker and the failed
    # probes included) was one attempt of its order, while the calls refused by the open breaker were none
    order_of = {e["causationid"]: e["data"]["orderId"] for e in paid}
    attempts = Counter(order_of[r["event_id"]] for r in retries_of(worker))
    failed_calls = {order: calls - 1 for order, calls in gateway.simulation.calls.items()}  # less the charge
    assert +Counter(failed_calls) == attempts
    assert sum(attempts.values()) >= FAIL_MAX + 3  # the calls that opened it, and three failed probes
    for order in attempts:  # counted in order: 1, 2, ... for each order
        numbers = [r["attempt"] for r in retries_of(worker) if order_of[r["event_id"]] == order]
        assert numbers == list(range(1, len(numbers) + 1))


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_an_order_the_gateway_always_fails_is_dead_lettered_after_its_retries_though_it_trips_the_breaker(
        eda, broker, gateway, namespace, make_order, retry_queues_deleted, queue_type):
    # Given a payment worker whose breaker opens after 3 failures and probes after 2s, with three retries,
    # and a gateway that answers one order with 503 every time
    retry_queues_deleted([1000, 2000])
    order = make_order()
    gateway.simulation.fail_orders.add(order["orderId"])
    worker = eda.worker("payment", EDA_PAYMENT_GATEWAY_URL=gateway.url, EDA_RETRY_DELAYS="1s,1s,2s",
                        EDA_PAYMENT_BREAKER_FAIL_MAX=3, EDA_PAYMENT_BREAKER_RESET_TIMEOUT=2, EDA_QUEUE_TYPE=queue_type)
    spy = broker.spy("payment.*")
    dlq = f"{namespace}.payment.dlq"
    # When that order arrives, alone
    [event_id] = eda.publish("order-placed", order)
    # Then it is dead-lettered, its retries spent
    wait_until(lambda: broker.depth(dlq) == 1, timeout=40, message="the order dead-lettered")
    [dead] = broker.peek(dlq)
    assert dead.properties["message_id"] == event_id
    assert dead.headers["eda-retry-count"] == 3
    assert dead.headers["eda-exception-type"] == "GatewayError"
    assert "503" in dead.headers["eda-exception-message"]
    # after exactly four gateway calls: the third opened the breaker, the fourth was its failed probe
    assert gateway.simulation.calls[order["orderId"]] == 4
    assert [r["attempt"] for r in retries_of(worker)] == [1, 2, 3]
    assert worker.count(breaker_change("open", "closed")) == 1
    assert worker.count(breaker_change("open", "half-open")) == 1
    assert broker.depth(f"{namespace}.payment") == 0

    # When the gateway then gets an order it answers
    other = make_order()
    [other_id] = eda.publish("order-placed", other)
    # Then the same worker charges it once its breaker probes again
    [paid] = spy.wait_for("payment.succeeded", timeout=30)
    assert paid["causationid"] == other_id
    worker.wait_for_log(breaker_change("closed"), what="the breaker closing")
    assert gateway.simulation.charges == 1
    assert broker.depth(dlq) == 1


STYLES = {"threads": {}, "async": {"EDA_APP": "eda_shop.workers.payment_async"}}


@pytest.mark.parametrize("style", sorted(STYLES))
def test_a_run_of_4xx_answers_never_opens_the_breaker_and_a_run_of_5xx_answers_does(eda, broker, gateway, namespace,
                                                                                   make_order, style):
    # Given a payment worker of either style whose breaker opens after 3 failures in a row, and a gateway
    # that answers 422 (the request is wrong) to six orders
    worker = eda.worker("payment", EDA_PAYMENT_GATEWAY_URL=gateway.url, EDA_PAYMENT_BREAKER_FAIL_MAX=3, **STYLES[style])
    [consuming] = [r for r in worker.records if r.get("message") == "consuming"]
    assert consuming["handlers"] == style, consuming
    rejected = [make_order() for _ in range(6)]
    gateway.simulation.reject_orders.update(o["orderId"] for o in rejected)
    spy = broker.spy("payment.*")
    dlq = f"{namespace}.payment.dlq"
    # When those six orders arrive
    eda.publish("order-placed", *rejected)
    # Then each is dead-lettered at once, after one call, as permanent
    wait_until(lambda: broker.depth(dlq) == len(rejected), message="the rejected orders dead-lettered")
    dead = broker.peek(dlq)
    assert {d.headers["eda-exception-type"] for d in dead} == {"PermanentError"}
    assert all("gateway answered 422" in d.headers["eda-exception-message"] for d in dead)
    assert all(gateway.simulation.calls[o["orderId"]] == 1 for o in rejected)
    # and the breaker never opened: the next order is charged at once
    fine = make_order()
    eda.publish("order-placed", fine)
    [paid] = spy.wait_for("payment.succeeded", timeout=15)
    assert paid["data"]["orderId"] == fine["orderId"]
    assert worker.count(breaker_change("open")) == 0

    # When three orders in a row are answered 503
    failing = [make_order() for _ in range(3)]
    gateway.simulation.fail_orders.update(o["orderId"] for o in failing)
    eda.publish("order-placed", *failing)
    # Then the breaker opens
    worker.wait_for_log(breaker_change("open", "closed"), what="the breaker opening")
