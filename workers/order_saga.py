"""The order saga: follows each order from placed to shipped, and cancels it when its payment does not
come in time. A saga (``eda.Saga``): one instance per order id, its state in the worker's store.

    placed -> paid -> reserved -> shipped                              completed, status shipped
    placed -> payment.failed (declined)                                completed, status payment_failed
    paid -> order.cancelled (out_of_stock, by inventory)
         -> payment.refunded (payment refunds cancelled orders)        completed, status refunded
    placed -> no payment.succeeded within payment_timeout
         -> the saga publishes order.cancelled (payment_timeout)
         -> payment.failed (reason cancelled: payment recorded the cancellation before it charged, so it
            never will)                                                completed, status cancelled
         or payment.succeeded then payment.refunded (the charge landed anyway, and payment refunds it)
                                                                       completed, status refunded

Events of one order may come in another order than the flow's (published by hand, or from another flow):
each handler records what it learnt (``paid``, ``reserved``) and the status follows from all of it. An
event before the order's ``order.placed`` starts nothing and is ignored (logged); without its payment
the order is then cancelled at its deadline, and a charge refunded: the safe side.

Its state, queryable in ``saga_instances`` (``saga = 'order-saga'``, ``key`` = the order id; in
PostgreSQL ``state->>'status'``): ``status``, ``user_id``, ``total_amount``, ``currency``, ``paid``,
``payment_id``, ``reserved``, ``shipped``, ``tracking_number``, ``cancel_reason``, ``payment_failure``.
"""

from marshmallow import fields

from eda import Saga, Setting, handles, starts
from eda.fields import Money

PLACED, PAID, RESERVED, SHIPPED = "placed", "paid", "reserved", "shipped"
PAYMENT_FAILED, CANCELLED, REFUNDED = "payment_failed", "cancelled", "refunded"
PAYMENT_TIMEOUT = "payment_timeout"


class OrderSaga(Saga):
    name = "order-saga"
    description = "Follows each order from placed to shipped; cancels it when its payment does not come in time."
    correlation = "order_id"

    payment_timeout = Setting(900.0, "Seconds an order waits for its payment before the order saga cancels it.",
                              low=0.001, high=365 * 24 * 3600.0)

    status = fields.String()
    user_id = fields.String()
    total_amount = Money()
    currency = fields.String()
    paid = fields.Boolean(load_default=False)
    payment_id = fields.String()
    reserved = fields.Boolean(load_default=False)
    shipped = fields.Boolean(load_default=False)
    tracking_number = fields.String()
    cancel_reason = fields.String()
    payment_failure = fields.String()

    @starts("order.placed")
    def placed(self, event, ctx):
        order = event.data
        self.user_id, self.total_amount, self.currency = order["user_id"], order["total_amount"], order["currency"]
        if self.status is None:  # a new order (a second order.placed of a live one only tells its data again)
            self.status = PLACED
            self.schedule_timeout("order.payment-expired", {"order_id": self.key}, delay=self.payment_timeout)

    @handles("payment.succeeded")
    def charged(self, event, ctx):
        self.paid, self.payment_id = True, event.data["payment_id"]
        if self.status == PLACED:
            self.status = RESERVED if self.reserved else PAID
        elif self.cancel_reason is not None:  # charged after the saga cancelled it: payment refunds it
            self.log.info("order %s charged after it was cancelled (%s): payment refunds it", self.key,
                          self.cancel_reason, extra={"worker": self.name})

    @handles("payment.failed")
    def not_charged(self, event, ctx):
        self.payment_failure = event.data["reason"]
        self.status = CANCELLED if self.cancel_reason is not None else PAYMENT_FAILED
        self.complete()

    @handles("order.payment-expired")
    def payment_expired(self, event, ctx):
        if self.status != PLACED:
            return  # paid (or decided otherwise) in time
        self.status, self.cancel_reason = CANCELLED, PAYMENT_TIMEOUT
        ctx.publish("order.cancelled", {"order_id": self.key, "reason": PAYMENT_TIMEOUT, "user_id": self.user_id})

    @handles("inventory.reserved")
    def stock_reserved(self, event, ctx):
        self.reserved = True
        if self.status == PAID:
            self.status = RESERVED

    @handles("order.cancelled")
    def cancelled(self, event, ctx):
        """Inventory's (out of stock: payment refunds the charge) or the saga's own (payment timeout)."""
        if self.cancel_reason is None:
            self.cancel_reason = event.data["reason"]
        if self.status != REFUNDED:
            self.status = CANCELLED

    @handles("payment.refunded")
    def refunded(self, event, ctx):
        self.status = REFUNDED
        self.complete()

    @handles("order.shipped")
    def delivered(self, event, ctx):
        self.shipped, self.tracking_number = True, event.data["tracking_number"]
        if self.cancel_reason is None:
            self.status = SHIPPED
            self.complete()
        else:  # reserved before the cancellation reached inventory; payment refunds the charge
            self.log.warning("order %s shipped though it was cancelled (%s)", self.key, self.cancel_reason,
                             extra={"worker": self.name})
