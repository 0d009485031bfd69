"""Workers in a program of one's own (``eda.running``), a live view of the bus (``eda.watch``) and the
Producer, together on kombu's in-memory transport: no broker."""

import threading
import time
import uuid

import pytest

from eda import EventData, Producer, Settings, Worker, contract, handles, running, watch
from eda.errors import BrokerUnavailable, ConfigError
from eda.fields import Id


@pytest.fixture
def settings(tmp_path):
    return Settings(broker_url="memory://", namespace=f"inprocess-{uuid.uuid4().hex[:6]}", state_dir=tmp_path,
                    shutdown_timeout=5)


@pytest.fixture
def billing(own_contracts):
    @contract("bill.requested")
    class BillRequested(EventData):
        bill_id = Id(required=True)

    @contract("bill.sent")
    class BillSent(EventData):
        bill_id = Id(required=True)

    class Billing(Worker):
        name = "billing"
        sent = []

        @handles(BillRequested)
        def send(self, event, ctx):
            self.sent.append(event.data["bill_id"])
            ctx.publish(BillSent, {"bill_id": event.data["bill_id"]})

    return Billing, BillRequested


def test_running_workers_handle_what_a_producer_publishes_and_a_watch_sees_their_reactions(settings, billing):
    worker_class, requested = billing
    with watch(settings, "bill.*") as tail, running(worker_class, settings=settings) as workers:
        with Producer(settings, source="tests") as producer:
            event = producer.publish(requested, {"bill_id": "b-1"})
        seen = []
        for wire in tail.events(timeout=10, until=lambda: any(w["type"] == "bill.sent" for w in seen)):
            seen.append(wire)
        assert [w["type"] for w in seen] == ["bill.requested", "bill.sent"]
        assert seen[1]["causationid"] == event.id and "bill.sent" in tail.describe(seen[1])
        assert workers.worker("billing").sent == ["b-1"]
        with pytest.raises(KeyError, match="no worker 'shipping' runs here; these do: billing"):
            workers.worker("shipping")
    assert "eda-workers" not in [t.name for t in threading.enumerate()]  # stopped with the block


def test_a_worker_that_cannot_start_raises_its_error_in_the_caller(settings, own_contracts):
    class Broken(Worker):
        name = "broken"

        def setup(self):
            raise ConfigError("--mail-host: no mail host")

    with pytest.raises(ConfigError, match="no mail host"):
        with running(Broken, settings=settings):
            pytest.fail("the block must not run")


def test_without_a_broker_running_gives_up_after_the_ready_timeout_and_stops_its_thread(settings, billing):
    unreachable = settings.with_(broker_url="amqp://guest:guest@127.0.0.1:1//")
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="did not start consuming within 1s"):
        with running(billing[0], settings=unreachable, ready_timeout=1):
            pass
    assert time.monotonic() - started < 10
    assert "eda-workers" not in [t.name for t in threading.enumerate()]


def test_middleware_given_to_running_wraps_the_workers_handling(settings, billing):
    from eda import Middleware

    class Seen(Middleware):
        types = []

        def handle(self, event, ctx, call_next):
            self.types.append(event.type)
            return call_next(event, ctx)

    worker_class, requested = billing
    with watch(settings, "bill.sent") as tail, running(worker_class, settings=settings, middleware=[Seen()]):
        with Producer(settings, source="tests") as producer:
            producer.publish(requested, {"bill_id": "b-2"})
        sent = next(tail.events(timeout=10), None)
    assert sent is not None and sent["type"] == "bill.sent"
    assert Seen.types == ["bill.requested"]
