"""The payment worker: charges placed orders through the gateway and refunds cancelled ones.

Effects happen once, reactions at least once: an order's charge is recorded (and the gateway gets the
order id as idempotency key), so a redelivered ``order.placed`` re-publishes the recorded answer
instead of charging again.

A cancellation may come before the charge (the order saga cancels an order whose payment did not come
in time, while its ``order.placed`` still waits here, retried): it is recorded as the order's charge,
status ``cancelled``, so that the order is never charged afterwards (``payment.failed``, reason
``cancelled``). A charge that raced with it (the gateway charged while another instance recorded the
cancellation) is refunded at once, and the order still fails as cancelled.
"""

import logging
from urllib.parse import urlsplit

import pybreaker

from eda import Breaker, PermanentError, Setting, Worker, handles, open_store
from eda.errors import ConfigError
from eda_shop.workers.gateway import HttpGateway, InProcessGateway, Simulation

SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (order_id TEXT PRIMARY KEY, status TEXT NOT NULL, payment_id TEXT,
    reason TEXT, amount TEXT NOT NULL, currency TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS refunds (order_id TEXT PRIMARY KEY, refund_id TEXT NOT NULL);
"""
CHARGE_FIELDS = ("status", "payment_id", "reason", "amount", "currency")
CHARGE = ", ".join(f"charges.{f}" for f in CHARGE_FIELDS)
SUCCEEDED, CANCELLED = "succeeded", "cancelled"


class Charges:
    """Payment's record of charges and refunds in the worker's store: one read to find an order's
    charge (and refund), one write transaction to record one. Both payment styles (threads, async) use it."""

    def __init__(self, store):
        self.store = store

    def record_charge(self, order: dict, answer) -> dict:
        """Record the gateway's answer, or find the one a copy of the event recorded meanwhile. Where a
        cancellation was recorded meanwhile and the gateway charged all the same, the cancelled row
        keeps the charge's payment id and amount: the charge is to be refunded (``raced``)."""
        with self.store.transaction() as tx:
            rows = tx.execute(
                "INSERT INTO charges (order_id, status, payment_id, reason, amount, currency) "
                f"VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (order_id) DO NOTHING RETURNING {CHARGE}",
                (order["order_id"], answer.status, answer.id, answer.reason, str(order["total_amount"]),
                 order["currency"])).fetchall()
            if not rows:  # recorded meanwhile by a copy of this event, or cancelled: that answer stands
                if answer.status == SUCCEEDED:
                    tx.execute("UPDATE charges SET payment_id = ?, amount = ?, currency = ? WHERE order_id = ? "
                               "AND status = ? AND payment_id IS NULL",
                               (answer.id, str(order["total_amount"]), order["currency"], order["order_id"], CANCELLED))
                rows = tx.execute(f"SELECT {CHARGE} FROM charges WHERE order_id = ?", (order["order_id"],)).fetchall()
        return dict(zip(CHARGE_FIELDS, rows[0]))

    def record_cancellation(self, order_id: str) -> dict | None:
        """Record that an order was cancelled before it was charged, so that it never is: None. Where a
        charge was recorded meanwhile, that charge (to refund) instead."""
        with self.store.transaction() as tx:
            if tx.execute("INSERT INTO charges (order_id, status, reason, amount, currency) VALUES (?, ?, ?, '0', '') "
                          "ON CONFLICT (order_id) DO NOTHING", (order_id, CANCELLED, CANCELLED)).rowcount == 1:
                return None
        return self.refund_state(order_id)

    @staticmethod
    def raced(charge: dict) -> bool:
        """A charge the gateway made for an order cancelled meanwhile, not refunded yet."""
        return charge["status"] == CANCELLED and charge["payment_id"] is not None and charge.get("refund_id") is None

    def refund_state(self, order_id: str) -> dict | None:
        """An order's charge with its refund id (None where not refunded yet), or None if not charged."""
        rows = self.store.read(f"SELECT {CHARGE}, refunds.refund_id FROM charges LEFT JOIN refunds USING (order_id) "
                               "WHERE order_id = ?", (order_id,))
        return dict(zip((*CHARGE_FIELDS, "refund_id"), rows[0])) if rows else None

    def record_refund(self, order_id: str, refund_id: str) -> None:
        with self.store.transaction() as tx:
            tx.execute("INSERT INTO refunds (order_id, refund_id) VALUES (?, ?) ON CONFLICT (order_id) DO NOTHING",
                       (order_id, refund_id))


def publish_charge(ctx, order: dict, charge: dict) -> None:
    """The reaction to an order's recorded charge: payment.succeeded or payment.failed."""
    if charge["status"] == "succeeded":
        ctx.publish("payment.succeeded", {
            "order_id": order["order_id"], "payment_id": charge["payment_id"], "amount": order["total_amount"],
            "currency": order["currency"], "items": order["items"], "user_id": order["user_id"]})
    else:
        ctx.publish("payment.failed", {"order_id": order["order_id"], "reason": charge["reason"]})


def publish_refund(ctx, cancelled: dict, charge: dict) -> None:
    ctx.publish("payment.refunded", {"order_id": cancelled["order_id"], "payment_id": charge["payment_id"],
                                     "amount": charge["amount"], "user_id": cancelled.get("user_id")})


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

    # EDA_PAYMENT_GATEWAY_URL, EDA_PAYMENT_GATEWAY_TIMEOUT, EDA_PAYMENT_BREAKER_FAIL_MAX, ...: named after the
    # worker, so the async style (workers/payment_async.py, also named payment) reads the same variables.
    gateway_url = Setting(None, "Base URL of the payment gateway; unset, the payment worker simulates it in process.",
                          type=str)
    gateway_timeout = Setting(5.0, "Seconds one payment gateway call may take.", low=0.001, high=YEAR)
    breaker_fail_max = Setting(5, "Gateway failures in a row that open the circuit breaker.", low=1, high=1_000_000)
    breaker_reset_timeout = Setting(30.0, "Seconds the breaker stays open before it probes the gateway again.",
                                    low=0, high=YEAR)

    @property
    def inline(self) -> bool:
        """Handler threads for a gateway over the network or state in PostgreSQL: the in-process
        simulation (no EDA_PAYMENT_GATEWAY_URL) with SQLite answers at once, so it runs on the I/O thread."""
        return not self.gateway_url and not self.settings.database_url

    @property
    def circuit_pause(self) -> float:
        return self.breaker_reset_timeout  # given-back orders wait until the breaker probes again

    def gateway_breaker(self) -> Breaker:
        """The circuit breaker around gateway calls, made here for both styles (threads, async): failures
        in a row open it, but a PermanentError (a 4xx: the request is wrong, not the gateway) never
        counts. Being named, its state is the metric eda_breaker_state{name="payment-gateway"}."""
        return Breaker(fail_max=self.breaker_fail_max, reset_timeout=self.breaker_reset_timeout,
                       listeners=[BreakerLog(self.log)], name="payment-gateway", exclude=[PermanentError])

    def checked_gateway_url(self) -> str:
        """The gateway's base URL, an http(s) one; else a ConfigError naming the option and variable (both
        payment styles check it at start: the async client would fail only at the first charge)."""
        url = urlsplit(self.gateway_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            setting = type(self).gateway_url
            raise ConfigError(f"{setting.option} ({setting.variable(self.name)}): not an http(s) URL: "
                              f"{self.gateway_url!r}")
        return self.gateway_url

    def setup(self):
        if self.gateway_url:
            # a keep-alive connection per handler running at once
            self.gateway = HttpGateway(self.checked_gateway_url(), timeout=self.gateway_timeout,
                                       pool_size=self.settings.concurrency)
        else:
            self.gateway = InProcessGateway(Simulation())
        self.breaker = self.gateway_breaker()
        self.store = open_store(self.settings, "payment", SCHEMA)
        self.charges = Charges(self.store)

    def teardown(self):
        self.store.close()

    @handles("order.placed")
    def charge(self, event, ctx):
        """A recorded charge is re-published as it was (an order cancelled before its charge fails as
        cancelled); otherwise the gateway charges the order (its id as idempotency key) and one
        transaction records the answer, or finds the one recorded by a copy of the event handled at the
        same moment (by this instance or another), or a cancellation: then the charge is refunded."""
        order = event.data
        charge = self.charges.refund_state(order["order_id"])
        if charge is None:
            answer = self.breaker.call(self.gateway.charge, order["order_id"], order["total_amount"],
                                       order["currency"])
            charge = {**self.charges.record_charge(order, answer), "refund_id": None}
        if self.charges.raced(charge):
            self.refund_charge(order["order_id"], charge)
        publish_charge(ctx, order, charge)

    def refund_charge(self, order_id: str, charge: dict) -> None:
        """Refund a recorded charge at the gateway (the order id as idempotency key) and record it."""
        answer = self.breaker.call(self.gateway.refund, order_id, charge["payment_id"], charge["amount"])
        if not answer.succeeded:
            raise PermanentError(f"the gateway refused to refund order {order_id}: {answer.reason}")
        self.charges.record_refund(order_id, answer.id)

    @handles("order.cancelled")
    def refund(self, event, ctx):
        order_id = event.data["order_id"]
        charge = self.charges.refund_state(order_id) or self.charges.record_cancellation(order_id)
        if charge is None:
            self.log.info("order %s cancelled before it was charged: it will not be", order_id,
                          extra={"worker": self.name})
            return
        if charge["status"] != SUCCEEDED:
            self.log.info("order %s was not charged: nothing to refund", order_id, extra={"worker": self.name})
            return
        if charge["refund_id"] is None:
            self.refund_charge(order_id, charge)
        publish_refund(ctx, event.data, charge)
