"""The ledger worker: each user's running balance from their charges and refunds, in order.

It is ordered by user id (``ordered_by``): a user's ``payment.succeeded`` and ``payment.refunded``
reach it one at a time, in the order payment published them, whichever instance holds the user's
partition. That order is what makes a read-then-write of a balance safe here, with any number of
instances: no two events of one user are ever handled at the same moment. Each entry is recorded once
(by payment id and kind), so a redelivered event changes nothing.

One order the partitions cannot give: a refund is caused by a cancellation that inventory made on
seeing the charge, but the charge's copy for the ledger and inventory's copy sit in different queues,
enqueued each on its own. While a quorum queue's leader moves (a node lost), the ledger's copy may be
enqueued after the refund it caused. So a refund that finds no charge is held (``held_refunds``) and
applied right after its charge, in the charge's transaction, instead of being dead-lettered.
"""

from decimal import Decimal

from eda import PermanentError, Worker, handles, open_store

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (payment_id TEXT NOT NULL, kind TEXT NOT NULL, order_id TEXT NOT NULL,
    user_id TEXT NOT NULL, amount TEXT NOT NULL, balance TEXT NOT NULL, PRIMARY KEY (payment_id, kind));
CREATE TABLE IF NOT EXISTS balances (user_id TEXT PRIMARY KEY, balance TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS held_refunds (order_id TEXT PRIMARY KEY, payment_id TEXT NOT NULL, amount TEXT NOT NULL);
"""
CHARGE, REFUND = "charge", "refund"


class Ledger(Worker):
    name = "ledger"
    description = "Keeps each user's running balance from payments and refunds, in order per user."
    ordered_by = "user_id"

    @property
    def inline(self) -> bool:
        """On the I/O thread with a local SQLite file; handler threads where the state is in PostgreSQL."""
        return not self.settings.database_url

    def setup(self):
        self.store = open_store(self.settings, "ledger", SCHEMA)

    def teardown(self):
        self.store.close()

    @handles("payment.succeeded")
    def charge(self, event, ctx):
        user_id = event.data.get("user_id")
        if not user_id:
            raise PermanentError(f"payment {event.data['payment_id']} names no user_id: no balance to charge")
        order_id = event.data["order_id"]
        with self.store.transaction() as tx:
            applied = [self._apply(tx, CHARGE, event.data["payment_id"], order_id, user_id, event.data["amount"])]
            held = tx.execute("DELETE FROM held_refunds WHERE order_id = ? RETURNING payment_id, amount",
                              (order_id,)).fetchall()
            if held:  # its refund came first: applied now, right after the charge
                applied.append(self._apply(tx, REFUND, held[0][0], order_id, user_id, -Decimal(held[0][1])))
        for entry in applied:
            self._log(*entry)

    @handles("payment.refunded")
    def refund(self, event, ctx):
        order_id, payment_id, amount = event.data["order_id"], event.data["payment_id"], event.data["amount"]
        with self.store.transaction() as tx:
            rows = tx.execute("SELECT user_id FROM entries WHERE order_id = ? AND kind = ?",
                              (order_id, CHARGE)).fetchall()
            if not rows:
                tx.execute("INSERT INTO held_refunds VALUES (?, ?, ?) ON CONFLICT (order_id) DO NOTHING",
                           (order_id, payment_id, str(amount)))
            else:
                applied = self._apply(tx, REFUND, payment_id, order_id, rows[0][0], -amount)
        if not rows:
            self.log.warning("refund of order %s came before its charge: held until the charge comes", order_id,
                             extra={"worker": self.name, "order_id": order_id})
        else:
            self._log(*applied)

    def _apply(self, tx, kind: str, payment_id: str, order_id: str, user_id: str, amount: Decimal) -> tuple:
        """Add one entry to a user's balance in ``tx``; (kind, user, amount, new balance), the balance None
        where the entry was there already (a redelivery)."""
        rows = tx.execute("SELECT balance FROM balances WHERE user_id = ?", (user_id,)).fetchall()
        balance = (Decimal(rows[0][0]) if rows else Decimal("0.00")) + amount
        added = tx.execute("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (payment_id, kind) "
                           "DO NOTHING RETURNING payment_id",
                           (payment_id, kind, order_id, user_id, str(amount), str(balance))).fetchall()
        if not added:
            return kind, user_id, order_id, amount, None  # a redelivery: this entry is in the balance already
        tx.execute("INSERT INTO balances VALUES (?, ?) ON CONFLICT (user_id) DO UPDATE SET balance = ?",
                   (user_id, str(balance), str(balance)))
        return kind, user_id, order_id, amount, balance

    def _log(self, kind: str, user_id: str, order_id: str, amount: Decimal, balance: Decimal | None) -> None:
        if balance is not None:
            self.log.info("%s of %s %s: balance %s", kind, user_id, abs(amount), balance,
                          extra={"worker": self.name, "user_id": user_id, "order_id": order_id,
                                 "balance": str(balance)})

    def balance(self, user_id: str) -> Decimal:
        rows = self.store.read("SELECT balance FROM balances WHERE user_id = ?", (user_id,))
        return Decimal(rows[0][0]) if rows else Decimal("0.00")
