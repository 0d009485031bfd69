"""A contract class names its event wherever an event type is taken: the registry, ``@handles``,
``ctx.publish``, ``Producer.publish``, ``TestBus.publish``/``published``, ``Outbox.add``. No broker."""

import json

import kombu
import pytest

from eda import EventData, Producer, Settings, Worker, contract, handles
from eda.connection import open_connection
from eda.contracts import registry
from eda.contracts.envelope import new_event
from eda.errors import UnknownEvent
from eda.fields import Id, Money
from eda.outbox import Outbox
from eda.testing import TestBus
from eda.worker import Context


@pytest.fixture
def events(own_contracts):
    """A project's events, kept as the classes ``@contract`` returns."""

    @contract("invoice.requested")
    class InvoiceRequested(EventData):
        invoice_id = Id(required=True)
        amount = Money(required=True)

    @contract("invoice.sent", name="sent-invoice")
    class InvoiceSent(EventData):
        invoice_id = Id(required=True)

    return InvoiceRequested, InvoiceSent


@pytest.fixture
def billing(events):
    requested, sent = events

    class Billing(Worker):
        name = "billing"

        @handles(requested)
        def send(self, event, ctx):
            ctx.publish(sent, {"invoice_id": event.data["invoice_id"]})

    return Billing


def test_the_decorator_returns_the_class_and_the_registry_finds_its_contract_by_it(events):
    requested, sent = events
    assert issubclass(requested, EventData)
    assert registry.get(requested) is registry.get("invoice.requested") is registry.get("invoice-requested")
    assert registry.get(sent) is registry.get("sent-invoice")
    assert registry.get(registry.get(sent)) is registry.get(sent)  # a Contract is its own reference


def test_a_subclass_of_a_contract_class_is_not_that_contract(events):
    requested, _ = events

    class Amended(requested):
        pass

    with pytest.raises(UnknownEvent, match=r"Amended is not a contract: .* @contract"):
        registry.get(Amended)


def test_an_event_data_class_without_contract_is_refused_with_the_fix(own_contracts):
    class Draft(EventData):
        invoice_id = Id()

    with pytest.raises(UnknownEvent, match=r"test_contract_classes\..*Draft is not a contract"):
        registry.get(Draft)


def test_something_else_is_refused_saying_what_an_event_type_is():
    with pytest.raises(UnknownEvent, match="a type or CLI name .* or a @contract class, not int 42"):
        registry.get(42)


def test_a_handler_marked_with_a_class_handles_its_type(billing):
    assert billing.handlers == {"invoice.requested": "send"}


def test_ctx_publish_takes_the_class(events):
    requested, sent = events
    handled = new_event(requested, {"invoice_id": "i-1", "amount": 5}, "tests")
    ctx = Context(handled, "eda/billing")
    reaction = ctx.publish(sent, {"invoice_id": "i-1"})
    [(queued, body)] = ctx.reactions
    assert queued is reaction and reaction.type == "invoice.sent"
    assert json.loads(body)["type"] == "invoice.sent" and reaction.causation_id == handled.id


def test_testbus_publish_and_published_take_classes(events, billing):
    requested, sent = events
    with TestBus(billing) as bus:
        bus.publish(requested, {"invoice_id": "i-1", "amount": "5.00"})
        assert [e.data["invoice_id"] for e in bus.published(sent)] == ["i-1"]
        assert [e.type for e in bus.published(requested)] == ["invoice.requested"]
        assert bus.dead_letters() == []


def test_producer_publish_takes_the_class(events):
    requested, _ = events
    settings = Settings(broker_url="memory://", namespace="classes")
    with open_connection(Settings(broker_url="memory://")) as conn:  # eda's in-memory broker of the process
        queue = kombu.Queue("classes.spy", kombu.Exchange("classes.events", "topic"), "invoice.#")
        queue(conn.channel()).declare()
        with Producer(settings, source="tests") as producer:
            event = producer.publish(requested, {"invoice_id": "i-2", "amount": 7})
        message = queue(conn.channel()).get(no_ack=True)
    assert event.type == "invoice.requested"
    assert json.loads(message.body)["data"] == {"invoiceId": "i-2", "amount": "7.00"}


def test_outbox_add_takes_the_class(events, tmp_path):
    requested, _ = events
    outbox = Outbox(Settings(state_dir=tmp_path, namespace="classes"))
    conn = outbox.connect()
    with conn:
        event = outbox.add(conn, requested, {"invoice_id": "i-3", "amount": 1})
    [(event_type,)] = conn.execute("SELECT event_type FROM outbox").fetchall()
    conn.close()
    assert event.type == event_type == "invoice.requested"
