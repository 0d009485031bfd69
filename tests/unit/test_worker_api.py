"""The API a team writes its service with: contracts it registers, handlers, reactions validated where
they are made. No broker."""

import json

import pytest

from eda import ContractError, EventData, Worker, contract, handles
from eda.contracts.envelope import decode, new_event
from eda.contracts.registry import get
from eda.errors import DefinitionError, UnknownEvent
from eda.fields import Id, Money
from eda.worker import RESERVED, Context, dispatch


def handled_order():
    return new_event("inventory.reserved", {"order_id": "o-1", "items": [{"sku": "A", "quantity": 1}]}, "tests")


def test_a_reaction_is_validated_and_published_in_its_wire_form():
    ctx = Context(handled_order(), "eda/shipping")
    ctx.publish("order.shipped", {"order_id": "o-1", "tracking_number": "1Z", "carrier": "UPS"})
    [(reaction, body)] = ctx.reactions
    assert reaction.data == {"order_id": "o-1", "tracking_number": "1Z", "carrier": "UPS"}
    assert json.loads(body)["data"] == {"orderId": "o-1", "trackingNumber": "1Z", "carrier": "UPS"}
    assert decode(body).data == reaction.data


def test_a_reaction_with_wire_keys_fails_naming_each_key_and_queues_nothing():
    ctx = Context(handled_order(), "eda/shipping")
    with pytest.raises(ContractError) as err:
        ctx.publish("order.shipped", {"orderId": "o-1", "trackingNumber": "1Z", "carrier": "UPS"})
    assert "unknown field 'orderId' (did you mean 'order_id'?)" in str(err.value)
    assert "unknown field 'trackingNumber' (did you mean 'tracking_number'?)" in str(err.value)
    assert ctx.reactions == []


@pytest.mark.parametrize("data, message", [
    ({"order_id": "o-1", "carrier": "UPS"}, "tracking_number: Missing data for required field."),
    ({"order_id": "o-1", "tracking_number": "", "carrier": "UPS"}, "tracking_number:"),
    ({"order_id": "o-1", "tracking_number": "1Z", "carrier": "UPS", "weight": 3}, "unknown field 'weight'"),
])
def test_an_invalid_reaction_fails_the_handler_with_the_python_field_name(data, message):
    with pytest.raises(ContractError, match="order.shipped: invalid data: .*" + message.replace("(", r"\(")):
        Context(handled_order(), "eda/shipping").publish("order.shipped", data)


def test_nested_items_are_checked_for_unknown_keys_too():
    data = {"order_id": "o-1", "items": [{"sku": "A", "quantity": 1, "unitPrice": "1.00"}]}
    with pytest.raises(ContractError, match=r"unknown field 'items.0.unitPrice' \(did you mean 'unit_price'\?\)"):
        Context(handled_order(), "eda/inventory").publish("inventory.reserved", data)


def test_money_that_cannot_be_written_names_its_field():
    with pytest.raises(ContractError, match="amount: Not a valid number"):
        Context(handled_order(), "eda/payment").publish(
            "payment.refunded", {"order_id": "o-1", "payment_id": "p", "amount": "ten"})


def test_handle_is_an_ordinary_handler_name():
    class Echo(Worker):
        name = "echo"

        @handles("order.placed")
        def handle(self, event, ctx):
            self.seen = event.data["order_id"]

    worker = Echo(settings=None)
    event = new_event("order.placed", get("order.placed").load(
        {"orderId": "o-1", "userId": "u", "totalAmount": 1, "items": [{"sku": "A", "quantity": 1}]}), "tests")
    dispatch(worker, event)
    assert worker.seen == "o-1"


@pytest.mark.parametrize("reserved", sorted(RESERVED))
def test_a_reserved_handler_name_is_an_error_when_the_class_is_created(reserved):
    with pytest.raises(DefinitionError, match=f"cannot be named '{reserved}'"):
        type("Bad", (Worker,), {"name": "bad", reserved: handles("order.placed")(lambda self, event, ctx: None)})


