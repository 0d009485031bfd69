"""The Producer API an application publishes with: validated, confirmed, shareable between threads."""

import subprocess
import sys
import threading

import pytest

from eda import ContractError, Producer, Settings
from eda.contracts.building import python_event
from eda.contracts.registry import get
from eda.errors import Unroutable

pytestmark = pytest.mark.integration


def python(order: dict) -> dict:
    """An order as Python code publishes it: snake_case keys (the wire form loaded by its contract)."""
    return get("order-placed").load(order)


@pytest.fixture
def producer(broker_url, namespace, eda):
    assert eda.run("topology", "declare")[0] == 0
    with Producer(Settings(broker_url=broker_url, namespace=namespace), source="shop/web") as p:
        yield p


def test_publish_returns_the_confirmed_event_which_is_on_the_wire(producer, broker, namespace, make_order):
    spy = broker.spy("order.*")
    event = producer.publish("order-placed", python(make_order(amount=12.5)), correlation_id="checkout-7")
    wire = spy.wait_for("order.placed")[0]
    assert wire["id"] == event.id and wire["source"] == "shop/web" and wire["correlationid"] == "checkout-7"
    assert wire["data"]["totalAmount"] == "12.50"
    assert broker.depth(f"{namespace}.payment") == 1


def test_invalid_data_raises_and_sends_nothing(producer, broker, namespace, make_order):
    bad = python(make_order())
    bad["items"] = []
    with pytest.raises(ContractError, match="items"):
        producer.publish("order-placed", bad)
    assert broker.depth(f"{namespace}.payment") == 0


def test_an_event_no_queue_takes_raises_unroutable(producer):
    # inventory.depleted is the shop's one event no worker consumes (a notice for people, not workers)
    with pytest.raises(Unroutable, match="routed to no queue"):
        producer.publish("inventory-depleted", {"sku": "SKU-1", "remaining": 0})


@pytest.mark.parametrize("raised", [BrokenPipeError(32, "Broken pipe"), ValueError("the caller's own")])
def test_an_on_confirmed_that_raises_gets_its_own_error_back_and_nothing_is_sent_twice(producer, broker, namespace,
                                                                                       make_order, raised):
    # Given an on_confirmed that fails at the second confirm (a closed pipe it prints to, say)
    seen = []

    def on_confirmed(event):
        seen.append(event.id)
        if len(seen) == 2:
            raise raised

    # When 10 orders are published
    orders = [python_event("order-placed", python(make_order()), "shop/web")[0] for _ in range(10)]
    with pytest.raises(type(raised)) as came:
        producer.publish_events(orders, on_confirmed=on_confirmed)
    # Then the caller's own error comes back as it is, and no order was sent twice (not taken for a lost connection)
    assert came.value is raised
    published = broker.depth(f"{namespace}.payment")
    assert 2 <= published <= 10 and len(seen) == 2


def test_threads_can_share_one_producer(producer, broker, namespace, make_order):
    def publish_some():
        for _ in range(20):
            producer.publish("order-placed", python(make_order()))

    threads = [threading.Thread(target=publish_some) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert broker.depth(f"{namespace}.payment") == 80


def test_wire_keys_are_an_error_naming_the_python_key(producer, broker, namespace, make_order):
    with pytest.raises(ContractError, match=r"unknown field 'orderId' \(did you mean 'order_id'\?\)"):
        producer.publish("order-placed", make_order())
    assert broker.depth(f"{namespace}.payment") == 0


def test_the_shops_order_producer_places_a_confirmed_order(producer, broker, env):
    spy = broker.spy("order.*")
    run = subprocess.run([sys.executable, "-m", "eda_shop.producers.orders", "u-1", "WIDGET:2:19.99", "GADGET:1:5"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    [placed] = spy.wait_for("order.placed")
    assert placed["data"]["orderId"] == run.stdout.strip() and placed["data"]["totalAmount"] == "44.98"
    assert placed["source"] == "shop/web"
