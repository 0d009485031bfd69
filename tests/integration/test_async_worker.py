"""A worker with `async def` handlers (the shop's payment, `--app workers.payment_async`) in real `eda worker`
processes: many calls in flight on one event loop, retries, dead letters, the breaker, SIGTERM mid-batch
and kill -9, with the same guarantees as a worker on handler threads."""

import signal
from collections import Counter

import pytest

from tests.support import Accounting, handled, wait_until

pytestmark = pytest.mark.integration

ASYNC = {"EDA_APP": "eda_shop.workers.payment_async"}  # the async payment worker wins over the installed one


def async_payment(eda, gateway, **env):
    """`eda worker payment` with the async variant, on the test's gateway; checks it runs coroutines."""
    worker = eda.worker("payment", EDA_PAYMENT_GATEWAY_URL=gateway.url, **ASYNC, **env)
    [consuming] = [r for r in worker.records if r.get("message") == "consuming"]
    assert consuming["handlers"] == "async", consuming
    return worker


def message(prefix):
    return lambda r: str(r.get("message", "")).startswith(prefix)


def breaker_change(new_state, old_state=None):
    def match(r):
        text = str(r.get("message", ""))
        return ("circuit breaker" in text and text.endswith(f"-> {new_state}")
                and (old_state is None or text.endswith(f" {old_state} -> {new_state}")))
    return match


def test_hundreds_of_charges_wait_on_the_gateway_at_once_on_one_event_loop(eda, broker, gateway, namespace,
                                                                           make_order):
    # Given the async payment worker at concurrency 256 and a gateway taking 1s per answer
    gateway.simulation.latency = 1.0
    worker = async_payment(eda, gateway, EDA_CONCURRENCY=256)
    spy = broker.spy("payment.*")
    # When 300 orders arrive
    order_ids = eda.publish("order-placed", *(make_order() for _ in range(300)))
    # Then 256 calls wait on the gateway at the same time, never more
    wait_until(lambda: gateway.simulation.peak_in_flight >= 256, timeout=60, message="256 charges in flight")
    paid = spy.wait_for("payment.succeeded", count=len(order_ids), timeout=60)
    assert gateway.simulation.peak_in_flight == 256
    # and every order is paid once, its event acked
    assert sorted(e["causationid"] for e in paid) == sorted(order_ids)
    assert gateway.simulation.charges == len(order_ids)
    wait_until(lambda: broker.depth(f"{namespace}.payment") == 0, message="every order acked")
    assert worker.count(handled("order.placed")) == len(order_ids)


def test_failed_calls_are_retried_then_dead_lettered_with_their_reason(eda, broker, gateway, namespace, make_order):
    # Given the async worker, a breaker that tolerates failures, a gateway failing one order every time
    # and down for the others until the test says so
    doomed = make_order()
    gateway.simulation.fail_orders.add(doomed["orderId"])
    gateway.simulation.down = True
    worker = async_payment(eda, gateway, EDA_PAYMENT_BREAKER_FAIL_MAX=1000, EDA_RETRY_DELAYS="200ms,200ms,400ms",
                           EDA_CONCURRENCY=8)
    spy = broker.spy("payment.*")
    dlq = f"{namespace}.payment.dlq"
    # When orders arrive, fail twice, and the gateway comes back
    [doomed_id, *order_ids] = eda.publish("order-placed", doomed, *(make_order() for _ in range(5)))
    wait_until(lambda: all(len([r for r in worker.records if message("failed; retrying")(r)
                                and r.get("event_id") == i]) >= 2 for i in order_ids),
               timeout=30, message="two failed attempts of each order")
    gateway.simulation.down = False
    # Then the others are charged once each by a later attempt
    paid = spy.wait_for("payment.succeeded", count=len(order_ids), timeout=30)
    assert sorted(e["causationid"] for e in paid) == sorted(order_ids)
    # and the one the gateway always fails is dead-lettered after its three retries, with the reason
    wait_until(lambda: broker.depth(dlq) == 1, timeout=30, message="the failing order dead-lettered")
    [dead] = broker.peek(dlq)
    assert dead.properties["message_id"] == doomed_id
    assert dead.headers["eda-retry-count"] == 3
    assert dead.headers["eda-exception-type"] == "GatewayError"
    assert "503" in dead.headers["eda-exception-message"]
    attempts = [r["attempt"] for r in worker.records if r.get("event_id") == doomed_id
                and (message("failed; retrying")(r) or message("dead-lettered")(r))]
    assert attempts == [1, 2, 3, 4]
    assert gateway.simulation.calls[doomed["orderId"]] == 4
    assert gateway.simulation.charges == len(order_ids)
    wait_until(lambda: broker.depth(f"{namespace}.payment") == 0, message="the queue emptied")


