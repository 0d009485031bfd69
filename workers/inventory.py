"""The inventory worker: keeps stock per SKU and reserves paid orders, all items or none.

Each order's decision (reserved or cancelled) is recorded with the stock change in one transaction,
so a redelivered ``payment.succeeded`` re-publishes the recorded decision and reserves nothing more.
Correct with any number of instances sharing one PostgreSQL: the order is claimed first (``INSERT ...
ON CONFLICT DO NOTHING``: a copy handled at the same moment elsewhere waits for the claim's commit and
reads the decision), then each SKU is taken by a conditional ``UPDATE ... WHERE quantity >= ?`` (stock
never below zero, no unit sold twice), SKUs in sorted order so that two orders never deadlock.
"""

import json
from collections import Counter

from eda import Setting, Worker, handles, open_store

SCHEMA = """
CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY, quantity BIGINT NOT NULL CHECK (quantity >= 0));
CREATE TABLE IF NOT EXISTS reservations (order_id TEXT PRIMARY KEY, status TEXT NOT NULL,
    depleted TEXT NOT NULL DEFAULT '{}');
"""
RESERVED, CANCELLED, DECIDING = "reserved", "cancelled", "deciding"


class Inventory(Worker):
    name = "inventory"
    description = "Keeps stock per SKU; reserves paid orders or cancels them when stock is short."

    stock_threshold = Setting(5, "Inventory publishes inventory.depleted when a SKU's stock falls to or below this.",
                              low=0, high=2**63 - 1)

    @property
    def inline(self) -> bool:
        """On the I/O thread with a local SQLite file (nothing remote to wait for); handler threads
        where the stock lives in PostgreSQL, whose round trips would stall the broker connection."""
        return not self.settings.database_url

    def setup(self):
        self.store = open_store(self.settings, "inventory", SCHEMA)

    def teardown(self):
        self.store.close()

    @handles("stock.replenished")
    def replenish(self, event, ctx):
        with self.store.transaction() as tx:
            if not tx.first_time(event.id):
                return  # this delivery was counted already
            tx.execute("INSERT INTO stock (sku, quantity) VALUES (?, ?) ON CONFLICT (sku) DO UPDATE "
                       "SET quantity = stock.quantity + excluded.quantity", (event.data["sku"], event.data["quantity"]))

    @handles("payment.succeeded")
    def reserve(self, event, ctx):
        order_id, items = event.data["order_id"], event.data["items"]
        needed = Counter()
        for item in items:
            needed[item["sku"]] += item["quantity"]
        with self.store.transaction() as tx:
            claimed = tx.execute("INSERT INTO reservations (order_id, status) VALUES (?, ?) "
                                 "ON CONFLICT (order_id) DO NOTHING", (order_id, DECIDING)).rowcount == 1
            if claimed:
                status, depleted = self._decide(tx, order_id, needed)
            else:  # decided before (a redelivery, or a copy another instance handled)
                status, depleted = tx.execute("SELECT status, depleted FROM reservations WHERE order_id = ?",
                                              (order_id,)).fetchone()
        depleted = json.loads(depleted)
        if status == CANCELLED:
            ctx.publish("order.cancelled", {"order_id": order_id, "reason": "out_of_stock",
                                            "user_id": event.data.get("user_id")})
            return
        ctx.publish("inventory.reserved", {"order_id": order_id, "items": items})
        for sku, remaining in sorted(depleted.items()):
            ctx.publish("inventory.depleted", {"sku": sku, "remaining": remaining})

    def _decide(self, tx, order_id: str, needed: Counter) -> tuple[str, str]:
        """Take every SKU or none, and record the decision; runs inside the caller's transaction."""
        taken = {}
        for sku in sorted(needed):
            row = tx.execute("UPDATE stock SET quantity = quantity - ? WHERE sku = ? AND quantity >= ? "
                             "RETURNING quantity", (needed[sku], sku, needed[sku])).fetchall()
            if not row:  # short: give back what this order took (rows still locked by this transaction)
                for got in taken:
                    tx.execute("UPDATE stock SET quantity = quantity + ? WHERE sku = ?", (needed[got], got))
                decision = (CANCELLED, "{}")
                break
            taken[sku] = row[0][0]
        else:
            decision = (RESERVED, json.dumps({s: r for s, r in taken.items() if r <= self.stock_threshold}))
        tx.execute("UPDATE reservations SET status = ?, depleted = ? WHERE order_id = ?", (*decision, order_id))
        return decision

    def stock_of(self, sku: str) -> int:
        rows = self.store.read("SELECT quantity FROM stock WHERE sku = ?", (sku,))
        return rows[0][0] if rows else 0
