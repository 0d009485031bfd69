"""The shop's order producer, an example of the Producer API: what its web front end runs at checkout.

    python -m producers.orders u-1 WIDGET:2:19.99 GADGET:1:5.00

``place_order`` validates the order against the ``order.placed`` contract (Python values, snake_case
keys) and returns once the broker confirmed it; the payment worker charges it from there.
"""

import sys
import uuid
from decimal import Decimal

import eda_shop.contracts  # noqa: F401  (registers the shop's events)
from eda import ContractError, EdaError, Event, Producer, Settings


def place_order(producer: Producer, user_id: str, lines: list[tuple[str, int, Decimal]],
                order_id: str | None = None) -> Event:
    """Publish one order.placed of (sku, quantity, unit price) lines; its total is computed here."""
    items = [{"sku": sku, "quantity": quantity, "unit_price": price} for sku, quantity, price in lines]
    return producer.publish("order.placed", {
        "order_id": order_id or f"ord-{uuid.uuid4().hex[:12]}", "user_id": user_id,
        "total_amount": sum(price * quantity for _, quantity, price in lines), "currency": "USD", "items": items})


def _line(text: str) -> tuple[str, int, Decimal]:
    try:
        sku, quantity, price = text.split(":")
        return sku, int(quantity), Decimal(price)
    except ValueError:
        raise ContractError(f"not an order line SKU:QUANTITY:PRICE: {text!r}") from None


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python -m producers.orders USER_ID SKU:QUANTITY:PRICE...", file=sys.stderr)
        return 2
    try:
        with Producer(Settings.from_env(), source="shop/web") as producer:
            event = place_order(producer, argv[0], [_line(text) for text in argv[1:]])
    except EdaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(event.data["order_id"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
