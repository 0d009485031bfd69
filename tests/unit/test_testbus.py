"""TestBus: a project's workers run by eda's own runtime (runner, settlement, failure policy, duplicate detection,
routing-key check, ordering) on the in-memory broker, without a RabbitMQ."""

import json
import threading

import pybreaker
import pytest
from amqp.basic_message import Message
from marshmallow import fields

from eda import ContractError, EventData, Middleware, PermanentError, Worker, contract, handles, names
from eda.errors import ConfigError, DefinitionError, UnknownEvent
from eda.fields import Id
from eda.memory import open_connection
from eda.runtime.partitions import check_ordered
from eda.settings import Settings
from eda.testing import TestBus
import eda_shop.contracts.events  # noqa: F401 - registered before any test's own contracts come and go
from eda_shop.workers.inventory import Inventory

INVOICE = {"invoice_id": "i-1", "amount": "5.00"}


@pytest.fixture
def billing(invoices):
    class Billing(Worker):
        name = "billing"
        failures = []  # what each call does: an exception to raise, or None to succeed
        reaction = None  # the data published, if not the usual one
        calls = []  # the bus's clock at each call (set by the test: clock)
        clock = None

        @handles("invoice.requested")
        def send(self, event, ctx):
            type(self).calls.append(self.clock() if self.clock else event.id)
            if self.failures:
                error = self.failures.pop(0)
                if error is not None:
                    raise error
            ctx.publish("invoice.sent", self.reaction or {"invoice_id": event.data["invoice_id"]})

    Billing.calls = []
    return Billing


@pytest.fixture
def accounts(own_contracts):
    """An ordered worker: account.changed events handled in order per account, a failing one retried in place."""

    @contract("account.changed", key="account_id")
    class AccountChanged(EventData):
        account_id = Id(required=True)
        seq = fields.Integer(required=True)

    class Accounts(Worker):
        name = "accounts"
        ordered_by = "account_id"
        failing = set()  # (account, seq) failing once each
        refused = set()  # (account, seq) meeting an open circuit once each
        handled = []  # (account, seq, outcome) in the order the handler ran

        @handles("account.changed")
        def apply(self, event, ctx):
            key = (event.data["account_id"], event.data["seq"])
            if key in self.refused:
                self.refused.discard(key)
                raise pybreaker.CircuitBreakerError("open")
            if key in self.failing:
                self.failing.discard(key)
                self.handled.append((*key, "failed"))
                raise TimeoutError(f"{key} failed once")
            self.handled.append((*key, "ok"))

    Accounts.handled, Accounts.failing, Accounts.refused = [], set(), set()
    return Accounts


def test_billing_sends_invoices(billing):
    with TestBus(billing) as bus:
        bus.publish("invoice.requested", INVOICE)
        assert [e.data["invoice_id"] for e in bus.published("invoice.sent")] == ["i-1"]
        assert bus.dead_letters() == []


def test_a_transient_failure_is_retried_on_the_retry_schedule_without_waiting(billing):
    # Given a worker that fails twice, under retry delays of an hour and two
    billing.failures = [TimeoutError("mail server slow"), TimeoutError("still slow"), None]
    with TestBus(billing, settings=Settings(retry_delays="1h,2h")) as bus:
        billing.clock = bus.broker.clock
        # When an event is published
        bus.publish("invoice.requested", INVOICE)
        # Then it was handled three times, an hour and then two hours apart on the bus's clock
        first, second, third = billing.calls
        assert (second - first, third - second) == (3600, 7200)
        assert len(bus.published("invoice-sent")) == 1 and bus.dead_letters() == []


def test_a_retry_waits_in_its_ttl_queue_with_eda_s_headers_until_its_time_passes(billing):
    billing.failures = [TimeoutError("mail server slow")]
    with TestBus(billing, settings=Settings(retry_delays="5s,1m")) as bus:
        # When the first attempt fails and the test keeps the retries waiting
        event = bus.publish("invoice.requested", INVOICE, retries=False)
        # Then the event waits in the worker's 5 s retry queue, with the headers a real worker writes
        [(worker, waiting)] = bus.retrying()
        assert (worker, waiting.id) == ("billing", event.id)
        [message] = bus.broker.queues[names.retry_queue(bus.settings.namespace, "billing", 5000)].messages
        headers = message.properties["application_headers"]
        assert headers["eda-retry-count"] == 1
        assert (headers["eda-original-exchange"], headers["eda-original-routing-key"]) == (
            names.events_exchange(bus.settings.namespace), "invoice.requested")
        # And it comes back only once 5 s passed on the bus's clock
        bus.advance(4.9)
        assert bus.published("invoice.sent") == []
        bus.advance(0.1)
        assert len(bus.published("invoice.sent")) == 1 and bus.retrying() == []


