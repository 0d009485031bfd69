"""The shop's order saga under `eda worker` on RabbitMQ and PostgreSQL: three instances through a SIGKILL,
duplicates and reordered events, and a payment timeout that falls due while the saga is down. What is
asserted is what a user sees: the saga's table, the events on the wire, the gateway's charges."""

import json
import signal
import uuid
from collections import Counter, defaultdict

import pytest

from tests import pg
from tests.support import cloud_event, handled, wait_until

pytestmark = pytest.mark.integration


def instances(database, namespace) -> dict[str, tuple]:
    """The order saga's instances: order id -> (state, version, completed)."""
    rows = pg.query(database, f'SELECT key, state, version, completed_at IS NOT NULL FROM "{namespace}".saga_instances '
                              "WHERE saga = 'order-saga'")
    return {key: (state, version, done) for key, state, version, done in rows}


def applied(database, namespace) -> dict[str, list[str]]:
    """Order id -> the types of the events applied to its instance, in order."""
    rows = pg.query(database, f'SELECT key, event_type FROM "{namespace}".saga_applied WHERE saga = \'order-saga\' '
                              "ORDER BY applied_at")
    found = defaultdict(list)
    for key, event_type in rows:
        found[key].append(event_type)
    return found


def orders(count, prefix) -> list[dict]:
    return [{"orderId": f"{prefix}-{i:03}", "userId": f"u-{i % 7}", "totalAmount": "10.00",
             "items": [{"sku": "SKU-1", "quantity": 1, "unitPrice": "10.00"}]} for i in range(count)]


@pytest.fixture
def shop_env(env, database):
    """Every process on one PostgreSQL: the workers' state, the saga's instances and the outbox."""
    env.update(EDA_DATABASE_URL=database, EDA_LOG_LEVEL="INFO")
    return env


def relay(eda):
    proc = eda.start("outbox", "relay")
    proc.wait_for_log(lambda r: str(r.get("message", "")).startswith("relaying the outbox"), what="the relay started")
    return proc


def test_three_saga_instances_through_a_sigkill_end_every_order_once(eda, broker, namespace, database, shop_env,
                                                                     gateway):
    # Given the shop (payment on a gateway that never answers for some orders), three instances of the
    # order saga with a 4 s payment timeout, and the outbox relay, all on PostgreSQL
    placed = orders(60, f"o{uuid.uuid4().hex[:4]}")
    unanswered = {o["orderId"] for o in placed[:10]}
    gateway.simulation.fail_orders.update(unanswered)
    spy = broker.spy()
    shop = eda.worker("payment", "inventory", "shipping", EDA_PAYMENT_GATEWAY_URL=gateway.url,
                      EDA_PAYMENT_BREAKER_FAIL_MAX=10_000, EDA_RETRY_DELAYS=",".join(["1s"] * 30))
    sagas = [eda.worker("order-saga", EDA_ORDER_SAGA_PAYMENT_TIMEOUT=4, EDA_CONCURRENCY=4) for _ in range(3)]
    relay(eda)
    eda.publish("stock-replenished", {"sku": "SKU-1", "quantity": 40})
    # When 60 orders are placed: 10 the gateway never answers, 40 in stock, 10 short
    eda.publish("order-placed", *placed)
    # and the instance holding the partitions is killed once some orders have their saga
    first = sagas[0]
    wait_until(lambda: len(instances(database, namespace)) >= 15, timeout=120, message="15 sagas started")
    first.send(signal.SIGKILL)
    assert first.wait(30) == -signal.SIGKILL
    # Then every order's saga ends, in the state its events led to
    wait_until(lambda: sum(done for _, _, done in instances(database, namespace).values()) == 60, timeout=240,
               interval=0.5, message="every order's saga completed")
    found = instances(database, namespace)
    statuses = Counter(state["status"] for state, _, _ in found.values())
    assert statuses == {"shipped": 40, "refunded": 10, "cancelled": 10}, statuses
    for order_id in unanswered:
        state, _, _ = found[order_id]
        assert (state["status"], state["cancel_reason"], state["paid"]) == ("cancelled", "payment_timeout", False)
    # and exactly once: each instance's version is the number of events applied to it, each event once
    events = applied(database, namespace)
    for order_id, (state, version, _) in found.items():
        assert version == len(events[order_id]), (order_id, version, events[order_id])
    # The wire: one order.cancelled (one id) per unanswered order, none charged, none reserved
    cancelled = defaultdict(set)
    for event in spy.of_type("order.cancelled"):
        if event["data"]["reason"] == "payment_timeout":
            cancelled[event["data"]["orderId"]].add(event["id"])
    assert set(cancelled) == unanswered and all(len(ids) == 1 for ids in cancelled.values()), dict(cancelled)
    charged = {e["data"]["orderId"] for e in spy.of_type("payment.succeeded")}
    assert not charged & unanswered
    assert not {e["data"]["orderId"] for e in spy.of_type("inventory.reserved")} & unanswered
    failed = {e["data"]["orderId"]: e["data"]["reason"] for e in spy.of_type("payment.failed")}
    assert failed == {o: "cancelled" for o in unanswered}
    # and the other instances took over from the one killed, nothing dead-lettered
    assert any(handled(worker="order-saga")(r) for r in sagas[1].records + sagas[2].records)
    assert broker.depth(f"{namespace}.order-saga.dlq") == 0
    assert shop.proc.poll() is None


