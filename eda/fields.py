"""Field types shared by the contracts: money and currency as the wire contract fixes them."""

from decimal import Decimal, InvalidOperation
from typing import Any

from marshmallow import ValidationError, fields, validate


class Money(fields.Decimal):
    """A decimal amount: accepted as a JSON number or numeric string, written as "100.00"."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("validate", validate.Range(min=0))
        super().__init__(places=2, as_string=True, allow_nan=False, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise ValidationError("Not a valid amount.")
        if isinstance(value, float):
            value = repr(value)  # 19.99 stays 19.99, not 19.989999...
        try:
            amount = Decimal(str(value))
        except (InvalidOperation, TypeError):
            raise ValidationError("Not a valid amount.") from None
        return super()._deserialize(amount, attr, data, **kwargs)


def Currency(**kwargs: Any) -> fields.String:
    """A three-letter ISO 4217 code, "USD" when absent."""
    return fields.String(
        load_default="USD",
        validate=validate.Regexp(r"^[A-Z]{3}$", error="Must be a three-letter currency code like USD."),
        **kwargs,
    )


def Id(**kwargs: Any) -> fields.String:
    """A non-empty identifier (order, payment, user, SKU)."""
    return fields.String(validate=validate.Length(min=1, max=200), **kwargs)
