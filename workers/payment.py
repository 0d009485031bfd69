"""The payment worker: charges placed orders through the gateway and refunds cancelled ones.

Effects happen once, reactions at least once: an order's charge is recorded (and the gateway gets the
order id as idempotency key), so a redelivered ``order.placed`` re-publishes the recorded answer
instead of charging again.
"""

import logging

import pybreaker

from eda import PermanentError, Setting, Worker, handles
from eda.breaker import Breaker
from eda.store import Store
from workers.gateway import HttpGateway, InProcessGateway, Simulation

SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (order_id TEXT PRIMARY KEY, status TEXT NOT NULL, payment_id TEXT,
    reason TEXT, amount TEXT NOT NULL, currency TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS refunds (order_id TEXT PRIMARY KEY, refund_id TEXT NOT NULL);
"""


class BreakerLog(pybreaker.CircuitBreakerListener):
    """Logs the breaker's state changes: closed, open, half-open."""

    def __init__(self, log: logging.Logger):
        self.log = log

    def state_change(self, cb, old_state, new_state):
        self.log.warning("payment gateway circuit breaker %s -> %s", old_state.name if old_state else None,
                         new_state.name, extra={"worker": "payment"})


YEAR = 365 * 24 * 3600


class Payment(Worker):
    name = "payment"
    description = "Charges placed orders through the payment gateway; refunds cancelled ones."

    payment_gateway_url = Setting(None, "Base URL of the payment gateway; unset, the payment worker simulates it "
                                        "in process.", type=str)
    gateway_timeout = Setting(5.0, "Seconds one payment gateway call may take.", low=0.001, high=YEAR)
    breaker_fail_max = Setting(5, "Gateway failures in a row that open the circuit breaker.", low=1, high=1_000_000)
    breaker_reset_timeout = Setting(30.0, "Seconds the breaker stays open before it probes the gateway again.",
                                    low=0, high=YEAR)

    @property
    def inline(self) -> bool:
        """Handler threads only for a gateway over the network: the in-process simulation (no
        EDA_PAYMENT_GATEWAY_URL) answers at once, so its calls run on the I/O thread."""
        return not self.payment_gateway_url

    @property
    def circuit_pause(self) -> float:
        return self.breaker_reset_timeout  # given-back orders wait until the breaker probes again

    def setup(self):
        from eda.metrics import watch_breaker  # here: prometheus_client costs ~45ms to import, needed only to run

        if self.payment_gateway_url:
            self.gateway = HttpGateway(self.payment_gateway_url, timeout=self.gateway_timeout)
        else:
            self.gateway = InProcessGateway(Simulation())
        self.breaker = Breaker(fail_max=self.breaker_fail_max, reset_timeout=self.breaker_reset_timeout,
                               listeners=[BreakerLog(self.log)], name="payment-gateway")
        watch_breaker(self.breaker)  # eda_breaker_state{name="payment-gateway"}
        self.store = Store(self.settings.state_dir, f"{self.settings.namespace}.payment", SCHEMA)

    def teardown(self):
        self.store.close()

    @handles("order.placed")
    def charge(self, event, ctx):
        order = event.data
        charge = self._charge_of(order["order_id"])
        if charge is None:
            answer = self.breaker.call(self.gateway.charge, order["order_id"], order["total_amount"],
                                       order["currency"])
            with self.store.transaction() as db:
                db.execute("INSERT OR IGNORE INTO charges VALUES (?, ?, ?, ?, ?, ?)",
                           (order["order_id"], answer.status, answer.id, answer.reason, str(order["total_amount"]),
                            order["currency"]))
            charge = self._charge_of(order["order_id"])
        if charge["status"] == "succeeded":
            ctx.publish("payment.succeeded", {
                "order_id": order["order_id"], "payment_id": charge["payment_id"], "amount": order["total_amount"],
                "currency": order["currency"], "items": order["items"]})
        else:
            ctx.publish("payment.failed", {"order_id": order["order_id"], "reason": charge["reason"]})

    @handles("order.cancelled")
    def refund(self, event, ctx):
        order_id = event.data["order_id"]
        charge = self._charge_of(order_id)
        if charge is None or charge["status"] != "succeeded":
            self.log.info("order %s was not charged: nothing to refund", order_id, extra={"worker": self.name})
            return
        with self.store.transaction() as db:
            row = db.execute("SELECT refund_id FROM refunds WHERE order_id = ?", (order_id,)).fetchone()
        if row is None:
            answer = self.breaker.call(self.gateway.refund, order_id, charge["payment_id"], charge["amount"])
            if not answer.succeeded:
                raise PermanentError(f"the gateway refused to refund order {order_id}: {answer.reason}")
            with self.store.transaction() as db:
                db.execute("INSERT OR IGNORE INTO refunds VALUES (?, ?)", (order_id, answer.id))
        ctx.publish("payment.refunded", {"order_id": order_id, "payment_id": charge["payment_id"],
                                         "amount": charge["amount"]})

    def _charge_of(self, order_id: str) -> dict | None:
        with self.store.transaction() as db:
            row = db.execute("SELECT status, payment_id, reason, amount, currency FROM charges WHERE order_id = ?",
                             (order_id,)).fetchone()
        if row is None:
            return None
        return dict(zip(("status", "payment_id", "reason", "amount", "currency"), row))
