"""`eda demo`: the reference shop's whole order flow in one command, with a live view and a summary.

The shop adds the command to the CLI through its ``eda.commands`` entry point.

The three workers run in this process (``eda.running``) in a namespace of their own, so a demo
never touches a real deployment's queues; everything it declares is deleted at the end. Without a
broker (or with --embedded) it runs on eda's in-memory broker (``memory://``), through the same runtime path.
"""

import logging
import shutil
import sys
import tempfile
import uuid
from contextlib import ExitStack
from decimal import Decimal

import click

import eda_shop.contracts  # noqa: F401  (registers the shop's events)
from eda import Producer, Settings, delete_topology, running, watch
from eda.commands import COMMON, settings_options
from eda.errors import BrokerUnavailable
from eda_shop.workers.inventory import Inventory
from eda_shop.workers.payment import Payment
from eda_shop.workers.shipping import Shipping

WORKERS = (Payment, Inventory, Shipping)

STOCK = {"WIDGET": 20, "GADGET": 2}
# (order id, what should happen, amount, items, the event that ends its story)
ORDERS = (
    ("demo-1", "paid, reserved and shipped", "39.98", {"WIDGET": 2}, "order.shipped"),
    ("demo-2", "over the gateway's limit: declined", "25000.00", {"WIDGET": 1}, "payment.failed"),
    ("demo-3", "more gadgets than in stock: cancelled and refunded", "150.00", {"GADGET": 5}, "payment.refunded"),
    ("demo-4", "widgets down to the threshold: shipped, stock depleted", "299.85", {"WIDGET": 15}, "order.shipped"),
)


def _publish_samples(producer: Producer) -> None:
    for sku, quantity in STOCK.items():
        producer.publish("stock.replenished", {"sku": sku, "quantity": quantity})
    for order_id, _, amount, items, _ in ORDERS:
        producer.publish("order.placed", {
            "order_id": order_id, "user_id": "demo-user", "total_amount": Decimal(amount), "currency": "USD",
            "items": [{"sku": sku, "quantity": qty} for sku, qty in items.items()]})


def _watch_a_broker(stack: ExitStack, demo: Settings, embedded: bool):
    """The live view, on the configured broker, or in memory when asked or when none answers; and
    the settings the demo runs with there."""
    if not embedded:
        try:
            return stack.enter_context(watch(demo, connect_timeout=3)), demo
        except BrokerUnavailable as exc:
            click.echo(f"{exc}\nno broker answers: running embedded on eda's in-memory broker", err=True)
    demo = demo.with_(broker_url="memory://")
    return stack.enter_context(watch(demo)), demo


def run_demo(settings: Settings, *, embedded: bool = False, timeout: float = 30.0) -> int:
    state_dir = tempfile.mkdtemp(prefix="eda-demo-")
    demo = settings.with_(namespace=f"{settings.namespace}-demo-{uuid.uuid4().hex[:6]}", state_dir=state_dir,
                          broker_url_file=None, retry_delays="",
                          worker_options={"payment": {"gateway_url": ""}})  # the gateway simulated in process
    logging.getLogger("eda").setLevel(logging.WARNING)  # the live view below is the demo's output
    outcome = {}
    try:
        with ExitStack() as stack:
            tail, demo = _watch_a_broker(stack, demo, embedded)
            if demo.broker_url != "memory://":  # everything the demo declared goes at the end
                stack.callback(delete_topology, demo, *WORKERS)
            where = "in memory" if demo.broker_url == "memory://" else demo.safe_broker_url
            click.echo(f"eda demo: workers {', '.join(w.name for w in WORKERS)} in namespace {demo.namespace} "
                       f"({where})")
            stack.enter_context(running(*WORKERS, settings=demo))
            with Producer(demo, source="eda/demo") as producer:
                _publish_samples(producer)
            endings = {order_id: end for order_id, _, _, _, end in ORDERS}
            for wire in tail.events(timeout=timeout, until=lambda: len(outcome) == len(ORDERS)):
                click.echo("  " + tail.describe(wire))
                order_id = (wire.get("data") or {}).get("orderId")
                if order_id in endings and wire.get("type") == endings[order_id]:
                    outcome[order_id] = wire["type"]
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    return _summary(outcome)


def _summary(outcome: dict) -> int:
    click.echo("\nsummary:")
    ok = True
    for order_id, story, _, _, end in ORDERS:
        got = outcome.get(order_id)
        ok &= got == end
        click.echo(f"  {order_id}: {story:<55} {'ok' if got == end else 'MISSING ' + end}")
    return 0 if ok else 1


@click.command("demo")
@click.option("--embedded", is_flag=True, help="Run in one process on eda's in-memory broker.")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for the flow to finish.")
@settings_options(*COMMON)
def command(embedded, timeout, settings):
    """Run the whole order flow: the three workers, sample orders, a live view and a summary."""
    sys.exit(run_demo(settings, embedded=embedded, timeout=timeout))
