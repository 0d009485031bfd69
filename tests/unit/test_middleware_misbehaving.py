"""Middleware that misbehaves cannot double an event: an observer (``on_*``) that raises is logged, and
the event it watched is settled once, as without it, the worker's session going on; a publish middleware
that calls ``call_next`` twice sends the event once. On eda's runtime, through TestBus."""

import logging

import pytest

from eda import Middleware, Worker, handles
from eda.testing import TestBus


class Failing(Middleware):
    """Every observer raises, as a metrics client whose server is away might."""

    def __init__(self):
        self.calls = []

    def _fail(self, name):
        self.calls.append(name)
        raise RuntimeError(f"{name}: the statsd server is away")

    def on_ready(self, runner):
        self._fail("on_ready")

    def on_tick(self, runner):
        self._fail("on_tick")

    def on_settled(self, delivery, outcome):
        self._fail("on_settled")

    def on_outcome(self, worker, event_type, outcome, seconds):
        self._fail("on_outcome")

    def on_published(self, worker, event_type):
        self._fail("on_published")


def billing(handled):
    class Billing(Worker):
        name = "billing"

        @handles("invoice.requested")
        def send(self, event, ctx):
            handled.append(event.id)
            ctx.publish("invoice.sent", {"invoice_id": event.data["invoice_id"]})

    return Billing


def test_an_observer_that_raises_is_logged_and_the_event_is_handled_and_acked_once(invoices, caplog):
    # Given a worker watched by middleware whose every observer raises
    handled, failing = [], Failing()
    with caplog.at_level(logging.ERROR, logger="eda.middleware"):
        with TestBus(billing(handled), middleware=[failing]) as bus:
            # When an event is handled, its reaction confirmed and the event acked
            event = bus.publish("invoice.requested", {"invoice_id": "i-1", "amount": "5.00"})
            # Then it was handled once, its reaction published once, nothing retried nor dead-lettered
            assert handled == [event.id]
            assert [e.data["invoice_id"] for e in bus.published("invoice.sent")] == ["i-1"]
            assert bus.retrying() == [] and bus.dead_letters() == []
    # and each observer was called, and its failure logged with its name
    assert {"on_ready", "on_settled", "on_outcome", "on_published"} <= set(failing.calls)
    logged = [r.getMessage() for r in caplog.records if r.name == "eda.middleware"]
    assert any("Failing.on_outcome failed; the worker goes on" in line for line in logged), logged


class Twice(Middleware):
    def publish(self, message, call_next):
        call_next(message)
        return call_next(message)  # a mistake: call_next runs once


def test_a_publish_middleware_that_calls_next_twice_sends_the_event_once(invoices, caplog):
    handled = []
    with caplog.at_level(logging.ERROR, logger="eda.middleware"):
        with TestBus(billing(handled), middleware=[Twice()]) as bus:
            # When an event and its reaction are published through it
            bus.publish("invoice.requested", {"invoice_id": "i-1", "amount": "5.00"})
            # Then each went to the broker once, the event was handled once, nothing failed
            assert len(bus.published("invoice.requested")) == 1 and len(handled) == 1
            assert len(bus.published("invoice.sent")) == 1
            assert bus.retrying() == [] and bus.dead_letters() == []
    # and the second call was refused, logged as the middleware's failure
    assert "call_next twice" in caplog.text, caplog.text


def test_an_observer_that_raises_while_the_worker_waits_to_reconnect_does_not_stop_it(invoices, tmp_path):
    from eda import running
    from eda.errors import BrokerUnavailable
    from eda.settings import Settings

    # Given workers run with no broker to reach, watched by middleware whose observers raise
    unreachable = Settings(broker_url="amqp://guest:guest@127.0.0.1:1//", namespace="misbehaving", state_dir=tmp_path)
    failing = Failing()
    # When they wait between attempts to connect, their observers ticked meanwhile
    with pytest.raises(BrokerUnavailable, match="did not start consuming within 3s"):
        with running(billing([]), settings=unreachable, middleware=[failing], ready_timeout=3):
            pass
    # Then they went on trying until the caller gave up (a tick's error did not end them)
    assert "on_tick" in failing.calls
