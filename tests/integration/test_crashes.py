"""Crashes, signals and redeliveries: whatever happens to a worker process, no order is lost and none
is charged twice or takes its stock twice."""

import signal
import threading
import time
import uuid

import amqp
import pytest

from eda import Middleware, Settings, running
from eda_shop.workers.shipping import Shipping
from tests.support import Accounting, cloud_event, handled, reservation, wait_until

pytestmark = pytest.mark.integration

WORKERS = ("payment", "inventory", "shipping")


def stocked(eda, worker, sku, quantity):
    """Publish stock and wait until inventory counted it, so orders find it."""
    [event_id] = eda.publish("stock-replenished", {"sku": sku, "quantity": quantity})
    worker.wait_for_log(lambda r: handled("stock.replenished")(r) and r.get("event_id") == event_id)


def test_kill_9_mid_batch_then_a_restart_processes_every_order_once(eda, broker, gateway, namespace, make_order):
    # Given the three workers in one process, a gateway taking 0.3s a charge (the batch lasts about 3s
    # with keep-alive connections: long enough to be killed in the middle of it), and exactly enough stock
    gateway.simulation.latency = 0.3
    env = {"EDA_PAYMENT_GATEWAY_URL": gateway.url, "EDA_CONCURRENCY": 4}
    worker = eda.worker(*WORKERS, **env)
    spy = broker.spy()
    orders = 40
    stocked(eda, worker, "SKU-K", orders)
    order_ids = eda.publish("order-placed", *(make_order(items=[("SKU-K", 1)]) for _ in range(orders)))
    # When the process is killed with SIGKILL in the middle of the batch
    spy.wait_for("payment.succeeded", count=8, timeout=30)
    worker.proc.kill()
    assert worker.wait() == -signal.SIGKILL
    assert len(spy.of_type("payment.succeeded")) < orders, "the batch was over before the kill"
    # and started again
    restarted = eda.worker(*WORKERS, **env)
    # Then every order is accounted for, paid, reserved and shipped
    Accounting(order_ids, spy=spy, broker=broker, dlqs=[f"{namespace}.payment.dlq"]).wait_all_accounted(60)
    order_of = {e["id"]: e for e in spy.of_type("order.placed")}
    expected = {order_of[i]["data"]["orderId"] for i in order_ids}
    # A redelivery may ship an order twice: wait for every order, not for a number of shipments.
    wait_until(lambda: {e["data"]["orderId"] for e in spy.of_type("order.shipped")} >= expected, timeout=60,
               message="every order shipped")
    assert {e["data"]["orderId"] for e in spy.of_type("order.shipped")} == expected
    # none charged twice
    assert gateway.simulation.charges == orders
    # and the stock taken exactly once per order: all reserved, none cancelled, the last one leaving 0
    assert spy.of_type("order.cancelled") == []
    reserved = {e["data"]["orderId"] for e in spy.of_type("inventory.reserved")}
    assert len(reserved) == orders
    assert {e["data"]["remaining"] for e in spy.of_type("inventory.depleted")} == {5, 4, 3, 2, 1, 0}
    for dlq in (f"{namespace}.{w}.dlq" for w in WORKERS):
        assert broker.depth(dlq) == 0
    assert restarted.proc.poll() is None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP (its terminal closed)"])
