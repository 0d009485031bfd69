"""Fixtures of the unit tests."""

import pytest

from eda import EventData, contract
from eda.contracts import registry, versions
from eda.fields import Id, Money


@pytest.fixture
def own_contracts():
    """Contracts a test registers are forgotten after it, so that tests cannot see each other's."""
    tables = (registry._CONTRACTS, registry._BY_KEY, versions._VERSIONS, versions._UPCASTERS)
    saved = [{k: dict(v) if isinstance(v, dict) else v for k, v in table.items()} for table in tables]
    yield
    for table, before in zip(tables, saved):
        table.clear()
        table.update(before)


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
