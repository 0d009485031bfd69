"""Fixtures of the unit tests."""

import pytest

from eda import EventData, contract
from eda.fields import Id, Money
from tests.registry_scope import registry_kept


@pytest.fixture
def own_contracts():
    """Contracts a test registers are forgotten after it, so that tests cannot see each other's."""
    with registry_kept():
        yield


@pytest.fixture
def invoices(own_contracts):
    """A project's own events, as README's "Writing a service" has them: invoice.requested and invoice.sent."""

    @contract("invoice.requested", description="An invoice should be sent.")
    class InvoiceRequested(EventData):
        invoice_id = Id(required=True)
        amount = Money(required=True)

    @contract("invoice.sent", published_by=("billing",))
    class InvoiceSent(EventData):
        invoice_id = Id(required=True)
