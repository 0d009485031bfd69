"""`eda demo`: the reference shop's whole order flow in one command, with a live view and a summary.

The shop adds the command to the CLI through its ``eda.commands`` entry point.

The three workers run in this process (a Runner on a thread) in a namespace of their own, so a demo
never touches a real deployment's queues; everything it declares is deleted at the end. Without a
broker (or with --embedded) it runs on kombu's in-memory transport.
"""

import logging
import shutil
import sys
import tempfile
import threading
import uuid
from decimal import Decimal

import click
import kombu

import eda_shop.contracts  # noqa: F401  (registers the shop's events)
from eda.cli_support import COMMON, settings_options
from eda.connection import is_amqp, open_connection
from eda.contracts.envelope import new_event
from eda.errors import BrokerUnavailable
from eda.publishing.publisher import Publisher
from eda.runtime.runner import Runner
from eda.settings import Settings
from eda.tail import Tail, describe
from eda.topology import Topology
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


def _events(source: str) -> list:
    events = [new_event("stock.replenished", {"sku": sku, "quantity": qty}, source) for sku, qty in STOCK.items()]
    for order_id, _, amount, items, _ in ORDERS:
        events.append(new_event("order.placed", {
            "order_id": order_id, "user_id": "demo-user", "total_amount": Decimal(amount), "currency": "USD",
            "items": [{"sku": sku, "quantity": qty} for sku, qty in items.items()]}, source))
    return events


def _connect_or_embed(settings: Settings, embedded: bool) -> str:
    """The URL the demo runs on: the configured broker, or memory:// when asked or when none answers."""
    if embedded:
        return "memory://"
    try:
        open_connection(settings, timeout=3).release()
        return settings.broker_url
    except BrokerUnavailable as exc:
        click.echo(f"{exc}\nno broker answers: running embedded on kombu's in-memory transport", err=True)
        return "memory://"


def run_demo(settings: Settings, *, embedded: bool = False, timeout: float = 30.0) -> int:
    url = _connect_or_embed(settings, embedded)
    state_dir = tempfile.mkdtemp(prefix="eda-demo-")
    demo = settings.with_(namespace=f"{settings.namespace}-demo-{uuid.uuid4().hex[:6]}", state_dir=state_dir,
                          broker_url=url, broker_url_file=None, retry_delays="",
                          worker_options={"payment": {"gateway_url": ""}})  # the gateway simulated in process
    logging.getLogger("eda").setLevel(logging.WARNING)  # the live view below is the demo's output
    runner = Runner(list(WORKERS), demo)
    thread = threading.Thread(target=runner.run, name="eda-demo-workers", daemon=True)
    conn = kombu.Connection(url) if url == "memory://" else open_connection(demo)
    where = "in memory" if url == "memory://" else demo.safe_broker_url
    click.echo(f"eda demo: workers {', '.join(w.name for w in WORKERS)} in namespace {demo.namespace} ({where})")
    tail = Tail(conn, demo.namespace)
    outcome = {}
    try:
        thread.start()
        if not runner.ready.wait(15):
            click.echo("error: the workers did not start", err=True)
            return 1
        publisher = Publisher(conn)
        publisher.publish_events(_events("eda/demo"), Topology(demo.namespace).events.name)
        endings = {order_id: end for order_id, _, _, _, end in ORDERS}
        for wire in tail.events(timeout=timeout, until=lambda: len(outcome) == len(ORDERS)):
            click.echo("  " + describe(wire))
            order_id = (wire.get("data") or {}).get("orderId")
            if order_id in endings and wire.get("type") == endings[order_id]:
                outcome[order_id] = wire["type"]
    finally:
        runner.stop()
        thread.join(15)
        tail.close()
        _clean_up(conn, demo)
        conn.release()
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


def _clean_up(conn, demo: Settings) -> None:
    if not is_amqp(conn):
        return  # the in-memory broker goes with the process
    channel = conn.channel()
    topology = Topology(demo.namespace, demo.retry_delays_ms)
    for worker in WORKERS:
        topology.delete_worker(channel, worker.name)
    topology.delete_exchanges(channel)


@click.command("demo")
@click.option("--embedded", is_flag=True, help="Run in one process on kombu's in-memory transport.")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for the flow to finish.")
@settings_options(*COMMON)
def command(embedded, timeout, settings):
    """Run the whole order flow: the three workers, sample orders, a live view and a summary."""
    sys.exit(run_demo(settings, embedded=embedded, timeout=timeout))
