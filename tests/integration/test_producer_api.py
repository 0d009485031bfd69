"""The Producer API an application publishes with: validated, confirmed, shareable between threads."""

import threading

import pytest

from eda.errors import ContractError, Unroutable
from eda.settings import Settings
from eda.publishing.producer import Producer

pytestmark = pytest.mark.integration


@pytest.fixture
def producer(broker_url, namespace, eda):
    assert eda.run("topology", "declare")[0] == 0
    with Producer(Settings(broker_url=broker_url, namespace=namespace), source="shop/web") as p:
        yield p


def test_publish_returns_the_confirmed_event_which_is_on_the_wire(producer, broker, namespace, make_order):
    spy = broker.spy("order.*")
    event = producer.publish("order-placed", make_order(amount=12.5), correlation_id="checkout-7")
    wire = spy.wait_for("order.placed")[0]
    assert wire["id"] == event.id and wire["source"] == "shop/web" and wire["correlationid"] == "checkout-7"
    assert wire["data"]["totalAmount"] == "12.50"
    assert broker.depth(f"{namespace}.payment") == 1


def test_invalid_data_raises_and_sends_nothing(producer, broker, namespace, make_order):
    bad = make_order()
    bad["items"] = []
    with pytest.raises(ContractError, match="items"):
        producer.publish("order-placed", bad)
    assert broker.depth(f"{namespace}.payment") == 0


def test_an_event_no_queue_takes_raises_unroutable(producer):
    with pytest.raises(Unroutable, match="routed to no queue"):
        producer.publish("order-shipped", {"orderId": "1", "trackingNumber": "T", "carrier": "UPS"})


def test_threads_can_share_one_producer(producer, broker, namespace, make_order):
    def publish_some():
        for _ in range(20):
            producer.publish("order-placed", make_order())

    threads = [threading.Thread(target=publish_some) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert broker.depth(f"{namespace}.payment") == 80
