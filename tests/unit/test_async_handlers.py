"""``async def`` handlers: how a worker declares them, the event loop that runs them (eda.runtime.aio), and the
TestBus running them with an async setup and teardown."""

import asyncio
import threading
import time

import pybreaker
import pytest

from eda import PermanentError, Worker, handles
from eda.breaker import Breaker
from eda.errors import DefinitionError
from eda.runtime.aio import HandlerLoop
from eda.settings import Settings
from eda.testing import TestBus
from eda.worker import is_async


class Mailer:
    """Stands for an async client (an httpx.AsyncClient): usable only on the loop it was opened on."""

    def __init__(self):
        self.loop = asyncio.get_running_loop()
        self.sent, self.closed = [], False
        self.failures = []

    async def send(self, invoice_id):
        assert asyncio.get_running_loop() is self.loop, "used on another loop than the one it was opened on"
        await asyncio.sleep(0)
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(invoice_id)

    async def close(self):
        self.closed = True


@pytest.fixture
def billing(invoices):
    class Billing(Worker):
        name = "billing"
        failures = []

        async def setup(self):
            self.mailer = Mailer()
            self.mailer.failures = list(self.failures)
            self.breaker = Breaker(fail_max=2, reset_timeout=60)

        async def teardown(self):
            await self.mailer.close()

        @handles("invoice.requested")
        async def send(self, event, ctx):
            await self.breaker.call_async(self.mailer.send, event.data["invoice_id"])
            ctx.publish("invoice.sent", {"invoice_id": event.data["invoice_id"]})

    return Billing


def test_a_worker_with_coroutine_handlers_is_async(billing):
    assert is_async(billing) and is_async(billing(Settings()))


def test_a_worker_mixing_coroutine_and_plain_handlers_is_refused(invoices):
    with pytest.raises(DefinitionError, match="all `async def` or all `def`"):
        class Mixed(Worker):
            name = "mixed"

            @handles("invoice.requested")
            async def one(self, event, ctx):
                pass

            @handles("invoice.sent")
            def other(self, event, ctx):
                pass


def test_an_async_setup_beside_plain_handlers_is_refused(invoices):
    with pytest.raises(DefinitionError, match="async def setup"):
        class Plain(Worker):
            name = "plain"

            async def setup(self):
                pass

            @handles("invoice.requested")
            def send(self, event, ctx):
                pass


def test_the_test_bus_runs_async_handlers_with_what_their_async_setup_opened(billing):
    with TestBus(billing) as bus:
        bus.publish("invoice.requested", {"invoice_id": "i-1", "amount": "5.00"})
        mailer = bus.worker("billing").mailer
        assert mailer.sent == ["i-1"]
        assert [e.data["invoice_id"] for e in bus.published("invoice.sent")] == ["i-1"]
    assert mailer.closed  # the async teardown ran


def test_the_test_bus_retries_and_dead_letters_async_handlers_like_plain_ones(billing):
    billing.failures = [TimeoutError("mail server slow"), PermanentError("no such customer")]
    with TestBus(billing, settings=Settings(retry_delays="1s,5s")) as bus, bus.expect_dead_letters():
        bus.publish("invoice.requested", {"invoice_id": "i-1", "amount": "5.00"})
        [dead] = bus.dead_letters("billing")
        assert (dead.exception_type, dead.reason, dead.attempts) == ("PermanentError", "no such customer", 2)
        assert bus.published("invoice.sent") == []


def test_an_open_breaker_around_an_async_call_gives_the_event_back(billing):
    billing.failures = [TimeoutError("down")] * 2
    with TestBus(billing, settings=Settings(retry_delays="1s,5s,10s")) as bus:
        bus.publish("invoice.requested", {"invoice_id": "i-1", "amount": "5.00"})
        assert bus.worker("billing").breaker.current_state == pybreaker.STATE_OPEN
        [(worker, event)] = bus.given_back()  # the third attempt was refused: no attempt counted
        assert (worker, event.data["invoice_id"]) == ("billing", "i-1")
        assert bus.dead_letters() == []


