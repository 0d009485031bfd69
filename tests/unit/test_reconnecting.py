"""A worker waiting to reconnect to a lost broker is alive: its observers (systemd's watchdog among
them) are ticked each second of the backoff, until the reconnect window ends it."""

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
