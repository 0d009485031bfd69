"""A separate package adds a worker through the `eda.workers` entry point, without editing eda."""

import json
import textwrap

import pytest

from tests.support import handled

pytestmark = pytest.mark.integration

PLUGIN = '''
from eda.worker import Worker, handles


class Billing(Worker):
    name = "billing"
    description = "Invoices placed orders (a plug-in from another package)."

    @handles("order.placed")
    def invoice(self, event, ctx):
        self.log.info("invoiced %s", event.data["order_id"], extra={"worker": self.name})
'''


@pytest.fixture
def plugin_path(tmp_path):
    """An installed distribution `acme-billing` with one module and its entry point."""
    site = tmp_path / "site"
    (site / "acme_billing-1.0.dist-info").mkdir(parents=True)
    (site / "acme_billing.py").write_text(PLUGIN)
    (site / "acme_billing-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-billing\n"
                                                                  "Version: 1.0\n")
    (site / "acme_billing-1.0.dist-info" / "entry_points.txt").write_text(textwrap.dedent("""
        [eda.workers]
        billing = acme_billing:Billing
    """))
    return str(site)


def test_a_worker_from_another_package_is_listed_and_runs(eda, broker, namespace, plugin_path, make_order):
    try:
        code, output = eda.run("events", PYTHONPATH=plugin_path)
        assert code == 0
        assert [line for line in output.splitlines() if line.startswith("order-placed")][0].split()[2] \
            == "billing,order-saga,payment"
        worker = eda.worker("billing", PYTHONPATH=plugin_path)
        order = make_order()
        assert eda.run("publish", "order-placed", "--data", json.dumps(order))[0] == 0
        worker.wait_for_log(handled("order.placed", worker="billing"))
        worker.wait_for_log(lambda r: r.get("message") == f"invoiced {order['orderId']}")
    finally:
        eda.stop_all()  # the worker first, or it would consume from queues being deleted
        broker.channel.queue_delete(f"{namespace}.billing")
        broker.channel.queue_delete(f"{namespace}.billing.dlq")
        for delay in ("200ms", "400ms"):
            broker.channel.queue_delete(f"{namespace}.billing.retry.{delay}")