def test_duplicates_and_reordered_events_end_the_order_shipped_each_applied_once(eda, broker, namespace, database,
                                                                                 shop_env):
    # Given two instances of the order saga alone
    sagas = [eda.worker("order-saga", EDA_CONCURRENCY=2) for _ in range(2)]
    order_id, flow = f"o-{uuid.uuid4().hex[:6]}", f"flow-{uuid.uuid4().hex[:6]}"
    items = [{"sku": "SKU-1", "quantity": 1}]
    placed = cloud_event("order.placed", {"orderId": order_id, "userId": "u-1", "totalAmount": "10.00",
                                          "items": items}, correlationid=flow)
    reserved = cloud_event("inventory.reserved", {"orderId": order_id, "items": items}, correlationid=flow)
    paid = cloud_event("payment.succeeded", {"orderId": order_id, "paymentId": "p-1", "amount": "10.00",
                                             "userId": "u-1", "items": items}, correlationid=flow)
    shipped = cloud_event("order.shipped", {"orderId": order_id, "trackingNumber": "1Z1", "carrier": "UPS"},
                          correlationid=flow)
    # When another client publishes the order's events twice each (same ids), the reservation before the payment
    for event in (placed, placed, reserved, paid, reserved, paid, shipped, shipped):
        broker.publish(event["type"], event, message_id=event["id"], type=event["type"], correlation_id=flow,
                       content_type="application/cloudevents+json")
    # Then the saga ends the order shipped, having applied each event once, in the order published
    wait_until(lambda: instances(database, namespace).get(order_id, (None, None, False))[2], timeout=60,
               message="the order's saga completed")
    state, version, _ = instances(database, namespace)[order_id]
    assert state["status"] == "shipped" and state["paid"] and state["reserved"] and state["shipped"]
    assert version == 4
    assert applied(database, namespace)[order_id] == ["order.placed", "inventory.reserved", "payment.succeeded",
                                                      "order.shipped"]
    repeated = [r for s in sagas for r in s.records if r.get("message") == "already applied: its recorded reactions "
                                                                                 "go out again"]
    ignored = [r for s in sagas for r in s.records if str(r.get("message", "")).startswith("ignored: completed")]
    assert len(repeated) + len(ignored) == 4, [r.get("message") for s in sagas for r in s.records]
    assert broker.depth(f"{namespace}.order-saga.dlq") == 0
    # and eda saga reads it from PostgreSQL: no live instance, the completed one with its four events
    code, output = eda.run("saga", "list", "order-saga")
    assert code == 0 and output.startswith("no live instances of saga order-saga in 127.0.0.1:5432/"), output
    code, output = eda.run("saga", "show", "order-saga", order_id, "--json")
    shown = json.loads(output)
    assert shown["state"]["status"] == "shipped" and shown["version"] == 4
    assert [a["event_type"] for a in shown["applied"]] == ["order.placed", "inventory.reserved", "payment.succeeded",
                                                           "order.shipped"]


def test_a_timeout_falling_due_while_the_saga_is_down_cancels_and_refunds_the_order(eda, broker, namespace, database,
                                                                                    shop_env):
    # Given the order saga (3 s payment timeout), the relay, inventory and shipping; no payment worker yet,
    # its queue declared
    code, output = eda.run("topology", "declare")
    assert code == 0, output
    spy = broker.spy()
    saga = eda.worker("order-saga", EDA_ORDER_SAGA_PAYMENT_TIMEOUT=3)
    relay_proc = relay(eda)
    eda.worker("inventory", "shipping")
    eda.publish("stock-replenished", {"sku": "SKU-1", "quantity": 5})
    order_id = f"o-{uuid.uuid4().hex[:6]}"
    [placed_id] = eda.publish("order-placed", *orders(1, order_id))
    order_id = f"{order_id}-000"
    wait_until(lambda: order_id in instances(database, namespace), timeout=30, message="the order's saga started")
    # When the saga stops, and its timeout falls due and is published meanwhile
    saga.send(signal.SIGTERM)
    assert saga.wait(30) == 0
    spy.wait_for("order.payment-expired", timeout=30)
    assert sum(broker.depth(f"{namespace}.order-saga.p{i}") for i in range(8)) == 1
    # and the saga starts again
    eda.worker("order-saga", EDA_ORDER_SAGA_PAYMENT_TIMEOUT=3)
    # Then it cancels the order
    [cancelled] = spy.wait_for("order.cancelled", timeout=30)
    assert cancelled["data"] == {"orderId": order_id, "reason": "payment_timeout", "userId": "u-0"}
    assert cancelled["correlationid"] == placed_id  # the order's flow
    # When payment starts at last: it finds the order, then its cancellation, in its queue, and takes them
    # one at a time (at a higher concurrency the cancellation may be handled first: then nothing is charged)
    eda.worker("payment", EDA_CONCURRENCY=1)
    # Then the charge that lands is refunded, nothing is reserved or shipped, and the saga ends refunded
    spy.wait_for("payment.refunded", timeout=60)
    wait_until(lambda: instances(database, namespace)[order_id][2], timeout=30, message="the order's saga completed")
    state, _, _ = instances(database, namespace)[order_id]
    assert (state["status"], state["cancel_reason"], state["paid"]) == ("refunded", "payment_timeout", True)
    assert spy.of_type("inventory.reserved") == [] and spy.of_type("order.shipped") == []
    assert len({e["id"] for e in spy.of_type("order.cancelled")}) == 1
    assert relay_proc.proc.poll() is None
