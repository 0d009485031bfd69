"""Workers in a program of one's own (``eda.running``), a live view of the bus (``eda.watch``) and the
Producer, together on eda's in-memory broker (``memory://``): no RabbitMQ, the runtime's same path."""

import json
import threading
import time
import uuid

import pytest
from marshmallow import fields

from eda import EventData, Producer, Settings, Worker, contract, handles, running, watch
from eda.connection import open_connection
from eda.errors import BrokerUnavailable, ConfigError, Unroutable
from eda.fields import Id
from tests.support import wait_until


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


# On eda's in-memory broker the runtime takes its RabbitMQ path: what RabbitMQ gives, memory:// gives too

def test_a_failed_event_comes_back_from_its_retry_queue_after_the_delay_and_a_lost_cause_ends_in_the_dlq(
        settings, own_contracts):
    @contract("bill.due")
    class BillDue(EventData):
        bill_id = Id(required=True)

    class Dunning(Worker):
        name = "dunning"
        attempts = []

        @handles(BillDue)
        def remind(self, event, ctx):
            self.attempts.append((event.data["bill_id"], time.monotonic()))
            if event.data["bill_id"] == "lost" or len(self.attempts) == 1:
                raise TimeoutError("mail server busy")

    # Given a worker retrying once after 300 ms, run in this process on memory://
    retrying = settings.with_(retry_delays="300ms")
    with running(Dunning, settings=retrying), open_connection(retrying) as conn:
        channel = conn.channel()
        # When it fails the first event once, and the second every time
        with Producer(retrying, source="tests") as producer:
            producer.publish(BillDue, {"bill_id": "b-1"})
            producer.publish(BillDue, {"bill_id": "lost"})
        dlq = f"{retrying.namespace}.dunning.dlq"
        wait_until(lambda: channel.queue_declare(dlq, passive=True).message_count == 1, message="the dead letter")
        dead = channel.basic_get(dlq, no_ack=True)
    # Then the first came back from the retry queue after the delay, and was handled
    times = [t for bill, t in Dunning.attempts if bill == "b-1"]
    assert len(times) == 2 and times[1] - times[0] >= 0.3
    # And the second, failed again after its retry, waits in the DLQ with its reason
    assert [bill for bill, _ in Dunning.attempts].count("lost") == 2
    assert json.loads(dead.body)["data"]["billId"] == "lost"
    assert "mail server busy" in dead.headers["eda-exception-message"]


def test_an_ordered_worker_runs_in_memory_each_key_s_events_in_order(settings, own_contracts):
    @contract("account.changed", key="account_id")
    class AccountChanged(EventData):
        account_id = Id(required=True)
        seq = fields.Integer(required=True)

    class Ledger(Worker):
        name = "ledger"
        ordered_by = "account_id"
        applied = []

        @handles(AccountChanged)
        def apply(self, event, ctx):
            if event.data["seq"] == 0 and not any(a == event.data["account_id"] for a, _ in self.applied):
                self.applied.append((event.data["account_id"], "failed"))
                raise TimeoutError("the first one of each account fails once")
            self.applied.append((event.data["account_id"], event.data["seq"]))

    # Given an ordered worker (its partitions behind a consistent-hash exchange) run on memory://
    with running(Ledger, settings=settings.with_(retry_delays="100ms")):
        # When each of three accounts changes five times, the first change failing once
        with Producer(settings, source="tests") as producer:
            for seq in range(5):
                for account in ("a", "b", "c"):
                    producer.publish(AccountChanged, {"account_id": account, "seq": seq})
        wait_until(lambda: len(Ledger.applied) == 18, message="every change applied")
    # Then each account's changes were applied in order, its failed first one retried before the rest
    for account in ("a", "b", "c"):
        assert [seq for a, seq in Ledger.applied if a == account] == ["failed", 0, 1, 2, 3, 4]


def test_a_request_gets_its_reply_from_a_worker_run_in_memory(settings, own_contracts):
    @contract("quote.given")
    class QuoteGiven(EventData):
        price = fields.Integer(required=True)

    @contract("quote.requested", reply=QuoteGiven)
    class QuoteRequested(EventData):
        quantity = fields.Integer(required=True)

    class Quotes(Worker):
        name = "quotes"

        @handles(QuoteRequested)
        def quote(self, event, ctx):
            return {"price": 3 * event.data["quantity"]}

    with running(Quotes, settings=settings), Producer(settings, source="tests") as producer:
        reply = producer.request(QuoteRequested, {"quantity": 4}, timeout=10)
    assert reply.type == "quote.given" and reply.data == {"price": 12}


def test_memory_brokers_are_one_per_name_and_an_event_no_queue_takes_is_unroutable_there_too(settings, billing):
    worker_class, requested = billing
    elsewhere = settings.with_(broker_url="memory://elsewhere")
    # Given the billing worker running on memory://
    with running(worker_class, settings=settings):
        # When a producer publishes on another in-memory broker, where no worker's queue is
        with Producer(elsewhere, source="tests") as producer:
            # Then the event is refused as on RabbitMQ (mandatory, returned), not dropped
            with pytest.raises(Unroutable):
                producer.publish(requested, {"bill_id": "b-3"})
    assert worker_class.sent == []


SLOW_PROGRAM = '''
import sys, tempfile, threading, uuid
from eda import EventData, Producer, Settings, Worker, contract, handles, running
from eda.fields import Id

@contract("slow.requested")
class SlowRequested(EventData):
    slow_id = Id(required=True)

started = threading.Event()

class Slow(Worker):
    name = "slow"

    @handles(SlowRequested)
    def work(self, event, ctx):
        started.set()
        threading.Event().wait(120)  # far past the shutdown timeout

settings = Settings(broker_url="memory://", namespace="slow-" + uuid.uuid4().hex[:6], state_dir=tempfile.mkdtemp(),
                    shutdown_timeout=1)
with running(Slow, settings=settings):
    with Producer(settings, source="tests") as producer:
        producer.publish(SlowRequested, {"slow_id": "s-1"})
    assert started.wait(30)
print("the program goes on")
'''


def test_a_handler_past_the_shutdown_timeout_ends_the_block_not_the_program():
    import subprocess
    import sys

    # Given a program whose worker's handler runs far past the shutdown timeout when the block ends
    done = subprocess.run([sys.executable, "-c", SLOW_PROGRAM], capture_output=True, text=True, timeout=60)
    # Then the block ends once the timeout is past, and the program goes on (eda worker would exit 1)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("the program goes on")
    assert "shutdown timeout: stopping with handlers unfinished" in done.stderr
