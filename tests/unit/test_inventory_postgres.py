"""The inventory worker's reservations on PostgreSQL: one round trip per new order (counted on the wire),
each unit sold once and every copy of an order given the same decision when many handlers race.

No broker: the worker's handlers are called as the runtime calls them, with a context made by hand.
Each test has a database of its own (the ``database`` fixture).
"""

import threading
from decimal import Decimal

import pytest

from benchmarks.pgcount import RoundTrips
from eda.contracts.envelope import Event
from eda.settings import Settings
from eda.worker import Context
from eda_shop.workers.inventory import Inventory


def paid(order_id: str, *items: tuple[str, int]) -> Event:
    return Event("payment.succeeded", {
        "order_id": order_id, "payment_id": f"pay-{order_id}", "amount": Decimal("10.00"), "currency": "USD",
        "user_id": "u-1", "items": [{"sku": sku, "quantity": q, "unit_price": Decimal("1.00")} for sku, q in items]},
        "test")


def decision(inventory: Inventory, event: Event) -> list[tuple[str, dict]]:
    """The reactions the handler gave ``event``: (type, data) in order."""
    ctx = Context(event, "test")
    inventory.reserve(event, ctx)
    return [(reaction.type, reaction.data) for reaction, _ in ctx.reactions]


@pytest.fixture
def inventory(database, tmp_path):
    """An inventory worker (set up, as the runtime does) on a fresh database, and a replenish function."""
    made = []

    def make(url=database, threshold=5):
        settings = Settings(namespace="inv", database_url=url, state_dir=tmp_path, concurrency=8)
        worker = Inventory(settings.with_(worker_options={"inventory": {"stock_threshold": threshold}}))
        worker.setup()
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.teardown()


def replenish(worker: Inventory, sku: str, quantity: int) -> None:
    worker.replenish(Event("stock.replenished", {"sku": sku, "quantity": quantity}, "test"), Context(None, "test"))


def test_a_new_order_is_one_round_trip_and_a_copy_two(inventory, database):
    # Given an inventory worker whose connections to PostgreSQL go through a proxy counting round trips
    counter = RoundTrips.before(database)
    try:
        worker = inventory(counter.url(database))
        replenish(worker, "SKU-A", 100)
        replenish(worker, "SKU-B", 100)
        for n in range(15):  # past the pool's first statements (psycopg prepares one at its sixth use)
            decision(worker, paid(f"warm-{n}", ("SKU-A", 1)))
        counter.reset()
        # When 20 new orders of two SKUs are reserved, and then 5 of them again (redeliveries)
        for n in range(20):
            assert decision(worker, paid(f"o-{n}", ("SKU-A", 1), ("SKU-B", 2)))[0][0] == "inventory.reserved"
        new_orders = counter.reset()
        for n in range(5):
            assert decision(worker, paid(f"o-{n}", ("SKU-A", 1), ("SKU-B", 2)))[0][0] == "inventory.reserved"
        copies = counter.reset()
        stock = (worker.stock_of("SKU-A"), worker.stock_of("SKU-B"))
    finally:
        counter.close()
    # Then each new order took one round trip (it was five: BEGIN, claim, take, decision, COMMIT),
    # each copy two (the statement, then reading the recorded decision), and the copies took no stock
    assert (new_orders, copies) == (20, 10)
    assert stock == (65, 60)


def test_all_items_or_none_and_the_depleted_skus_reported(inventory):
    worker = inventory(threshold=5)
    replenish(worker, "SKU-A", 7)
    replenish(worker, "SKU-B", 2)
    # An order for more of one SKU than there is takes nothing of the other
    assert decision(worker, paid("short", ("SKU-A", 1), ("SKU-B", 3))) == [
        ("order.cancelled", {"order_id": "short", "reason": "out_of_stock", "user_id": "u-1"})]
    assert (worker.stock_of("SKU-A"), worker.stock_of("SKU-B")) == (7, 2)
    # An order of a SKU never stocked is cancelled
    assert decision(worker, paid("unknown", ("SKU-Z", 1)))[0][0] == "order.cancelled"
    # One that fits takes both (a SKU listed twice counts twice) and reports those at or below the threshold
    reactions = decision(worker, paid("fits", ("SKU-A", 1), ("SKU-B", 2), ("SKU-A", 1)))
    assert [r[0] for r in reactions] == ["inventory.reserved", "inventory.depleted", "inventory.depleted"]
    assert [r[1] for r in reactions[1:]] == [{"sku": "SKU-A", "remaining": 5}, {"sku": "SKU-B", "remaining": 0}]
    assert (worker.stock_of("SKU-A"), worker.stock_of("SKU-B")) == (5, 0)


def test_racing_handlers_sell_each_unit_once_and_copies_agree(inventory):
    # Given two instances (their own pools) sharing the stock: 10 of SKU-P, 4 of SKU-Q
    first, second = inventory(), inventory()
    replenish(first, "SKU-P", 10)
    replenish(first, "SKU-Q", 4)
    orders = [paid(f"race-{n:02}", ("SKU-Q", 1), ("SKU-P", 1)) for n in range(12)]
    results: dict[str, list] = {e.data["order_id"]: [] for e in orders}
    lock = threading.Lock()

    def handle(worker, events):
        for event in events:
            outcome = decision(worker, event)[0][0]
            with lock:
                results[event.data["order_id"]].append(outcome)

    # When 8 handler threads over both instances each handle every order, half of them in the opposite order
    threads = [threading.Thread(target=handle, args=(worker, orders if i % 2 else orders[::-1]))
               for i, worker in enumerate([first, second] * 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # Then 4 orders are reserved (the Q units), the rest cancelled, every copy of an order told the same
    assert all(len(outcomes) == 8 and len(set(outcomes)) == 1 for outcomes in results.values()), results
    reserved = [o for o, outcomes in results.items() if outcomes[0] == "inventory.reserved"]
    assert len(reserved) == 4
    assert (first.stock_of("SKU-P"), first.stock_of("SKU-Q")) == (6, 0)
