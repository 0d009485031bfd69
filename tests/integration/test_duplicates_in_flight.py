"""Two copies of one event in flight: a worker that records the events it processed (shipping) ships
each id once, however close together the copies arrive, and acks every copy."""

import collections
import signal
import threading

import kombu
import pytest

from tests.support import cloud_event, reservation, wait_until

pytestmark = pytest.mark.integration

IDS = 200
CLOUDEVENTS = "application/cloudevents+json"


def reservations(n=IDS) -> list[tuple]:
    """``n`` distinct inventory.reserved events as (routing key, body, headers, properties)."""
    events = []
    for _ in range(n):
        body = cloud_event("inventory.reserved", reservation())
        events.append(("inventory.reserved", body, {},
                       {"message_id": body["id"], "type": "inventory.reserved", "content_type": CLOUDEVENTS}))
    return events


def twice_back_to_back(events) -> list[tuple]:
    return [copy for event in events for copy in (event, event)]


def publish_from_two_connections(broker, events) -> None:
    """Each of two connections publishes one copy of every event, both starting at the same moment."""
    start = threading.Barrier(2)
    errors = []

    def publisher():
        with kombu.Connection(broker.url) as conn:
            conn.connect()
            start.wait()
            try:
                broker.publish_all(events, conn=conn)
            except Exception as exc:  # reported below, in the test's thread
                errors.append(exc)

    threads = [threading.Thread(target=publisher) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors


def assert_each_shipped_once_and_every_copy_acked(eda, worker, broker, spy, namespace, events):
    """Every id shipped exactly once; once the worker stopped (SIGTERM: what it took is finished and
    acked, what it had not started is given back), no copy is left in any of its queues."""
    ids = {e[1]["id"] for e in events}
    spy.wait_for("order.shipped", count=len(ids), timeout=60, where=lambda e: e.get("causationid") in ids)
    wait_until(lambda: broker.depth(f"{namespace}.shipping") == 0, timeout=30, message="the shipping queue empty")
    # an event behind them all: once it is shipped, the worker has taken every copy
    [last] = reservations(1)
    broker.publish_all([last])
    spy.wait_for("order.shipped", where=lambda e: e.get("causationid") == last[1]["id"], timeout=30)
    worker.send(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.output
    shipped = collections.Counter(e.get("causationid") for e in spy.of_type("order.shipped"))
    twice = sorted(i for i, n in shipped.items() if n > 1)
    assert not twice, f"{len(twice)} of {len(ids)} ids shipped more than once: {twice[:5]}"
    assert set(shipped) == ids | {last[1]["id"]}
    # nothing was given back, retried or dead-lettered: every copy was acked
    for queue in (f"{namespace}.shipping", f"{namespace}.shipping.dlq", f"{namespace}.shipping.retry.200ms",
                  f"{namespace}.shipping.retry.400ms"):
        if broker.exists(queue):
            assert broker.depth(queue) == 0, queue


@pytest.mark.parametrize("concurrency", [1, 8])
def test_two_copies_back_to_back_on_one_channel_ship_once(eda, broker, namespace, concurrency):
    # Given a running shipping worker
    worker = eda.worker("shipping", EDA_CONCURRENCY=concurrency)
    spy = broker.spy("order.shipped")
    # When two copies of each of 200 events are published back to back on one channel
    events = reservations()
    broker.publish_all(twice_back_to_back(events))
    # Then each is shipped once and every copy acked
    assert_each_shipped_once_and_every_copy_acked(eda, worker, broker, spy, namespace, events)


def test_two_copies_from_two_connections_at_once_ship_once(eda, broker, namespace):
    # Given a running shipping worker
    worker = eda.worker("shipping", EDA_CONCURRENCY=8)
    spy = broker.spy("order.shipped")
    # When two connections each publish a copy of the same 200 events at the same time
    events = reservations()
    publish_from_two_connections(broker, events)
    # Then each is shipped once and every copy acked
    assert_each_shipped_once_and_every_copy_acked(eda, worker, broker, spy, namespace, events)


def test_two_copies_queued_before_the_worker_starts_ship_once(eda, broker, namespace):
    # Given the shipping queue declared, and two copies of each of 200 events waiting in it
    code, output = eda.run("topology", "declare")
    assert code == 0, output
    spy = broker.spy("order.shipped")
    events = reservations()
    broker.publish_all(twice_back_to_back(events))
    assert broker.depth(f"{namespace}.shipping") == 2 * IDS
    # When the worker starts
    worker = eda.worker("shipping", EDA_CONCURRENCY=8)
    # Then each is shipped once and every copy acked
    assert_each_shipped_once_and_every_copy_acked(eda, worker, broker, spy, namespace, events)


def test_two_copies_of_an_order_on_handler_threads_charge_it_once(eda, broker, gateway, namespace, make_order):
    # Given two copies of each of 100 orders waiting, and a payment worker on handler threads (HTTP gateway)
    code, output = eda.run("topology", "declare")
    assert code == 0, output
    spy = broker.spy("payment.*")
    orders = []
    for _ in range(100):
        body = cloud_event("order.placed", make_order())
        orders.append(("order.placed", body, {},
                       {"message_id": body["id"], "type": "order.placed", "content_type": CLOUDEVENTS}))
    broker.publish_all(twice_back_to_back(orders))
    gateway.simulation.latency = 0.02
    worker = eda.worker("payment", EDA_PAYMENT_GATEWAY_URL=gateway.url, EDA_CONCURRENCY=8)
    # When it has been through every copy
    ids = {o[1]["id"] for o in orders}
    spy.wait_for("payment.succeeded", count=len(ids), timeout=60, where=lambda e: e.get("causationid") in ids)
    wait_until(lambda: broker.depth(f"{namespace}.payment") == 0, timeout=30, message="the payment queue empty")
    last = cloud_event("order.placed", make_order())  # taken after every copy: once paid, all were started
    broker.publish("order.placed", last, message_id=last["id"], type="order.placed", content_type=CLOUDEVENTS)
    spy.wait_for("payment.succeeded", where=lambda e: e.get("causationid") == last["id"], timeout=30)
    ids.add(last["id"])
    worker.send(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.output
    # Then each order was charged once, every answer for one order names the same payment
    assert gateway.simulation.charges == len(ids)
    payments = collections.defaultdict(set)
    for e in spy.of_type("payment.succeeded"):
        payments[e["causationid"]].add(e["data"]["paymentId"])
    assert set(payments) == ids and all(len(p) == 1 for p in payments.values())
    # and every copy was acked: none left, none dead-lettered
    assert broker.depth(f"{namespace}.payment") == 0
    assert broker.depth(f"{namespace}.payment.dlq") == 0
