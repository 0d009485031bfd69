"""A test project for the request-reply tests (``EDA_APP=tests.integration.quotes_app``): a quote request
and its reply, answered by the same handler in each style: ``quotes`` (handler threads),
``quotes-inline`` (on the I/O thread) and ``quotes-async`` (``async def``).

The request's data says how to answer: ``answer`` is ``return`` (the handler returns the reply's data),
``ctx`` (``ctx.reply``), ``none`` (no reply), ``invalid`` (a reply that breaks its contract: no price);
``delayMs`` makes the handler take that long; ``failTimes`` makes it fail transiently that many times
(per process) before it answers. The reply echoes ``requestNo``, so a test can tell answers apart.
"""

import asyncio
import time
from collections import Counter
from decimal import Decimal

from marshmallow import fields, validate

from eda import EventData, Worker, contract, handles
from eda.fields import Id, Money


@contract("quote.given", description="The price of a quote.", published_by=())  # a reply only: never on the events exchange
class QuoteGiven(EventData):
    request_no = fields.Integer(required=True, strict=True)
    sku = Id(required=True)
    price = Money(required=True)


@contract("quote.requested", reply=QuoteGiven, description="A price is asked for.")
class QuoteRequested(EventData):
    request_no = fields.Integer(required=True, strict=True)
    sku = Id(required=True)
    quantity = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    answer = fields.String(load_default="return", validate=validate.OneOf(["return", "ctx", "none", "invalid"]))
    delay_ms = fields.Integer(load_default=0, validate=validate.Range(min=0, max=60_000))
    fail_times = fields.Integer(load_default=0, validate=validate.Range(min=0, max=10))


UNIT_PRICE = Decimal("2.50")


def quote(data: dict) -> dict:
    return {"request_no": data["request_no"], "sku": data["sku"], "price": UNIT_PRICE * data["quantity"]}


class Quotes(Worker):
    name = "quotes"
    description = "Prices quote requests (a test worker, handler threads)."

    def setup(self):
        self.failed = Counter()  # event id -> transient failures so far, in this process

    def _fail_if_asked(self, event):
        if self.failed[event.id] < event.data["fail_times"]:
            self.failed[event.id] += 1
            raise RuntimeError(f"transient failure {self.failed[event.id]} of request {event.data['request_no']}")

    @staticmethod
    def _answer(event, ctx):
        how = event.data["answer"]
        if how == "ctx":
            ctx.reply(quote(event.data))
            return None
        if how == "invalid":
            return {"request_no": event.data["request_no"], "sku": event.data["sku"]}  # no price
        return quote(event.data) if how == "return" else None

    @handles("quote.requested")
    def price(self, event, ctx):
        self._fail_if_asked(event)
        if event.data["delay_ms"]:
            time.sleep(event.data["delay_ms"] / 1000)
        return self._answer(event, ctx)


class InlineQuotes(Quotes):
    name = "quotes-inline"
    description = "Prices quote requests (a test worker, inline)."
    inline = True


class AsyncQuotes(Worker):
    name = "quotes-async"
    description = "Prices quote requests (a test worker, async def)."

    async def setup(self):
        self.failed = Counter()

    @handles("quote.requested")
    async def price(self, event, ctx):
        Quotes._fail_if_asked(self, event)
        if event.data["delay_ms"]:
            await asyncio.sleep(event.data["delay_ms"] / 1000)
        return Quotes._answer(event, ctx)