def test_the_handler_loop_runs_hundreds_of_coroutines_at_once_and_reports_each():
    # Given a loop whose tasks each wait until every one of them has started
    started, outcomes, done = set(), [], threading.Event()
    all_in = asyncio.Event()

    async def run(item):
        started.add(item)
        if len(started) == 300:
            all_in.set()
        await all_in.wait()
        outcomes.append(item)
        if len(outcomes) == 300:
            done.set()

    loop = HandlerLoop("test-loop", run)
    try:
        # When 300 items are submitted from this thread
        for i in range(300):
            loop.submit(i)
        # Then all 300 run at once (none could finish before the last started) and each finishes
        assert done.wait(10)
        assert sorted(outcomes) == list(range(300))
    finally:
        loop.shutdown()
    assert loop.loop.is_closed()


def test_tasks_finishing_in_one_turn_of_the_loop_wake_the_io_thread_once():
    # Given a loop whose 50 tasks all wait for one future, each asking for a wake-up as it ends
    wakes, finished, done = [], [], threading.Event()
    release = {}

    def wake():
        wakes.append(len(finished))
        if len(finished) == 50:
            done.set()

    async def run(item):
        if "future" not in release:
            release["future"] = asyncio.get_running_loop().create_future()
        await release["future"]
        finished.append(item)
        loop.after_this_turn(wake)

    loop = HandlerLoop("test-loop", run)
    try:
        for i in range(50):
            loop.submit(i)
        # When the future is set (on the loop): every task ends in the same turn
        time.sleep(0.2)
        loop.loop.call_soon_threadsafe(lambda: release["future"].set_result(None))
        # Then the wake-up ran once, after all 50 had finished
        assert done.wait(10)
        time.sleep(0.1)
        assert wakes == [50]
    finally:
        loop.shutdown()


def test_the_handler_loop_runs_an_async_setup_on_its_own_loop():
    loop = HandlerLoop("test-loop", None)
    try:
        async def setup():
            return asyncio.get_running_loop()

        assert loop.call(setup) is loop.loop
        assert loop.call(lambda: "plain") == "plain"
    finally:
        loop.shutdown()


def test_the_shops_async_payment_charges_and_refunds_on_the_test_bus():
    from eda_shop.workers.payment_async import AsyncPayment

    order = {"order_id": "o-1", "user_id": "u-1", "total_amount": "10.00",
             "items": [{"sku": "S-1", "quantity": 1, "unit_price": "10.00"}]}
    with TestBus(AsyncPayment) as bus:
        bus.publish("order.placed", order)
        bus.publish("order.placed", order)  # a copy: answered from the record, not charged again
        bus.publish("order.cancelled", {"order_id": "o-1", "reason": "changed my mind"})
        paid = bus.published("payment.succeeded")
        assert len(paid) == 2 and len({e.data["payment_id"] for e in paid}) == 1
        assert bus.worker("payment").gateway.simulation.charges == 1
        [refunded] = bus.published("payment.refunded")
        assert refunded.data["payment_id"] == paid[0].data["payment_id"]
        assert bus.dead_letters() == []


def test_the_async_payment_publishes_what_the_threaded_one_does():
    # Given both styles of the shop's payment worker, each on a bus of its own
    from eda_shop.workers.payment import Payment
    from eda_shop.workers.payment_async import AsyncPayment

    reactions = []
    for worker in (Payment, AsyncPayment):
        with TestBus(worker) as bus:
            for i, amount in enumerate(("10.00", "20000.00")):  # paid, declined
                order = {"order_id": f"o-{i}", "user_id": "u-1", "total_amount": amount,
                         "items": [{"sku": "S-1", "quantity": 1, "unit_price": amount}]}
                bus.publish("order.placed", order)
                bus.publish("order.cancelled", {"order_id": f"o-{i}", "reason": "changed my mind", "user_id": "u-1"})
            reactions.append([(e.type, {k: v for k, v in e.data.items() if k not in ("payment_id",)})
                              for e in bus.published() if e.type.startswith("payment.")])
    # Then the same reactions with the same data (but the gateway's fresh ids)
    assert reactions[0] == reactions[1]
    assert [t for t, _ in reactions[0]] == ["payment.succeeded", "payment.refunded", "payment.failed"]