def test_a_dead_letter_fails_the_test_with_the_event_the_reason_and_the_traceback(billing):
    # Given a worker whose handler always fails
    billing.failures = [TimeoutError("mail server slow") for _ in range(3)]
    with TestBus(billing, settings=Settings(retry_delays="1s,5s")) as bus:
        # When an event is published, then the publish fails the test, saying what died, where and why
        with pytest.raises(AssertionError) as failed:
            event = bus.publish("invoice.requested", INVOICE)
        text = str(failed.value)
        assert "worker 'billing' dead-lettered invoice.requested" in text
        assert "'invoice_id': 'i-1'" in text
        assert "after 3 attempt(s): TimeoutError: mail server slow" in text
        assert "Traceback (most recent call last)" in text and "in send" in text and "raise error" in text
        # And the dead letter stays listed with its headers
        [dead] = bus.dead_letters("billing")
        event = dead.event
        assert (dead.exception_type, dead.reason, dead.attempts) == ("TimeoutError", "mail server slow", 3)
        assert dead.headers["eda-worker"] == "billing" and event.data["invoice_id"] == "i-1"
        assert "raise error" in dead.traceback


def test_a_test_that_expects_dead_letters_says_so(billing):
    billing.failures = [PermanentError("no such customer")]
    with TestBus(billing) as bus:
        with bus.expect_dead_letters():
            bus.publish("invoice.requested", INVOICE)
        assert [(d.reason, d.attempts) for d in bus.dead_letters()] == [("no such customer", 1)]
        # and a block that expected one where none came fails
        with pytest.raises(AssertionError, match="expected a dead letter, but no event was dead-lettered"):
            with bus.expect_dead_letters():
                bus.publish("invoice.requested", INVOICE)


def test_dead_letters_may_be_allowed_for_the_whole_bus(billing):
    billing.failures = [PermanentError("no such customer")]
    with TestBus(billing, dead_letters="allow") as bus:
        bus.publish("invoice.requested", INVOICE)
        assert [d.exception_type for d in bus.dead_letters()] == ["PermanentError"]


def test_a_reaction_breaking_its_contract_dead_letters_the_event_at_once_and_sends_nothing(billing):
    billing.reaction = {"invoiceId": "i-1"}
    with TestBus(billing) as bus, bus.expect_dead_letters():
        bus.publish("invoice.requested", INVOICE)
        [dead] = bus.dead_letters()
        assert dead.exception_type == "ContractError" and dead.attempts == 1
        assert "unknown field 'invoiceId' (did you mean 'invoice_id'?)" in dead.reason
        assert bus.published("invoice.sent") == []


def test_an_open_circuit_gives_the_event_back_and_the_worker_takes_it_again_after_its_pause(billing):
    # Given a worker whose breaker is open at the first call
    billing.failures = [pybreaker.CircuitBreakerError("open")]
    with TestBus(billing) as bus:
        # When an event is published, then it is given back unhandled, no attempt counted, nothing dead
        event = bus.publish("invoice.requested", INVOICE)
        assert bus.given_back() == [("billing", event)] and bus.dead_letters() == []
        assert bus.published("invoice.sent") == []
        # And once the worker's circuit pause passed on the bus's clock, it is handled
        bus.advance(billing.circuit_pause)
        assert [e.data["invoice_id"] for e in bus.published("invoice.sent")] == ["i-1"]


def test_a_worker_that_records_processed_events_handles_a_duplicate_once(billing):
    # Given a worker without idempotency of its own: eda records what it processed
    billing.record_processed = True
    with TestBus(billing) as bus:
        # When the same event (same id) is published twice, as a producer's retry would
        event = bus.publish("invoice.requested", INVOICE)
        bus.publish(event)
        # Then the handler ran once and one invoice went out
        assert billing.calls == [event.id]
        assert len(bus.published("invoice.sent")) == 1


