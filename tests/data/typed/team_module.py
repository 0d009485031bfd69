"""A team's module written against eda's public API, for tests/unit/test_types.py: mypy --strict must
accept it as it is, each ``assert_type`` saying what eda's annotations promise a user gets."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import assert_type

from eda import (Breaker, Context, Event, EventData, Outbox, Producer, Scheduled, Settings, Setting, Worker,
                 contract, delete_topology, handles, open_store, partition_headers, running, stamp, watch)
from eda.commands import COMMON, settings_options
from eda.errors import EdaError
from eda.fields import Currency, Id, Money
from eda.testing import TestBus


@contract("invoice.requested", key="invoice_id")
class InvoiceRequested(EventData):
    invoice_id = Id(required=True)
    amount = Money(required=True)
    currency = Currency()


@contract("invoice.sent")
class InvoiceSent(EventData):
    invoice_id = Id(required=True)


class MailDown(EdaError):
    """The team's own expected error."""


class Billing(Worker):
    name = "billing"

    def setup(self) -> None:
        self.breaker = Breaker(fail_max=3, reset_timeout=10, name="mail")
        self.store = open_store(self.settings, "billing", "CREATE TABLE IF NOT EXISTS t (x TEXT)")

    def teardown(self) -> None:
        self.store.close()

    @handles(InvoiceRequested)
    def send(self, event: Event, ctx: Context) -> None:
        assert_type(ctx.publish(InvoiceSent, {"invoice_id": event.data["invoice_id"]}), Event)
        assert_type(ctx.publish(InvoiceSent, {"invoice_id": "1"}, delay=timedelta(minutes=15)), Event)
        assert_type(self.breaker.call(len, "abc"), int)
        with self.store.transaction() as tx:
            tx.execute("INSERT INTO t VALUES (?)", ("x",))

    @handles("invoice.sent")
    async def sent(self, event: Event, ctx: Context) -> None:
        async def deliver() -> str:
            return "ok"

        assert_type(await self.breaker.call_async(deliver), str)


def main() -> None:
    settings = Settings.from_env()
    assert_type(settings.with_(namespace="x"), Settings)
    with Producer(settings, source="billing") as producer:
        assert_type(producer.publish(InvoiceRequested, {"invoice_id": "1", "amount": Decimal(1)}), Event)
        later = producer.publish(InvoiceRequested, {"invoice_id": "1", "amount": 1}, at=datetime.now(timezone.utc))
        assert_type(producer.cancel(later.id), bool)
    outbox = Outbox(settings)
    with outbox.connect() as conn:
        event = outbox.add(conn, InvoiceRequested, {"invoice_id": "2", "amount": 1})
        assert_type(event, Event)
    assert_type(stamp(event), Event)
    assert_type(partition_headers(event), dict[str, str])
    waiting: list[Scheduled] = outbox.scheduled()
    with running(Billing, settings=settings) as workers:
        assert_type(workers.worker("billing"), Worker)
    with watch(settings, "invoice.*") as tail:
        for wire in tail.events(timeout=1):
            assert_type(tail.describe(wire), str)
    delete_topology(settings, Billing, "other")
    assert_type(InvoiceRequested, type[InvoiceRequested])


class Mailer(Worker):
    name = "mailer"
    mail_host = Setting("localhost", "SMTP host.")
    mail_port = Setting(25, "SMTP port.", low=1, high=65535)
    send_timeout = Setting(30, "Seconds a mail may take to send.", type=float)
    relay = Setting(None, "A relay host; unset, none.")
    max_recipients = Setting(None, "Recipients per mail; unset, no limit.", type=int)
    signed: Setting[bool] = Setting(False, "Sign each mail.")
    api_url = Setting(help="The mail API's URL.", required=True)
    retries = Setting(type=int, required=True)

    @handles(InvoiceSent)
    def mail(self, event: Event, ctx: Context) -> None:
        assert_type(self.mail_host, str)
        assert_type(self.mail_port, int)
        assert_type(self.send_timeout, float)
        assert_type(self.relay, str | None)
        assert_type(self.max_recipients, int | None)
        assert_type(self.signed, bool)
        assert_type(self.api_url, str)
        assert_type(self.retries, int)
        assert_type(Mailer.mail_port, Setting[int])
        self.log.info("mailing through %s:%d", self.mail_host, self.mail_port + 0)


@settings_options(*COMMON)
def report(settings: Settings) -> None:
    raise MailDown("the mail server is down")


def test_billing() -> None:
    with TestBus(Billing, dead_letters="allow") as bus:
        assert_type(bus.publish(InvoiceRequested, {"invoice_id": "3", "amount": 1}), Event)
        assert_type(bus.published(InvoiceSent), list[Event])
        assert_type(bus.worker("billing"), Worker)
