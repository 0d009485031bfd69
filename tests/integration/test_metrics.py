"""Prometheus metrics of a real worker process, scraped over HTTP as Prometheus does."""

import socket
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import wait_until

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict:
    """Every sample as {(name, ((label, value), ...)): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(samples: dict, metric: str, **labels) -> float | None:
    return samples.get((metric, tuple(sorted(labels.items()))))


def test_a_worker_counts_consumed_published_and_dead_lettered_events(eda, broker, namespace, make_order):
    # Given payment and inventory serving metrics
    port = free_port()
    eda.worker("payment", "inventory", EDA_METRICS_PORT=port)
    # When two orders and a poison order (invalid data) arrive
    eda.publish("order-placed", make_order(), make_order())
    broker.publish("order.placed", {"specversion": "1.0", "id": "poison-1", "source": "test", "type": "order.placed",
                                    "data": {"orderId": "o-poison"}})

    def settled():
        samples = scrape(port)
        done = (sample(samples, "eda_events_consumed_total", worker="payment", event_type="order.placed",
                       outcome="ok") == 2
                and sample(samples, "eda_events_consumed_total", worker="inventory", event_type="payment.succeeded",
                           outcome="ok") == 2
                and sample(samples, "eda_dead_letters_total", worker="payment") == 1)
        return samples if done else None

    # Then the scraped counters say what happened to them
    samples = wait_until(settled, message="the metrics to count both orders and the poison one")
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
    # And the poison order is where the dead-letter counter says
    assert broker.depth(f"{namespace}.payment.dlq") == 1


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
