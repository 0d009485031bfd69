"""Several brokers in EDA_BROKER_URL (`amqp://h1//;amqp://h2//`): a worker and `eda publish` use the first
that answers and go on with another when theirs goes away. Two TCP proxies in front of the test broker
stand for two nodes of a cluster (the real three-node cluster is in test_cluster.py)."""

import json
from urllib.parse import urlsplit

import pytest

from tests.proxy import TcpProxy
from tests.support import Accounting, handled, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def proxies(broker_url):
    parts = urlsplit(broker_url)
    pair = [TcpProxy(parts.hostname or "localhost", parts.port or 5672) for _ in range(2)]
    yield pair
    for proxy in pair:
        proxy.close()


def consuming(r):
    return r.get("message") == "consuming"


def test_a_worker_takes_the_first_broker_that_answers_and_fails_over_when_it_goes_away(
        eda, broker, broker_url, namespace, proxies, gateway, make_order):
    # Given a failover list whose first broker is down, then two that answer
    first, second = proxies
    down = broker_url.replace(f":{urlsplit(broker_url).port or 5672}", ":1", 1)
    urls = ";".join([down, first.url(broker_url), second.url(broker_url)])
    gateway.simulation.latency = 0.1
    # When a payment worker starts on it
    worker = eda.worker("payment", EDA_BROKER_URL=urls, EDA_PAYMENT_GATEWAY_URL=gateway.url, EDA_CONCURRENCY=2)
    # Then it consumes from the first broker that answers, and says which
    assert worker.wait_for_log(consuming)["broker"] == f"127.0.0.1:{first.port}"
    spy = broker.spy("payment.*")
    order_ids = eda.publish("order-placed", *(make_order() for _ in range(10)))
    worker.wait_for_log(handled("order.placed"))
    # When that broker goes away for good (the port refuses from now on)
    first.close()
    # Then the worker goes on with the next one, within its reconnect window, and loses nothing
    worker.wait_for_log(lambda r: str(r.get("message", "")).startswith("broker connection lost"))
    wait_until(lambda: worker.count(consuming) >= 2, timeout=30, message="the worker consuming again")
    assert [r["broker"] for r in worker.records if consuming(r)][-1] == f"127.0.0.1:{second.port}"
    Accounting(order_ids, spy=spy, broker=broker, dlqs=[f"{namespace}.payment.dlq"]).wait_all_accounted()
    assert gateway.simulation.charges == len(order_ids)
    assert worker.proc.poll() is None
    assert "guest:guest" not in worker.output and "Traceback" not in worker.output


def test_eda_publish_sends_again_what_was_not_confirmed_when_its_connection_is_lost(
        eda, broker, broker_url, namespace, proxies, tmp_path, make_order):
    # Given the payment queue, and a file of 10,000 orders
    code, output = eda.run("topology", "declare")
    assert code == 0, output
    spy = broker.spy("order.placed")
    orders = tmp_path / "orders.jsonl"
    orders.write_text("\n".join(json.dumps(make_order()) for _ in range(10_000)))
    proxy = proxies[0]
    # When eda publish sends them through a broker whose connections are cut once it confirmed some
    publish = eda.start("publish", "order-placed", "--file", str(orders), EDA_BROKER_URL=proxy.url(broker_url))
    wait_until(lambda: len(ids_in(publish.lines)) >= 50 or publish.proc.poll() is not None, timeout=120,
               message="the first confirms")
    proxy.cut()
    # Then it reconnects by itself, sends again what the broker had not confirmed, and exits 0
    assert publish.wait(timeout=300) == 0, publish.output[-3000:]
    assert any(str(r.get("message", "")).startswith("broker connection lost while publishing")
               for r in publish.records), "the cut came after the last confirm: nothing was tested"
    # with every event confirmed exactly once on its output, and every one on the wire
    ids = ids_in(publish.lines)
    assert len(ids) == len(set(ids)) == 10_000
    wait_until(lambda: set(ids) <= {e["id"] for e in spy.events}, timeout=60, message="every order on the wire")
    assert broker.depth(f"{namespace}.payment") >= 10_000
    assert "Traceback" not in publish.output


def ids_in(lines) -> list[str]:
    return [line for line in list(lines) if line and not line.startswith(("{", "error"))]
