"""The metrics middleware and the breaker listener, read back from the registry the server exposes."""

import uuid

import pybreaker
import pytest

from eda.breaker import Breaker
from eda.metrics import REGISTRY, Metrics, watch_breaker
from eda.worker import Worker, handles


def value(metric, **labels):
    return REGISTRY.get_sample_value(metric, labels) or 0.0


def test_the_breaker_state_follows_the_breaker():
    # Given a watched breaker that opens after one failure
    name = f"gw-{uuid.uuid4().hex[:6]}"
    breaker = Breaker(fail_max=1, reset_timeout=0.01, name=name)
    watch_breaker(breaker)
    assert REGISTRY.get_sample_value("eda_breaker_state", {"name": name}) == 0

    def fail():
        raise OSError("gateway down")

    # When a call fails, it is open (2)
    with pytest.raises((OSError, pybreaker.CircuitBreakerError)):
        breaker.call(fail)
    assert value("eda_breaker_state", name=name) == 2
    # And half-open (1) then closed (0) again as a probe succeeds after the reset timeout
    breaker.half_open()
    assert value("eda_breaker_state", name=name) == 1
    breaker.call(lambda: None)
    assert value("eda_breaker_state", name=name) == 0


def test_outcomes_count_by_worker_type_and_outcome():
    class Billing(Worker):
        name = f"billing-{uuid.uuid4().hex[:6]}"

        @handles("order.placed")
        def bill(self, event, ctx):
            pass

    w = Billing.name
    metrics = Metrics([Billing])
    # The expected series exist at 0 before any event
    assert REGISTRY.get_sample_value("eda_events_consumed_total",
                                     {"worker": w, "event_type": "order.placed", "outcome": "retried"}) == 0
    metrics.on_outcome(w, "order.placed", "ok", 0.02)
    metrics.on_outcome(w, "order.placed", "ok", 0.03)
    metrics.on_outcome(w, "order.placed", "retried", None)
    metrics.on_outcome(w, "order.placed", "dead-lettered", None)
    metrics.on_outcome(w, None, "rejected", None)
    metrics.on_published(w, "payment.succeeded")
    assert value("eda_events_consumed_total", worker=w, event_type="order.placed", outcome="ok") == 2
    assert value("eda_handler_duration_seconds_count", worker=w, event_type="order.placed") == 2
    assert value("eda_handler_duration_seconds_sum", worker=w, event_type="order.placed") == pytest.approx(0.05)
    assert value("eda_retries_total", worker=w) == 1
    assert value("eda_dead_letters_total", worker=w) == 2  # dead-lettered and rejected
    assert value("eda_events_consumed_total", worker=w, event_type="unknown", outcome="rejected") == 1
    assert value("eda_events_published_total", worker=w, event_type="payment.succeeded") == 1


@pytest.mark.parametrize("address, blamed", [
    ("192.0.2.7", "--metrics-address (EDA_METRICS_ADDRESS)"),  # TEST-NET-1: none of this host's addresses
    ("no-such-host.invalid", "--metrics-address (EDA_METRICS_ADDRESS)"),
])
def test_an_address_the_metrics_cannot_listen_on_blames_the_address_not_the_port(address, blamed):
    from eda.errors import ConfigError
    from eda.metrics import start_server

    with pytest.raises(ConfigError) as refused:
        start_server(19999, address)
    assert str(refused.value).startswith(f"{blamed}: cannot listen on {address}:19999: ")
