"""The reference shop's events (e-commerce order processing), registered with eda when imported.

Attributes are snake_case in Python and camelCase on the wire (``orderId``); see ``EventData``.
"""

from marshmallow import fields, validate

from eda import EventData, contract
from eda.fields import Currency, Id, Money


class Item(EventData):
    sku = Id(required=True)
    quantity = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    unit_price = Money()


def Items(**kwargs):
    return fields.List(fields.Nested(Item), validate=validate.Length(min=1, error="Must hold at least one item."),
                       **kwargs)


@contract("order.placed", description="A customer placed an order.")
class OrderPlaced(EventData):
    order_id = Id(required=True)
    user_id = Id(required=True)
    total_amount = Money(required=True)
    currency = Currency()
    items = Items(required=True)


@contract("payment.succeeded", description="An order was charged.", published_by=("payment",), key="user_id")
class PaymentSucceeded(EventData):
    order_id = Id(required=True)
    payment_id = Id(required=True)
    amount = Money(required=True)
    user_id = Id()  # the partition key: the ledger keeps each user's balance in order
    currency = Currency()
    items = Items(required=True)


@contract("payment.failed", description="The gateway declined an order.", published_by=("payment",))
class PaymentFailed(EventData):
    order_id = Id(required=True)
    reason = fields.String(required=True)


@contract("stock.replenished", description="Stock of a SKU arrived.")
class StockReplenished(EventData):
    sku = Id(required=True)
    quantity = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))


@contract("inventory.reserved", description="Every item of a paid order is reserved.",
          published_by=("inventory",))
class InventoryReserved(EventData):
    order_id = Id(required=True)
    items = Items(required=True)


@contract("inventory.depleted", description="A SKU's stock fell to or below the threshold.",
          published_by=("inventory",))
class InventoryDepleted(EventData):
    sku = Id(required=True)
    remaining = fields.Integer(required=True, strict=True)


@contract("order.cancelled", description="An order was cancelled: out of stock (inventory), or its payment did not "
                                          "come in time (the order saga).", published_by=("inventory", "order-saga"))
class OrderCancelled(EventData):
    order_id = Id(required=True)
    reason = fields.String(required=True)
    user_id = Id(allow_none=True)  # passed on to payment.refunded, whose partition key it is


@contract("order.payment-expired", description="An order's payment did not come within the order saga's payment "
                                                "timeout (the saga's own timeout, published when due).",
          published_by=("order-saga",))
class OrderPaymentExpired(EventData):
    order_id = Id(required=True)


@contract("payment.refunded", description="A charged order was refunded.", published_by=("payment",), key="user_id")
class PaymentRefunded(EventData):
    order_id = Id(required=True)
    payment_id = Id(required=True)
    amount = Money(required=True)
    user_id = Id(allow_none=True)  # the partition key; null where the cancellation did not say


@contract("order.shipped", description="An order left the warehouse.", published_by=("shipping",))
class OrderShipped(EventData):
    order_id = Id(required=True)
    tracking_number = Id(required=True)
    carrier = fields.String(required=True)


CONTRACTS = tuple(c.eda_contract for c in (OrderPlaced, PaymentSucceeded, PaymentFailed, StockReplenished,
                                           InventoryReserved, InventoryDepleted, OrderCancelled, OrderPaymentExpired,
                                           PaymentRefunded, OrderShipped))
