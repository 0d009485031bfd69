"""A worker waiting to reconnect to a lost broker is alive: its observers (systemd's watchdog among
them) are ticked each second of the backoff, until the reconnect window ends it. What the lost
connection had delivered is not handled in the new one: the broker delivers it again."""

import asyncio
import threading
import time

import pytest

from eda import Middleware, Worker, handles
from eda.errors import BrokerUnavailable
from eda.runtime.runner import Runner
from eda.settings import Settings


class Ticks(Middleware):
    def __init__(self):
        self.ticks, self.lost = [], []

    def on_tick(self, runner):
        self.ticks.append(time.monotonic())

    def on_connection_lost(self, runner, reason):
        self.lost.append(time.monotonic())


def test_observers_are_ticked_each_second_while_the_worker_waits_to_reconnect(invoices, tmp_path):
    class Billing(Worker):
        name = "billing"

        @handles("invoice.requested")
        def send(self, event, ctx):
            pass

    def unreachable(settings):
        raise BrokerUnavailable("connection refused")

    ticks = Ticks()
    settings = Settings(state_dir=tmp_path, reconnect_window=3)
    runner = Runner([Billing], settings, connect=unreachable, middleware=[ticks])
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="stayed unreachable"):
        _run_off_main(runner)
    waited = time.monotonic() - started
    # Backoffs of 0.5, 1, 2 and 4 s: never more than about a second between two signs of life.
    signs = sorted([started, *ticks.ticks, *ticks.lost])
    assert waited >= 3 and len(ticks.ticks) >= 3
    assert max(b - a for a, b in zip(signs, signs[1:])) < 1.5


def _run_off_main(runner):
    """Run on a thread (the main thread's signal handlers stay pytest's) and re-raise what ended it."""
    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(_capture(runner.run)))
    thread.start()
    thread.join(30)
    if outcome and isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0] if outcome else None


def _capture(func):
    try:
        return func()
    except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
        return exc


@pytest.mark.parametrize("style", ["threads", "async def"])
def test_a_delivery_of_a_lost_connection_is_not_handled_by_the_new_session(invoices, tmp_path, style):
    from eda.contracts.envelope import Event
    from eda.runtime.consumer import Delivery

    # Given a worker (handler threads, or async def on its loop) that counts its handler's runs
    runs = []

    class Billing(Worker):
        name = "billing"

        if style == "threads":
            @handles("invoice.requested")
            def send(self, event, ctx):
                runs.append(event.id)
        else:
            @handles("invoice.requested")
            async def send(self, event, ctx):
                runs.append(event.id)

    runner = Runner([Billing], Settings(state_dir=tmp_path, broker_url="memory://"))
    [consumer] = runner.consumers
    outcomes = []
    runner.hand_back = lambda outcome, wake=True: outcomes.append(outcome)
    # When a delivery of the session before a reconnect reaches its handler in the new session
    lost, runner.session = object(), object()
    delivery = Delivery(None, consumer, Event("invoice.requested", {"invoice_id": "i-1"}, "test"), lost)
    if style == "threads":
        consumer._run_in_pool(delivery)
    else:
        asyncio.run(consumer._run_on_loop(delivery))
    # Then the handler does not run: the broker delivers the event again, to the new session
    assert runs == [] and outcomes == []


def test_deliveries_admitted_in_a_lost_sessions_last_turn_are_not_handed_over_in_the_next(invoices, tmp_path):
    class Billing(Worker):
        name = "billing"

        @handles("invoice.requested")
        async def send(self, event, ctx):
            pass

    runner = Runner([Billing], Settings(state_dir=tmp_path, broker_url="memory://"))
    [consumer] = runner.consumers
    consumer.starting = ["a delivery of the lost session"]
    runner.start_session()
    try:
        assert consumer.starting == []
    finally:
        runner.close()
