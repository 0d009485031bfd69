"""Fixtures of the unit tests."""

from datetime import timedelta

import pytest
from marshmallow import fields

from eda import EventData, Saga, contract, handles, starts
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


@pytest.fixture
def trips(own_contracts):
    """A booking flow: booked (starts), paid, cancelled, a payment deadline, and what the saga publishes."""

    @contract("trip.booked")
    class TripBooked(EventData):
        trip_id = Id(required=True)
        seats = fields.Integer(required=True)
        price = Money(required=True)

    @contract("trip.paid")
    class TripPaid(EventData):
        trip_id = Id(required=True)

    @contract("trip.payment-due")
    class PaymentDue(EventData):
        trip_id = Id(required=True)

    @contract("trip.confirmed")
    class TripConfirmed(EventData):
        trip_id = Id(required=True)
        seats = fields.Integer(required=True)

    @contract("trip.released")
    class TripReleased(EventData):
        trip_id = Id(required=True)

    class Trips(Saga):
        name = "trips"
        correlation = "trip_id"
        status = fields.String()
        seats = fields.Integer()
        price = Money()
        history = fields.List(fields.String(), load_default=list)
        runs = []  # (key, event type) of every handler run

        @starts("trip.booked")
        def booked(self, event, ctx):
            self.runs.append((self.key, event.type))
            self.status = self.status or "booked"
            self.seats, self.price = event.data["seats"], event.data["price"]
            self.history = [*self.history, "booked"]
            self.schedule_timeout("trip.payment-due", {"trip_id": self.key}, delay=timedelta(minutes=15))

        @starts("trip.paid")  # a payment may come first (published by hand, another flow): it starts one too
        def paid(self, event, ctx):
            self.runs.append((self.key, event.type))
            self.history = [*self.history, "paid"]
            if self.status == "booked":
                self.status = "confirmed"
                ctx.publish("trip.confirmed", {"trip_id": self.key, "seats": self.seats})
                self.complete()
            else:
                self.status = "paid"

        @handles("trip.payment-due")
        def due(self, event, ctx):
            self.runs.append((self.key, event.type))
            if self.status == "booked":
                self.status = "released"
                ctx.publish("trip.released", {"trip_id": self.key})
                self.complete()

    Trips.runs = []
    return Trips