def test_a_stop_signal_mid_batch_finishes_running_handlers_and_exits_0(eda, broker, gateway, namespace, make_order,
                                                                       sig):
    # Given a payment worker busy with a batch on a slow gateway
    gateway.simulation.latency = 0.3
    env = {"EDA_PAYMENT_GATEWAY_URL": gateway.url, "EDA_CONCURRENCY": 4, "EDA_SHUTDOWN_TIMEOUT": 10}
    worker = eda.worker("payment", **env)
    spy = broker.spy("payment.*")
    order_ids = eda.publish("order-placed", *(make_order() for _ in range(20)))
    spy.wait_for("payment.succeeded", count=1, timeout=30)
    wait_until(lambda: gateway.simulation.in_flight > 0, message="charges under way")
    # When it gets the signal while charges are under way
    worker.send(sig)
    # Then it exits 0 after the running handlers finished and were acked
    assert worker.wait(timeout=10) == 0, worker.output
    worker.wait_for_log(lambda r: str(r.get("message", "")).startswith(f"{sig.name} received"))
    worker.wait_for_log(lambda r: str(r.get("message", "")).startswith("stopped"))
    # every charge it started was reported paid before it exited
    paid = {e["causationid"] for e in spy.of_type("payment.succeeded")}
    assert len(paid) < len(order_ids), "the batch was over before the signal"
    assert gateway.simulation.in_flight == 0
    assert gateway.simulation.charges == len(paid)
    # nothing it started is left unacked: what was paid is off the queue, the rest waits there
    wait_until(lambda: broker.depth(f"{namespace}.payment") == len(order_ids) - len(paid),
               message="the unpaid orders back in the queue")
    # And after a restart every order is paid exactly once
    eda.worker("payment", **env)
    Accounting(order_ids, spy=spy, broker=broker, dlqs=[f"{namespace}.payment.dlq"]).wait_all_accounted(30)
    assert len(spy.of_type("payment.succeeded")) == len(order_ids)
    assert gateway.simulation.charges == len(order_ids)


def stuck_worker(eda, broker, gateway, namespace, make_order, **env):
    """A payment worker whose handlers hang on a gateway that takes 30s to answer, with 4 orders taken."""
    gateway.simulation.latency = 30
    # The answers to these calls come after the worker is gone; the server need not report that.
    gateway.handle_error = lambda request, client_address: None
    worker = eda.worker("payment", EDA_PAYMENT_GATEWAY_URL=gateway.url, EDA_PAYMENT_GATEWAY_TIMEOUT=60,
                        EDA_CONCURRENCY=4, **env)
    order_ids = eda.publish("order-placed", *(make_order() for _ in range(4)))
    wait_until(lambda: gateway.simulation.in_flight == 4, message="four charges under way")
    return worker, order_ids


def finish_after_restart(eda, broker, gateway, namespace, order_ids):
    """Restart on a gateway that answers at once: every order is paid, none charged twice."""
    gateway.simulation.latency = 0
    spy = broker.spy("payment.*")
    eda.worker("payment", EDA_PAYMENT_GATEWAY_URL=gateway.url)
    paid = spy.wait_for("payment.succeeded", count=len(order_ids))
    assert sorted(e["causationid"] for e in paid) == sorted(order_ids)
    assert gateway.simulation.charges == len(order_ids)


