"""TestBus: a project's workers run on an in-memory bus, the real path without a broker."""

import pybreaker
import pytest

from eda import ContractError, PermanentError, Worker, handles
from eda.settings import Settings
from eda.testing import TestBus


@pytest.fixture
def billing(invoices):
    class Billing(Worker):
        name = "billing"
        failures = []  # what each call does: an exception to raise, or None to succeed
        reaction = None  # the data published, if not the usual one

        @handles("invoice.requested")
        def send(self, event, ctx):
            if self.failures:
                error = self.failures.pop(0)
                if error is not None:
                    raise error
            ctx.publish("invoice.sent", self.reaction or {"invoice_id": event.data["invoice_id"]})

    return Billing


def test_billing_sends_invoices(billing):
    with TestBus(billing) as bus:
        bus.publish("invoice.requested", {"invoice_id": "i-1", "amount": "5.00"})
        assert [e.data["invoice_id"] for e in bus.published("invoice.sent")] == ["i-1"]
        assert bus.dead_letters() == []


def test_a_transient_failure_is_retried_without_waiting(billing):
    billing.failures = [TimeoutError("mail server slow"), None]
    with TestBus(billing, settings=Settings(retry_delays="1h,2h")) as bus:
        bus.publish("invoice.requested", {"invoice_id": "i-1", "amount": "5.00"})
        assert len(bus.published("invoice-sent")) == 1
        assert bus.dead_letters() == []


def test_failures_beyond_the_retry_delays_are_dead_lettered_with_their_reason(billing):
    billing.failures = [TimeoutError("mail server slow")] * 3
    with TestBus(billing, settings=Settings(retry_delays="1s,5s")) as bus:
        bus.publish("invoice.requested", {"invoice_id": "i-1", "amount": "5.00"})
        [dead] = bus.dead_letters("billing")
        assert (dead.exception_type, dead.reason, dead.attempts) == ("TimeoutError", "mail server slow", 3)
        assert dead.headers["eda-worker"] == "billing" and dead.event.data["invoice_id"] == "i-1"
        assert bus.published("invoice.sent") == []


def test_a_permanent_error_is_dead_lettered_at_once(billing):
    billing.failures = [PermanentError("no such customer")]
    with TestBus(billing) as bus:
        bus.publish("invoice.requested", {"invoice_id": "i-1", "amount": "5.00"})
        assert [(d.reason, d.attempts) for d in bus.dead_letters()] == [("no such customer", 1)]


def test_a_reaction_breaking_its_contract_dead_letters_the_event_at_once_and_sends_nothing(billing):
    billing.reaction = {"invoiceId": "i-1"}
    with TestBus(billing) as bus:
        bus.publish("invoice.requested", {"invoice_id": "i-1", "amount": "5.00"})
        [dead] = bus.dead_letters()
        assert dead.exception_type == "ContractError" and dead.attempts == 1
        assert "unknown field 'invoiceId' (did you mean 'invoice_id'?)" in dead.reason
        assert bus.published("invoice.sent") == []


def test_an_open_circuit_gives_the_event_back_unhandled(billing):
    billing.failures = [pybreaker.CircuitBreakerError("open")]
    with TestBus(billing) as bus:
        event = bus.publish("invoice.requested", {"invoice_id": "i-1", "amount": "5.00"})
        assert bus.given_back() == [("billing", event)] and bus.dead_letters() == []


def test_publishing_invalid_data_raises_like_the_producer(billing):
    with TestBus(billing) as bus:
        with pytest.raises(ContractError, match="amount: Missing data"):
            bus.publish("invoice.requested", {"invoice_id": "i-1"})
        assert bus.published() == []
