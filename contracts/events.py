"""The data schemas of the reference application's events: e-commerce order processing.

Attributes are snake_case in Python and camelCase on the wire (``orderId``); see ``EventData``.
"""

from marshmallow import EXCLUDE, Schema, fields, validate

from contracts.fields import Currency, Id, Money


def camel_case(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class EventData(Schema):
    """Base of every event's data: camelCase keys on the wire, unknown keys ignored by consumers
    (so a producer may add an optional field without breaking running workers)."""

    class Meta:
        unknown = EXCLUDE

    def on_bind_field(self, field_name, field_obj):
        field_obj.data_key = camel_case(field_obj.data_key or field_name)


class Item(EventData):
    sku = Id(required=True)
    quantity = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    unit_price = Money()


def Items(**kwargs):
    return fields.List(fields.Nested(Item), validate=validate.Length(min=1, error="Must hold at least one item."),
                       **kwargs)


class OrderPlaced(EventData):
    order_id = Id(required=True)
    user_id = Id(required=True)
    total_amount = Money(required=True)
    currency = Currency()
    items = Items(required=True)


class PaymentSucceeded(EventData):
    order_id = Id(required=True)
    payment_id = Id(required=True)
    amount = Money(required=True)
    currency = Currency()
    items = Items(required=True)


class PaymentFailed(EventData):
    order_id = Id(required=True)
    reason = fields.String(required=True)


class StockReplenished(EventData):
    sku = Id(required=True)
    quantity = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))


class InventoryReserved(EventData):
    order_id = Id(required=True)
    items = Items(required=True)


class InventoryDepleted(EventData):
    sku = Id(required=True)
    remaining = fields.Integer(required=True, strict=True)


class OrderCancelled(EventData):
    order_id = Id(required=True)
    reason = fields.String(required=True)


class PaymentRefunded(EventData):
    order_id = Id(required=True)
    payment_id = Id(required=True)
    amount = Money(required=True)


class OrderShipped(EventData):
    order_id = Id(required=True)
    tracking_number = Id(required=True)
    carrier = fields.String(required=True)