def test_an_event_whose_type_is_not_its_routing_key_is_refused_as_the_real_worker_refuses_it(invoices):
    # Given a worker handling both invoice events
    class Mailer(Worker):
        name = "mailer"
        seen = []

        @handles("invoice.requested")
        def requested(self, event, ctx):
            self.seen.append(event.type)

        @handles("invoice.sent")
        def sent(self, event, ctx):
            self.seen.append(event.type)

    with TestBus(Mailer) as bus, bus.expect_dead_letters():
        # When another client publishes an invoice.sent event with the routing key invoice.requested
        body = {"specversion": "1.0", "id": "e-1", "source": "other", "type": "invoice.sent",
                "datacontenttype": "application/json", "data": {"invoiceId": "i-1"}}
        conn = open_connection(bus.broker)
        conn.channel().basic_publish(Message(json.dumps(body).encode(), content_type="application/cloudevents+json"),
                                     exchange="testbus.events", routing_key="invoice.requested")
        conn.release()
        bus.advance(0)
        # Then it is dead-lettered at once as a contract failure, not handled
        [dead] = bus.dead_letters("mailer")
        assert dead.exception_type == "ContractError" and dead.attempts == 1
        assert dead.reason == "event type 'invoice.sent' does not match the routing key 'invoice.requested' it " \
                              "was published with"
        assert Mailer.seen == []


def test_an_ordered_worker_handles_each_key_in_order_retrying_a_failed_event_in_place(accounts):
    # Given account a's second event failing once
    accounts.failing = {("a", 2)}
    with TestBus(accounts, settings=Settings(retry_delays="10s")) as bus:
        # When a's events 1..3 and b's event 1 are published
        for account, seq in (("a", 1), ("a", 2), ("a", 3), ("b", 1)):
            bus.publish("account.changed", {"account_id": account, "seq": seq}, retries=False)
        # Then a's third event waits behind its second, held at the head of its partition
        assert [(a, s, o) for a, s, o in accounts.handled if a == "a"] == [("a", 1, "ok"), ("a", 2, "failed")]
        assert [(w, e.data["seq"]) for w, e in bus.retrying()] == [("accounts", 2)]
        assert ("b", 1, "ok") in accounts.handled  # another key is not held up
        # And once the retry is due, a's events go on in order
        bus.advance(10)
        assert [(a, s, o) for a, s, o in accounts.handled if a == "a"] == [
            ("a", 1, "ok"), ("a", 2, "failed"), ("a", 2, "ok"), ("a", 3, "ok")]


def test_an_ordered_worker_holds_an_event_an_open_circuit_refused_until_its_pause_passed(accounts):
    # Given account a's first event meeting an open circuit
    accounts.refused = {("a", 1)}
    with TestBus(accounts) as bus:
        # When a's events 1 and 2 and b's event 1 are published
        for account, seq in (("a", 1), ("a", 2), ("b", 1)):
            bus.publish("account.changed", {"account_id": account, "seq": seq})
        # Then a's first event is held (given back to its partition's head, no attempt counted), a's second waits
        assert [(w, e.data["account_id"], e.data["seq"]) for w, e in bus.given_back()] == [("accounts", "a", 1)]
        assert accounts.handled == [("b", 1, "ok")] and bus.dead_letters() == [] and bus.retrying() == []
        # And once the worker's circuit pause passed, a's events run in order
        bus.advance(accounts.circuit_pause)
        assert accounts.handled == [("b", 1, "ok"), ("a", 1, "ok"), ("a", 2, "ok")]


def test_an_ordered_worker_s_events_of_one_key_go_through_one_partition(accounts):
    with TestBus(accounts) as bus:
        partitions = [q for q in bus.broker.queues if q.startswith("testbus.accounts.p")]
        assert len(partitions) == bus.settings.partitions
        for account in ("a", "b", "c", "d"):
            for seq in (1, 2):
                bus.publish("account.changed", {"account_id": account, "seq": seq})
        assert [(a, s) for a, s, _ in accounts.handled if a == "a"] == [("a", 1), ("a", 2)]
        assert bus.runner.consumers[0].ordered


def test_an_ordered_worker_whose_contract_names_no_key_is_refused_at_start_as_eda_worker_refuses_it(invoices):
    class Ordered(Worker):
        name = "ordered"
        ordered_by = "invoice_id"

        @handles("invoice.requested")
        def handle(self, event, ctx):
            pass

    with pytest.raises(DefinitionError) as at_start:
        check_ordered(Ordered)  # what `eda worker ordered` runs when it starts (PartitionedConsumer)
    with pytest.raises(DefinitionError) as on_the_bus:
        with TestBus(Ordered):
            pass
    assert str(on_the_bus.value) == str(at_start.value)
    assert "names no key: declare it with @contract('invoice.requested', ..., key='invoice_id')" in str(at_start.value)


