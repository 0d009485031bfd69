"""The inventory worker: keeps stock per SKU and reserves paid orders, all items or none.

Each order's decision (reserved or cancelled) is recorded with the stock change in one transaction,
so a redelivered ``payment.succeeded`` re-publishes the recorded decision and reserves nothing more.
"""

import json
from collections import Counter

from eda import Setting, Worker, handles
from eda.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY, quantity INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS reservations (order_id TEXT PRIMARY KEY, status TEXT NOT NULL,
    depleted TEXT NOT NULL DEFAULT '{}');
"""
RESERVED, CANCELLED = "reserved", "cancelled"


class Inventory(Worker):
    name = "inventory"
    inline = True  # its state is a local SQLite file: nothing remote to wait for
    description = "Keeps stock per SKU; reserves paid orders or cancels them when stock is short."

    stock_threshold = Setting(5, "Inventory publishes inventory.depleted when a SKU's stock falls to or below this.",
                              low=0, high=2**63 - 1)

    def setup(self):
        self.store = Store(self.settings.state_dir, f"{self.settings.namespace}.inventory", SCHEMA)

    def teardown(self):
        self.store.close()

    @handles("stock.replenished")
    def replenish(self, event, ctx):
        with self.store.transaction() as db:
            if not self.store.first_time(db, event.id):
                return  # this delivery was counted already
            db.execute("INSERT INTO stock VALUES (?, ?) ON CONFLICT (sku) DO UPDATE SET quantity = quantity + ?",
                       (event.data["sku"], event.data["quantity"], event.data["quantity"]))

    @handles("payment.succeeded")
    def reserve(self, event, ctx):
        order_id, items = event.data["order_id"], event.data["items"]
        needed = Counter()
        for item in items:
            needed[item["sku"]] += item["quantity"]
        with self.store.transaction() as db:
            row = db.execute("SELECT status, depleted FROM reservations WHERE order_id = ?", (order_id,)).fetchone()
            if row is None:
                row = self._decide(db, order_id, needed)
        status, depleted = row[0], json.loads(row[1])
        if status == CANCELLED:
            ctx.publish("order.cancelled", {"order_id": order_id, "reason": "out_of_stock"})
            return
        ctx.publish("inventory.reserved", {"order_id": order_id, "items": items})
        for sku, remaining in sorted(depleted.items()):
            ctx.publish("inventory.depleted", {"sku": sku, "remaining": remaining})

    def _decide(self, db, order_id: str, needed: Counter) -> tuple[str, str]:
        """Reserve every SKU or none, and record the decision; runs inside the caller's transaction."""
        have = dict(db.execute(f"SELECT sku, quantity FROM stock WHERE sku IN ({','.join('?' * len(needed))})",
                               list(needed)).fetchall())
        if any(have.get(sku, 0) < qty for sku, qty in needed.items()):
            decision = (CANCELLED, "{}")
        else:
            for sku, qty in needed.items():
                db.execute("UPDATE stock SET quantity = quantity - ? WHERE sku = ?", (qty, sku))
            remaining = {sku: have[sku] - qty for sku, qty in needed.items()}
            decision = (RESERVED, json.dumps({s: r for s, r in remaining.items() if r <= self.stock_threshold}))
        db.execute("INSERT INTO reservations VALUES (?, ?, ?)", (order_id, *decision))
        return decision

    def stock_of(self, sku: str) -> int:
        with self.store.transaction() as db:
            row = db.execute("SELECT quantity FROM stock WHERE sku = ?", (sku,)).fetchone()
        return row[0] if row else 0
