"""Prometheus metrics of a real worker process, scraped over HTTP as Prometheus does."""

import os
import socket
import urllib.request

import pytest
from tests.monitoring import free_port, scrape
from tests.support import wait_until

pytestmark = pytest.mark.integration


def sample(samples: dict, metric: str, **labels) -> float | None:
    return samples.get((metric, tuple(sorted(labels.items()))))


def test_a_worker_counts_consumed_published_and_dead_lettered_events(eda, broker, namespace, make_order):
    # Given payment and inventory serving metrics
    port = free_port()
    eda.worker("payment", "inventory", EDA_METRICS_PORT=port)
    # When two orders, a poison order (invalid data) and a message that is no event at all arrive
    eda.publish("order-placed", make_order(), make_order())
    broker.publish("order.placed", {"specversion": "1.0", "id": "poison-1", "source": "test", "type": "order.placed",
                                    "data": {"orderId": "o-poison"}})
    broker.publish("order.placed", b"\xff not json", message_id="poison-2")

    def settled():
        samples = scrape(port)
        done = (sample(samples, "eda_events_consumed_total", worker="payment", event_type="order.placed",
                       outcome="ok") == 2
                and sample(samples, "eda_events_consumed_total", worker="inventory", event_type="payment.succeeded",
                           outcome="ok") == 2
                and sample(samples, "eda_dead_letters_total", worker="payment") == 2)
        return samples if done else None

    # Then the scraped counters say what happened to them
    samples = wait_until(settled, message="the metrics to count both orders and the poison ones")
    # the poison order under the type it says it has (one the worker takes), the undecodable one as unknown
    assert sample(samples, "eda_events_consumed_total", worker="payment", event_type="order.placed",
                  outcome="rejected") == 1
    assert sample(samples, "eda_events_consumed_total", worker="payment", event_type="unknown",
                  outcome="rejected") == 1
    assert sample(samples, "eda_events_consumed_total", worker="payment", event_type="order.placed",
                  outcome="dead-lettered") == 0
    assert sample(samples, "eda_events_published_total", worker="payment", event_type="payment.succeeded") == 2
    assert sample(samples, "eda_handler_duration_seconds_count", worker="payment", event_type="order.placed") == 2
    assert sample(samples, "eda_retries_total", worker="payment") == 0
    assert sample(samples, "eda_broker_connected", worker="payment") == 1
    assert sample(samples, "eda_broker_connected", worker="inventory") == 1
    assert sample(samples, "eda_breaker_state", name="payment-gateway") == 0
    assert sample(samples, "eda_handlers_in_flight", worker="payment") is not None
    # the outbox relay's metrics are the relay's alone
    assert not [name for name, _ in samples if name.startswith("eda_outbox_")]
    # And the poison messages are where the dead-letter counter says
    assert broker.depth(f"{namespace}.payment.dlq") == 2


def test_a_busy_metrics_port_is_a_one_line_error(eda):
    # Given a port another program listens on
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # When a worker is to serve its metrics there
        code, output = eda.run("worker", "payment", EDA_METRICS_PORT=port)
    # Then it says so in one line and exits 2
    assert code == 2
    assert f"error: --metrics-port (EDA_METRICS_PORT): cannot listen on 0.0.0.0:{port}" in output
    assert "Traceback" not in output


def threads_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads thread counts from /proc")
def test_idle_connections_neither_add_threads_nor_block_a_scrape(eda):
    # Given a worker serving metrics
    port = free_port()
    worker = eda.worker("payment", EDA_METRICS_PORT=port)
    scrape(port)
    before = threads_of(worker.proc.pid)
    # When 300 clients connect and send nothing
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(300)]
    try:
        # Then a scrape is still answered, and the worker runs no more threads than before
        assert sample(scrape(port), "eda_broker_connected", worker="payment") == 1
        assert threads_of(worker.proc.pid) <= before
    finally:
        for conn in idle:
            conn.close()


def test_the_metrics_server_listens_only_where_asked(eda):
    # Given a worker told to serve its metrics on 127.0.0.2 only (all of 127/8 is this host on Linux)
    port = free_port()
    worker = eda.worker("payment", EDA_METRICS_PORT=port, EDA_METRICS_ADDRESS="127.0.0.2")
    worker.wait_for_log(lambda r: r.get("metrics_address") == "127.0.0.2", what="the metrics server started")
    # Then it answers there, and not on 127.0.0.1
    with urllib.request.urlopen(f"http://127.0.0.2:{port}/metrics", timeout=5) as response:
        assert b"eda_broker_connected" in response.read()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_a_bad_metrics_address_is_a_one_line_error(eda):
    code, output = eda.run("worker", "payment", EDA_METRICS_PORT=free_port(), EDA_METRICS_ADDRESS="not an address")
    assert code == 2
    assert output.startswith("error: --metrics-address (EDA_METRICS_ADDRESS)") and len(output.splitlines()) == 1
