"""The inventory worker: keeps stock per SKU and reserves paid orders, all items or none.

Each order's decision (reserved or cancelled) is recorded with the stock change in one transaction,
so a redelivered ``payment.succeeded`` re-publishes the recorded decision and reserves nothing more.
Correct with any number of instances sharing one PostgreSQL: the order is claimed first (``INSERT ...
ON CONFLICT DO NOTHING``: a copy handled at the same moment elsewhere waits for the claim's commit and
reads the decision), then each SKU is taken by a conditional ``UPDATE ... WHERE quantity >= ?`` (stock
never below zero, no unit sold twice), SKUs in sorted order so that two orders never deadlock.

On PostgreSQL a new order's reservation is one statement, a transaction of its own: one round trip
instead of five (BEGIN, claim, take, decision, COMMIT). It locks the order's stock rows in SKU order,
decides from the locked quantities, records the decision (``INSERT ... ON CONFLICT DO NOTHING``) and
takes the stock only where that insert claimed the order; a copy finds the order claimed and reads
the decision (a second round trip, for copies only).

An order cancelled before its stock was decided (the order saga cancels one whose payment did not come
in time; a charge landing after that is refunded by payment) is recorded as withdrawn, by the same
claim: a ``payment.succeeded`` of it arriving later reserves nothing and publishes nothing.
"""

import json
from collections import Counter

from eda import Setting, Worker, handles, open_store

SCHEMA = """
CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY, quantity BIGINT NOT NULL CHECK (quantity >= 0));
CREATE TABLE IF NOT EXISTS reservations (order_id TEXT PRIMARY KEY, status TEXT NOT NULL,
    depleted TEXT NOT NULL DEFAULT '{}');
"""
RESERVED, CANCELLED, DECIDING, WITHDRAWN = "reserved", "cancelled", "deciding", "withdrawn"
# PostgreSQL: the whole decision in one statement (see the module docstring). Parameters: the SKUs and
# their quantities (arrays, each SKU once), the order id, the stock threshold. Its row: the decision
# recorded, or none where the order was claimed before (by a copy, here or on another instance).
RESERVE_IN_ONE = """
WITH need (sku, qty) AS (SELECT * FROM unnest(?::text[], ?::bigint[])),
locked AS (SELECT stock.sku, stock.quantity FROM stock JOIN need USING (sku) ORDER BY stock.sku FOR UPDATE OF stock),
left_over AS (SELECT locked.sku, locked.quantity - need.qty AS remaining FROM locked JOIN need USING (sku)),
decision AS (SELECT (SELECT count(*) FROM left_over WHERE remaining >= 0) = (SELECT count(*) FROM need) AS ok),
claim AS (
    INSERT INTO reservations (order_id, status, depleted)
    SELECT ?, CASE WHEN ok THEN 'reserved' ELSE 'cancelled' END,
           CASE WHEN ok THEN coalesce((SELECT json_object_agg(sku, remaining)::text FROM left_over
                                       WHERE remaining <= ?), '{}') ELSE '{}' END
    FROM decision
    ON CONFLICT (order_id) DO NOTHING
    RETURNING status, depleted),
taken AS (
    UPDATE stock SET quantity = stock.quantity - need.qty FROM need, claim
    WHERE claim.status = 'reserved' AND stock.sku = need.sku)
SELECT status, depleted FROM claim
"""


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
        if self.store.backend == "postgresql":
            status, depleted = self._reserve_in_one(order_id, needed)
        else:
            with self.store.transaction() as tx:
                claimed = tx.execute("INSERT INTO reservations (order_id, status) VALUES (?, ?) "
                                     "ON CONFLICT (order_id) DO NOTHING", (order_id, DECIDING)).rowcount == 1
                if claimed:
                    status, depleted = self._decide(tx, order_id, needed)
                else:  # decided before (a redelivery, or a copy another instance handled)
                    status, depleted = tx.execute("SELECT status, depleted FROM reservations WHERE order_id = ?",
                                                  (order_id,)).fetchone()
        if status == WITHDRAWN:
            self.log.info("order %s was cancelled before it was paid: nothing reserved", order_id,
                          extra={"worker": self.name})
            return
        depleted = json.loads(depleted)
        if status == CANCELLED:
            ctx.publish("order.cancelled", {"order_id": order_id, "reason": "out_of_stock",
                                            "user_id": event.data.get("user_id")})
            return
        ctx.publish("inventory.reserved", {"order_id": order_id, "items": items})
        for sku, remaining in sorted(depleted.items()):
            ctx.publish("inventory.depleted", {"sku": sku, "remaining": remaining})

    @handles("order.cancelled")
    def withdraw(self, event, ctx):
        """Record an order cancelled before its stock was decided, so that it is never reserved; its own
        out-of-stock decisions, and cancellations of orders decided already, change nothing."""
        order_id = event.data["order_id"]
        with self.store.transaction() as tx:
            if tx.execute("INSERT INTO reservations (order_id, status) VALUES (?, ?) ON CONFLICT (order_id) "
                          "DO NOTHING", (order_id, WITHDRAWN)).rowcount == 1:
                return
            status = tx.execute("SELECT status FROM reservations WHERE order_id = ?", (order_id,)).fetchone()[0]
        if status == RESERVED:
            self.log.warning("order %s was cancelled (%s) after its stock was reserved: the reservation stands",
                             order_id, event.data["reason"], extra={"worker": self.name})

    def _reserve_in_one(self, order_id: str, needed: Counter) -> tuple[str, str]:
        """PostgreSQL: decide, record and take in one statement; a copy reads the recorded decision."""
        skus = sorted(needed)
        rows = self.store.execute(RESERVE_IN_ONE, (skus, [needed[s] for s in skus], order_id, self.stock_threshold))
        if rows:
            return rows[0]
        # Claimed before: the insert waited for that claim's commit, so the decision is there to read.
        return self.store.read("SELECT status, depleted FROM reservations WHERE order_id = ?", (order_id,))[0]

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