def test_a_worker_handling_an_unknown_event_type_is_refused_at_start(invoices):
    class Lost(Worker):
        name = "lost"

        @handles("no.such.event")
        def handle(self, event, ctx):
            pass

    with pytest.raises(UnknownEvent, match="worker 'lost' handles an unknown event"):
        with TestBus(Lost):
            pass


def test_a_worker_s_own_settings_are_arguments_of_the_bus(tmp_path):
    with TestBus(Inventory, settings=Settings(state_dir=tmp_path), options={"inventory": {"stock_threshold": 3}}) as bus:
        assert bus.worker("inventory").stock_threshold == 3
        bus.publish("stock.replenished", {"sku": "WIDGET", "quantity": 4})
        bus.publish("payment.succeeded", {"order_id": "o-1", "payment_id": "p-1", "amount": "10.00", "user_id": "u",
                                          "items": [{"sku": "WIDGET", "quantity": 1}]})
        assert [e.data for e in bus.published("inventory.depleted")] == [{"sku": "WIDGET", "remaining": 3}]


def test_the_bus_runs_one_handler_at_a_time_unless_told_otherwise(billing):
    with TestBus(billing) as bus:
        assert [c.concurrency for c in bus.runner.consumers] == [1]
    with TestBus(billing, concurrency=None, settings=Settings(concurrency=3)) as bus:
        assert [c.concurrency for c in bus.runner.consumers] == [3]


def test_handlers_run_on_handler_threads_as_under_eda_worker(billing):
    threads = []

    class Threaded(billing):
        @handles("invoice.requested")
        def send(self, event, ctx):
            threads.append(threading.current_thread().name)

    with TestBus(Threaded) as bus:
        bus.publish("invoice.requested", INVOICE)
    assert threads == ["eda-billing_0"]


def test_middleware_wraps_the_bus_s_publishes_and_the_workers_handling_as_in_one_process(billing):
    class Tenant(Middleware):
        """Adds a header to every publish; notes what each settled delivery carried and each handling."""

        def __init__(self):
            self.handled, self.seen = [], []

        def publish(self, message, call_next):
            message.headers["x-tenant"] = "acme"
            return call_next(message)

        def handle(self, event, ctx, call_next):
            self.handled.append(event.type)
            return call_next(event, ctx)

        def on_settled(self, delivery, outcome):
            self.seen.append((delivery.event.type, delivery.message.headers.get("x-tenant"), outcome))

    tenant = Tenant()
    with TestBus(billing, middleware=[tenant]) as bus:
        bus.publish("invoice.requested", INVOICE)
    assert tenant.handled == ["invoice.requested"]
    assert tenant.seen == [("invoice.requested", "acme", "ok")]


def test_publishing_invalid_data_raises_like_the_producer(billing):
    with TestBus(billing) as bus:
        with pytest.raises(ContractError, match="amount: Missing data"):
            bus.publish("invoice.requested", {"invoice_id": "i-1"})
        assert bus.published() == []


def test_the_bus_is_used_as_a_context_manager(billing):
    with pytest.raises(RuntimeError, match="as a context manager"):
        TestBus(billing).publish("invoice.requested", INVOICE)


def test_a_worker_setting_of_the_wrong_type_is_refused_at_start_as_eda_worker_refuses_it(tmp_path):
    options = {"inventory": {"stock_threshold": "lots"}}
    with pytest.raises(ConfigError) as on_the_bus:
        with TestBus(Inventory, settings=Settings(state_dir=tmp_path), options=options):
            pass
    with pytest.raises(ConfigError) as at_start:  # what `eda worker inventory --stock-threshold lots` makes
        Inventory(TestBus(Inventory, settings=Settings(state_dir=tmp_path), options=options).settings)
    assert str(on_the_bus.value) == str(at_start.value) and "'lots'" in str(at_start.value)


def test_a_handler_that_does_not_finish_fails_the_publish_after_the_bus_s_timeout(invoices):
    release = threading.Event()

    class Stuck(Worker):
        name = "stuck"

        @handles("invoice.requested")
        def wait(self, event, ctx):
            release.wait(10)

    try:
        with TestBus(Stuck, timeout=0.3) as bus:
            with pytest.raises(AssertionError, match=r"the bus did not settle within 0.3s: a handler still runs"):
                bus.publish("invoice.requested", INVOICE)
            release.set()
    finally:
        release.set()
