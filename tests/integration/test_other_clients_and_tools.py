"""The bus from the outside: a plain AMQP client taking part, `eda tail`, `eda demo`, `eda topology declare`."""

import json
import uuid
from datetime import datetime, timezone

import pika
import pytest

from tests.support import handled, wait_until

pytestmark = pytest.mark.integration


def test_an_event_from_a_plain_amqp_client_is_processed_like_one_from_eda(eda, broker, broker_url, namespace):
    # Given the shipping worker, and a client that knows only the wire contract (pika, not eda)
    worker = eda.worker("shipping")
    spy = broker.spy("order.shipped")
    event_id = str(uuid.uuid4())
    body = {
        "specversion": "1.0", "id": event_id, "source": "legacy-warehouse", "type": "inventory.reserved",
        "time": datetime.now(timezone.utc).isoformat(), "datacontenttype": "application/json",
        "correlationid": "corr-legacy", "data": {"orderId": "legacy-1", "items": [{"sku": "A", "quantity": 2}]},
    }
    connection = pika.BlockingConnection(pika.URLParameters(broker_url.rstrip("/") + "/%2F"))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        # When it publishes a CloudEvent to the events exchange
        channel.basic_publish(f"{namespace}.events", "inventory.reserved", json.dumps(body).encode(),
                              pika.BasicProperties(content_type="application/cloudevents+json", delivery_mode=2,
                                                   message_id=event_id, type="inventory.reserved"))
    finally:
        connection.close()
    # Then the worker handles it and reacts in the same correlation
    shipped = spy.wait_for("order.shipped")[0]
    assert shipped["data"]["orderId"] == "legacy-1"
    assert shipped["correlationid"] == "corr-legacy" and shipped["causationid"] == event_id
    worker.wait_for_log(handled("inventory.reserved"))
    assert broker.depth(f"{namespace}.shipping.dlq") == 0


def test_tail_shows_matching_events_live_and_removes_its_queue(eda, broker, namespace, make_order):
    eda.run("topology", "declare")
    tail = eda.start("tail", "order.*", "--json", "--count", "2")
    wait_until(lambda: any("tailing" in line for line in tail.lines), message="tail to bind its queue")
    order = make_order()
    for event, data in (("stock-replenished", {"sku": "SKU-1", "quantity": 1}), ("order-placed", order),
                        ("order-cancelled", {"orderId": order["orderId"], "reason": "changed mind"})):
        code, output = eda.run("publish", event, "--data", json.dumps(data))
        assert code == 0, output
    assert tail.wait(30) == 0
    shown = [json.loads(line) for line in tail.lines if line.startswith("{")]
    assert [e["type"] for e in shown] == ["order.placed", "order.cancelled"]  # stock.* does not match
    assert shown[0]["data"]["orderId"] == order["orderId"]


def test_tail_prints_one_readable_line_per_event(eda, make_order):
    eda.run("topology", "declare")
    tail = eda.start("tail", "--count", "1")
    wait_until(lambda: any("tailing" in line for line in tail.lines), message="tail to bind its queue")
    eda.run("publish", "order-placed", "--data", json.dumps(make_order(order_id="ord-tail")))
    assert tail.wait(30) == 0
    line = [line for line in tail.lines if "order.placed" in line][0]
    assert '"orderId":"ord-tail"' in line and "correlation=" in line


@pytest.mark.parametrize("flags", [[], ["--embedded"]])
def test_demo_runs_the_whole_flow_and_summarises_it(eda, flags):
    code, output = eda.run("demo", *flags, timeout=90)
    assert code == 0, output
    assert "demo-1: paid, reserved and shipped" in output
    assert output.count(" ok") >= 4 and "MISSING" not in output
    for event_type in ("order.shipped", "payment.failed", "payment.refunded", "inventory.depleted"):
        assert event_type in output


def test_demo_without_a_broker_says_so_and_runs_embedded(eda):
    code, output = eda.run("demo", EDA_BROKER_URL="amqp://guest:guest@127.0.0.1:1//", timeout=90)
    assert code == 0, output
    assert "running embedded" in output and "(in memory)" in output


def test_topology_declare_lets_events_wait_for_a_worker_not_started_yet(eda, broker, namespace, make_order):
    code, output = eda.run("topology", "declare")
    assert code == 0, output
    assert f"queue {namespace}.payment <- order.cancelled, order.placed" in output
    code, _ = eda.run("publish", "order-placed", "--data", json.dumps(make_order()))
    assert code == 0
    assert broker.depth(f"{namespace}.payment") == 1
    # When the worker starts later, it takes the waiting event
    worker = eda.worker("payment")
    worker.wait_for_log(handled("order.placed"))
    assert wait_until(lambda: broker.depth(f"{namespace}.payment") == 0)