def test_a_worker_started_with_nohup_keeps_running_through_sighup(eda):
    from tests.support import eda_command

    # Given a worker started as `nohup eda worker shipping` (SIGHUP ignored: its terminal may close)
    eda.command = ["nohup", *eda_command()]
    worker = eda.worker("shipping")
    # When SIGHUP comes
    worker.send(signal.SIGHUP)
    time.sleep(1)
    # Then it goes on consuming; SIGTERM still stops it
    assert worker.proc.poll() is None and not worker.count(lambda r: "SIGHUP" in str(r.get("message", "")))
    worker.send(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0


def test_a_second_signal_exits_at_once_and_loses_nothing(eda, broker, gateway, namespace, make_order):
    # Given handlers that will not finish for a long time, and a generous shutdown timeout
    worker, order_ids = stuck_worker(eda, broker, gateway, namespace, make_order, EDA_SHUTDOWN_TIMEOUT=120)
    # When SIGTERM begins a graceful stop and a second signal follows
    worker.send(signal.SIGTERM)
    worker.wait_for_log(lambda r: "SIGTERM received" in str(r.get("message", "")))
    worker.send(signal.SIGINT)
    # Then it exits non-zero without waiting for the handlers, acking none of them
    assert worker.wait(timeout=10) == 1
    worker.wait_for_log(lambda r: "second signal" in str(r.get("message", "")))
    wait_until(lambda: broker.depth(f"{namespace}.payment") == len(order_ids), message="the orders back in the queue")
    finish_after_restart(eda, broker, gateway, namespace, order_ids)


def test_the_shutdown_timeout_exits_non_zero_and_loses_nothing(eda, broker, gateway, namespace, make_order):
    worker, order_ids = stuck_worker(eda, broker, gateway, namespace, make_order, EDA_SHUTDOWN_TIMEOUT=1)
    worker.send(signal.SIGTERM)
    assert worker.wait(timeout=15) == 1
    worker.wait_for_log(lambda r: "shutdown timeout" in str(r.get("message", "")))
    wait_until(lambda: broker.depth(f"{namespace}.payment") == len(order_ids), message="the orders back in the queue")
    finish_after_restart(eda, broker, gateway, namespace, order_ids)


def test_events_finished_during_the_stop_behind_a_stuck_one_are_acked_before_the_shutdown_timeout_exit(
        eda, broker, namespace, app_queues, tmp_path):
    # Given a worker at concurrency 4 running one chore that is stuck and three that take a second
    app_queues("chores")
    record, started, app = tmp_path / "record", tmp_path / "started", {"EDA_APP": "tests.integration.processes_app"}
    worker = eda.worker("chores", CHORES_RECORD=record, CHORES_STARTED=started, CHORES_SLEEP=1.5, CHORES_SLOW=60,
                        EDA_CONCURRENCY=4, EDA_SHUTDOWN_TIMEOUT=4, **app)
    [stuck] = eda.publish("chore-requested", {"choreId": "slow-1"}, **app)
    done = eda.publish("chore-requested", *({"choreId": f"quick-{i}"} for i in range(3)), **app)
    wait_until(lambda: started.exists() and len(started.read_text().splitlines()) == 4, message="four chores started")
    # When SIGTERM stops the worker: the three finish during the stop, the stuck one never does
    worker.send(signal.SIGTERM)
    assert worker.wait(timeout=15) == 1
    assert len(record.read_text().splitlines()) == 3
    # Then only the stuck chore goes back to the queue: the three done were acked, not to be done again
    [back] = broker.peek(f"{namespace}.chores")
    assert back.properties["message_id"] == stuck and stuck not in done


def test_the_same_order_placed_twice_is_charged_once(eda, broker, gateway, make_order):
    # Given a payment worker that has charged an order
    env = {"EDA_PAYMENT_GATEWAY_URL": gateway.url}
    worker = eda.worker("payment", **env)
    spy = broker.spy("payment.*")
    event_id = str(uuid.uuid4())
    body = {"specversion": "1.0", "id": event_id, "source": "other-shop", "type": "order.placed",
            "datacontenttype": "application/json", "data": make_order()}
    broker.publish("order.placed", body, message_id=event_id)
    [first] = spy.wait_for("payment.succeeded")
    # When the same event arrives again, after the worker was killed and restarted
    worker.proc.kill()
    worker.wait()
    eda.worker("payment", **env)
    broker.publish("order.placed", body, message_id=event_id)
    # Then it answers with the recorded payment and charges nothing more
    paid = spy.wait_for("payment.succeeded", count=2)
    assert {e["data"]["paymentId"] for e in paid} == {first["data"]["paymentId"]}
    assert gateway.simulation.charges == 1


def test_the_same_payment_succeeded_twice_reserves_stock_once(eda, broker, make_order):
    # Given stock of 3, and a paid order of 2
    worker = eda.worker("inventory")
    spy = broker.spy()
    stocked(eda, worker, "SKU-R", 3)
    event_id = str(uuid.uuid4())
    body = {"specversion": "1.0", "id": event_id, "source": "payment-elsewhere", "type": "payment.succeeded",
            "datacontenttype": "application/json",
            "data": {"orderId": "ord-r", "paymentId": "pay-1", "amount": "20.00", "currency": "USD",
                     "items": [{"sku": "SKU-R", "quantity": 2}]}}
    # When the payment arrives twice
    broker.publish("payment.succeeded", body, message_id=event_id)
    broker.publish("payment.succeeded", body, message_id=event_id)
    # Then both answers are the one reservation: 1 left, nothing cancelled for lack of stock
    spy.wait_for("inventory.reserved", count=2)
    worker.wait_for_log(lambda r: handled("payment.succeeded")(r), what="both handled")
    assert [e["data"]["remaining"] for e in spy.wait_for("inventory.depleted", count=2)] == [1, 1]
    assert spy.of_type("order.cancelled") == []


def test_the_same_inventory_reserved_twice_is_shipped_once(eda, broker):
    # Given a shipping worker (no idempotency of its own: the runtime keeps its record of processed events)
    worker = eda.worker("shipping")
    spy = broker.spy("order.shipped")
    event_id = str(uuid.uuid4())
    body = {"specversion": "1.0", "id": event_id, "source": "inventory-elsewhere", "type": "inventory.reserved",
            "datacontenttype": "application/json",
            "data": {"orderId": "ord-s", "items": [{"sku": "SKU-S", "quantity": 1}]}}
    broker.publish("inventory.reserved", body, message_id=event_id)
    spy.wait_for("order.shipped")
    # When it stops, starts again and the same event arrives once more
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0
    again = eda.worker("shipping")
    broker.publish("inventory.reserved", body, message_id=event_id)
    # Then it is recognised and acked without shipping the order a second time
    again.wait_for_log(lambda r: str(r.get("message", "")).startswith("already processed")
                       and r.get("event_id") == event_id)
    assert len(spy.of_type("order.shipped")) == 1
    assert not any(handled()(r) for r in again.records)
    wait_until(lambda: broker.depth(f"{broker.namespace}.shipping") == 0, message="the duplicate acked")


class StopRightAfterPublishing(Middleware):
    """Stops the worker from its I/O thread right after a reaction is written, its confirm still to come."""

    def __init__(self):
        self.runner = None
        self.stopped = threading.Event()

    def on_ready(self, runner):
        self.runner = runner

    def publish(self, message, call_next):
        result = call_next(message)
        self.runner.stop()
        self.stopped.set()
        return result


def test_a_stop_while_a_reactions_confirm_is_on_its_way_still_acks_the_event(broker, broker_url, namespace, tmp_path,
                                                                             monkeypatch):
    # Given shipping run in this process, told to stop as soon as it has written its reaction, and a
    # basic.cancel that waits until the reaction's confirm has reached the socket: the stop's cancel then
    # reads the confirm while it waits for its answer, outside a turn of the I/O loop (seen in CI as a race)
    cancel = amqp.Channel.basic_cancel

    def late_cancel(channel, *args, **kwargs):
        time.sleep(0.3)
        return cancel(channel, *args, **kwargs)

    monkeypatch.setattr(amqp.Channel, "basic_cancel", late_cancel)
    stopper = StopRightAfterPublishing()
    settings = Settings(broker_url=broker_url, namespace=namespace, state_dir=tmp_path)
    spy = broker.spy("order.shipped")
    with running(Shipping, settings=settings, middleware=[stopper]):
        # When a reservation arrives
        event = cloud_event("inventory.reserved", reservation())
        broker.publish("inventory.reserved", event, message_id=event["id"], type="inventory.reserved",
                       content_type="application/cloudevents+json")
        assert stopper.stopped.wait(15)
    # Then the order is shipped, and the reservation was acked before the connection closed: none is left
    spy.wait_for("order.shipped", where=lambda e: e.get("causationid") == event["id"])
    assert broker.depth(f"{namespace}.shipping") == 0
