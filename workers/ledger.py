"""The ledger worker: each user's running balance from their charges and refunds, in order.

It is ordered by user id (``ordered_by``): a user's ``payment.succeeded`` and ``payment.refunded``
reach it one at a time, in the order payment published them, whichever instance holds the user's
partition. That order is what makes it right: a refund applied before its charge would find no charge
to refund (it is dead-lettered as out of order, and the balance would be wrong). It is also why a
read-then-write of a balance is safe here, with any number of instances: no two events of one user
are ever handled at the same moment. Each entry is recorded once (by payment id and kind), so a
redelivered event changes nothing.
"""

from decimal import Decimal

from eda import PermanentError, Worker, handles, open_store

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (payment_id TEXT NOT NULL, kind TEXT NOT NULL, order_id TEXT NOT NULL,
    user_id TEXT NOT NULL, amount TEXT NOT NULL, balance TEXT NOT NULL, PRIMARY KEY (payment_id, kind));
CREATE TABLE IF NOT EXISTS balances (user_id TEXT PRIMARY KEY, balance TEXT NOT NULL);
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
        self._apply(CHARGE, event.data["payment_id"], event.data["order_id"], user_id, event.data["amount"])

    @handles("payment.refunded")
    def refund(self, event, ctx):
        order_id = event.data["order_id"]
        rows = self.store.read("SELECT user_id FROM entries WHERE order_id = ? AND kind = ?", (order_id, CHARGE))
        if not rows:
            raise PermanentError(f"refund of order {order_id} before its charge: events out of order")
        self._apply(REFUND, event.data["payment_id"], order_id, rows[0][0], -event.data["amount"])

    def _apply(self, kind: str, payment_id: str, order_id: str, user_id: str, amount: Decimal) -> None:
        with self.store.transaction() as tx:
            rows = tx.execute("SELECT balance FROM balances WHERE user_id = ?", (user_id,)).fetchall()
            balance = (Decimal(rows[0][0]) if rows else Decimal("0.00")) + amount
            added = tx.execute("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (payment_id, kind) "
                               "DO NOTHING RETURNING payment_id",
                               (payment_id, kind, order_id, user_id, str(amount), str(balance))).fetchall()
            if not added:
                return  # a redelivery: this entry is in the balance already
            tx.execute("INSERT INTO balances VALUES (?, ?) ON CONFLICT (user_id) DO UPDATE SET balance = ?",
                       (user_id, str(balance), str(balance)))
        self.log.info("%s of %s %s: balance %s", kind, user_id, abs(amount), balance,
                      extra={"worker": self.name, "user_id": user_id, "order_id": order_id, "balance": str(balance)})

    def balance(self, user_id: str) -> Decimal:
        rows = self.store.read("SELECT balance FROM balances WHERE user_id = ?", (user_id,))
        return Decimal(rows[0][0]) if rows else Decimal("0.00")
