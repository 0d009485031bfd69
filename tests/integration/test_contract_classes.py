"""A worker that names its events by their contract classes (``@handles(InvoiceRequested)``,
``ctx.publish(InvoiceSent, ...)``) runs under ``eda worker`` like one that names them by strings."""

import json
import textwrap

import pytest

from tests.support import handled

pytestmark = pytest.mark.integration

PROJECT = {
    "invoicing/__init__.py": "",
    "invoicing/events.py": '''
        from eda import EventData, contract
        from eda.fields import Id, Money


        @contract("invoice.requested")
        class InvoiceRequested(EventData):
            invoice_id = Id(required=True)
            amount = Money(required=True)


        @contract("invoice.sent", published_by=("invoicing",))
        class InvoiceSent(EventData):
            invoice_id = Id(required=True)
            amount = Money(required=True)
    ''',
    "invoicing/worker.py": '''
        from eda import Worker, handles
        from invoicing.events import InvoiceRequested, InvoiceSent


        class Invoicing(Worker):
            name = "invoicing"

            @handles(InvoiceRequested)
            def send(self, event, ctx):
                ctx.publish(InvoiceSent, {"invoice_id": event.data["invoice_id"], "amount": event.data["amount"]})
    ''',
}


@pytest.fixture
def project(tmp_path, eda, broker, namespace):
    root = tmp_path / "invoicing-project"
    for path, text in PROJECT.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(textwrap.dedent(text).lstrip())
    eda.cwd = root
    yield root
    eda.stop_all()  # the worker first, or it would consume from queues being deleted
    for suffix in ("", ".dlq", ".retry.200ms", ".retry.400ms"):
        broker.channel.queue_delete(f"{namespace}.invoicing{suffix}")


def test_a_worker_naming_its_events_by_class_handles_and_reacts(eda, broker, project):
    app = {"EDA_APP": "invoicing.worker"}
    worker = eda.worker("invoicing", **app)
    spy = broker.spy("invoice.sent")
    code, output = eda.run("publish", "invoice-requested", "--data", json.dumps({"invoiceId": "i-1", "amount": 5}),
                           **app)
    assert code == 0, output
    worker.wait_for_log(handled("invoice.requested", worker="invoicing"))
    [sent] = spy.wait_for("invoice.sent")
    assert sent["data"] == {"invoiceId": "i-1", "amount": "5.00"} and sent["source"] == "eda/invoicing"