def test_an_outage_opens_the_breaker_and_every_order_is_charged_once_after_it(eda, broker, gateway, namespace,
                                                                              make_order):
    # Given the async worker whose breaker opens after 3 failures and probes again after 1s
    gateway.simulation.down = True
    worker = async_payment(eda, gateway, EDA_PAYMENT_BREAKER_FAIL_MAX=3, EDA_PAYMENT_BREAKER_RESET_TIMEOUT=1, EDA_CONCURRENCY=16,
                           EDA_RETRY_DELAYS="200ms,200ms,200ms,400ms,400ms,400ms")
    spy = broker.spy("payment.*")
    work, dlq = f"{namespace}.payment", f"{namespace}.payment.dlq"
    # When orders arrive while the gateway is down
    event_ids = eda.publish("order-placed", *(make_order() for _ in range(20)))
    # Then the breaker opens and the worker gives every order back while it stays open
    worker.wait_for_log(breaker_change("open"), what="the breaker opening")
    wait_until(lambda: broker.depth(work) == len(event_ids), message="every order given back to the queue")
    wait_until(lambda: worker.count(breaker_change("open", "half-open")) >= 2, message="two failed probes")
    assert broker.depth(dlq) == 0 and gateway.simulation.charges == 0
    # When the gateway answers again
    gateway.simulation.down = False
    # Then the probe closes the breaker and every order is charged exactly once
    paid = spy.wait_for("payment.succeeded", count=len(event_ids), timeout=30)
    assert sorted(e["causationid"] for e in paid) == sorted(event_ids)
    worker.wait_for_log(breaker_change("closed", "half-open"), what="the breaker closing")
    Accounting(event_ids, spy=spy, broker=broker, dlqs=[dlq]).wait_all_accounted()
    assert gateway.simulation.charges == len(event_ids)
    assert broker.depth(dlq) == 0
    # and each call that reached the gateway and failed was one attempt of its order; refused calls none
    order_of = {e["causationid"]: e["data"]["orderId"] for e in paid}
    attempts = Counter(order_of[r["event_id"]] for r in worker.records if message("failed; retrying")(r))
    failed_calls = {order: calls - 1 for order, calls in gateway.simulation.calls.items()}
    assert +Counter(failed_calls) == attempts


def test_sigterm_mid_batch_finishes_every_started_coroutine_and_exits_0(eda, broker, gateway, namespace,
                                                                        make_order):
    # Given the async worker busy with many charges at once on a slow gateway
    gateway.simulation.latency = 0.5
    env = {"EDA_CONCURRENCY": 32, "EDA_SHUTDOWN_TIMEOUT": 20}
    worker = async_payment(eda, gateway, **env)
    spy = broker.spy("payment.*")
    order_ids = eda.publish("order-placed", *(make_order() for _ in range(200)))
    spy.wait_for("payment.succeeded", count=1, timeout=30)
    wait_until(lambda: gateway.simulation.in_flight >= 16, message="charges under way")
    # When it gets SIGTERM while they are
    worker.send(signal.SIGTERM)
    # Then it exits 0 once every started charge finished, was reported and acked
    assert worker.wait(timeout=30) == 0, worker.output
    assert worker.count(message("stopped: every running handler finished")) == 1
    assert gateway.simulation.in_flight == 0
    paid = {e["causationid"] for e in spy.wait_for("payment.succeeded", count=gateway.simulation.charges)}
    assert 0 < len(paid) < len(order_ids), "the batch was over before the signal"
    assert gateway.simulation.charges == len(paid)
    wait_until(lambda: broker.depth(f"{namespace}.payment") == len(order_ids) - len(paid),
               message="the unpaid orders back in the queue")
    # And after a restart every order is paid exactly once
    async_payment(eda, gateway, **env)
    Accounting(order_ids, spy=spy, broker=broker, dlqs=[f"{namespace}.payment.dlq"]).wait_all_accounted(60)
    assert len(spy.of_type("payment.succeeded")) == len(order_ids)
    assert gateway.simulation.charges == len(order_ids)