def test_a_contract_registers_under_its_type_and_a_dashed_cli_name(own_contracts):
    @contract("invoice.requested", description="An invoice should be sent.")
    class InvoiceRequested(EventData):
        invoice_id = Id(required=True)
        amount = Money(required=True)

    assert get("invoice-requested") is get("invoice.requested") is InvoiceRequested.eda_contract
    assert get("invoice.requested").fields == [("invoiceId", True), ("amount", True)]
    assert get("invoice.requested").description == "An invoice should be sent."


def test_the_same_type_with_another_schema_is_an_error_naming_both_places(own_contracts):
    @contract("invoice.requested")
    class First(EventData):
        invoice_id = Id(required=True)

    with pytest.raises(DefinitionError) as err:
        @contract("invoice.requested")
        class Second(EventData):
            invoice = Id(required=True)
    assert "First" in str(err.value) and "Second" in str(err.value) and "invoice.requested" in str(err.value)


def test_the_same_schema_registered_again_is_the_same_contract(own_contracts):
    def define():
        @contract("invoice.requested")
        class InvoiceRequested(EventData):
            invoice_id = Id(required=True)
        return InvoiceRequested

    assert define().eda_contract is define().eda_contract


def test_a_worker_may_be_defined_before_the_contracts_it_handles(own_contracts):
    class Billing(Worker):
        name = "billing"

        @handles("invoice-requested")
        def send(self, event, ctx):
            ctx.publish("invoice.sent", {"invoice_id": event.data["invoice_id"]})

    with pytest.raises(UnknownEvent, match="worker 'billing' handles an unknown event 'invoice-requested'"):
        Billing.handlers

    @contract("invoice.requested")
    class InvoiceRequested(EventData):
        invoice_id = Id(required=True)

    @contract("invoice.sent", published_by=("billing",))
    class InvoiceSent(EventData):
        invoice_id = Id(required=True)

    assert Billing.handlers == {"invoice.requested": "send"}
    ctx = dispatch(Billing(settings=None), new_event("invoice.requested", {"invoice_id": "i-1"}, "tests"))
    assert [r.type for r, _ in ctx.reactions] == ["invoice.sent"]


def test_start_errors_are_config_errors_unknown_event_for_a_name_definition_error_for_the_rest(invoices, tmp_path):
    from pathlib import Path

    from eda.errors import ConfigError
    from eda.runtime.runner import Runner
    from eda.settings import Settings
    from eda.testing import TestBus

    class Misspelt(Worker):
        name = "misspelt"

        @handles("invoice.requestd")
        def send(self, event, ctx):
            pass

    class Nameless(Worker):
        @handles("invoice.requested")
        def send(self, event, ctx):
            pass

    def on_the_bus(cls):
        with TestBus(cls, settings=Settings(state_dir=tmp_path)):
            pass

    def by_a_runner(cls):
        Runner([cls], Settings(state_dir=tmp_path))

    # Given a worker handling an event name no contract knows, and one without a name
    for start in (on_the_bus, by_a_runner):
        # When each is started by a Runner or a TestBus
        # Then the unknown name is an UnknownEvent: a ConfigError, not a DefinitionError
        with pytest.raises(UnknownEvent) as unknown:
            start(Misspelt)
        assert isinstance(unknown.value, ConfigError) and not isinstance(unknown.value, DefinitionError)
        # naming the closest known event
        assert str(unknown.value).startswith("worker 'misspelt' handles an unknown event 'invoice.requestd' (did you "
                                             "mean 'invoice.requested'?); known events: ")
        # And the nameless worker a DefinitionError
        with pytest.raises(DefinitionError):
            start(Nameless)
    # And the docs say which is raised when
    api = " ".join((Path(__file__).parents[2] / "docs" / "api.md").read_text().split())
    assert ("is a `ConfigError` (`eda worker` prints one line `error: ...` and exits 2; `Runner(...)` raises it; "
            "`TestBus` raises it on enter): `UnknownEvent` for a handled event name no contract knows, "
            "`DefinitionError` for the rest") in api