def test_coroutines_past_the_shutdown_timeout_are_redelivered_and_charged_once(eda, broker, gateway, namespace,
                                                                               make_order):
    # Given the async worker with 20 charges hanging on a gateway that takes 30s to answer
    gateway.simulation.latency = 30
    worker = async_payment(eda, gateway, EDA_CONCURRENCY=20, EDA_PAYMENT_GATEWAY_TIMEOUT=60, EDA_SHUTDOWN_TIMEOUT=1)
    order_ids = eda.publish("order-placed", *(make_order() for _ in range(20)))
    wait_until(lambda: gateway.simulation.in_flight == 20, message="twenty charges under way")
    # When SIGTERM's graceful stop runs out of time
    worker.send(signal.SIGTERM)
    # Then the worker exits 1 without acking any of them: all are back in the queue
    assert worker.wait(timeout=15) == 1
    assert worker.count(message("shutdown timeout")) == 1
    wait_until(lambda: broker.depth(f"{namespace}.payment") == len(order_ids), message="the orders back in the queue")
    # And a restart on a gateway answering at once pays each exactly once (the gateway's idempotency key
    # turns the late answers of the first calls and the new calls into one charge per order)
    gateway.simulation.latency = 0
    spy = broker.spy("payment.*")
    async_payment(eda, gateway)
    paid = spy.wait_for("payment.succeeded", count=len(order_ids), timeout=30)
    assert sorted(e["causationid"] for e in paid) == sorted(order_ids)
    assert gateway.simulation.charges == len(order_ids)


def test_kill_9_mid_batch_loses_nothing_and_charges_nothing_twice(eda, broker, gateway, namespace, make_order):
    # Given the async worker charging a batch at concurrency 16 on a gateway taking 50ms a charge
    gateway.simulation.latency = 0.05
    env = {"EDA_CONCURRENCY": 16}
    worker = async_payment(eda, gateway, **env)
    spy = broker.spy("payment.*")
    order_ids = eda.publish("order-placed", *(make_order() for _ in range(300)))
    # When the process is killed with SIGKILL in the middle of the batch
    spy.wait_for("payment.succeeded", count=20, timeout=30)
    worker.proc.kill()
    assert worker.wait() == -signal.SIGKILL
    assert len(spy.of_type("payment.succeeded")) < len(order_ids), "the batch was over before the kill"
    # and started again
    async_payment(eda, gateway, **env)
    # Then every order gets its payment, and none is charged twice
    Accounting(order_ids, spy=spy, broker=broker, dlqs=[f"{namespace}.payment.dlq"]).wait_all_accounted(90)
    assert gateway.simulation.charges == len(order_ids)
    paid = spy.of_type("payment.succeeded")
    assert {e["causationid"] for e in paid} == set(order_ids)
    # a redelivered order answers with its recorded payment: the same payment id if it went out twice
    ids_of = {}
    for e in paid:
        ids_of.setdefault(e["data"]["orderId"], set()).add(e["data"]["paymentId"])
    assert all(len(ids) == 1 for ids in ids_of.values())
    assert broker.depth(f"{namespace}.payment.dlq") == 0
