"""The table of contracts: each event's CLI name, routing key (= CloudEvents type) and data schema."""

from dataclasses import dataclass, field

from marshmallow import RAISE, Schema, ValidationError

from contracts import events
from contracts.compiled import GiveUp, compile_dump, compile_load
from eda.errors import ContractError, UnknownEvent

CLIENTS = "clients"  # publishers outside the workers: `eda publish`, the producer API, other AMQP clients


@dataclass(frozen=True)
class Contract:
    """One event type. Its schema instance is made once: schema construction is costly."""

    name: str
    type: str
    schema_class: type
    description: str
    version: int = 1
    published_by: tuple[str, ...] = (CLIENTS,)  # worker names, or CLIENTS: `eda publish`, producers
    schema: Schema = field(init=False, repr=False, compare=False)
    fast_load: object = field(init=False, repr=False, compare=False)
    fast_dump: object = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "schema", self.schema_class())
        object.__setattr__(self, "fast_load", compile_load(self.schema))
        object.__setattr__(self, "fast_dump", compile_dump(self.schema))

    def load(self, data, *, strict=False) -> dict:
        """Validate wire data into Python values; ``strict`` also rejects unknown fields (CLI input)."""
        if not isinstance(data, dict):
            raise ContractError(f"{self.type}: data must be a JSON object")
        if not strict and self.fast_load is not None:
            try:
                return self.fast_load(data)  # valid data, about 5x faster; anything else: marshmallow decides
            except (GiveUp, ValidationError):
                pass
        try:
            return self.schema.load(data, unknown=RAISE if strict else None)
        except ValidationError as exc:
            raise ContractError(f"{self.type}: invalid data: {describe(exc.messages)}", exc.messages) from None

    def dump(self, data: dict) -> dict:
        """Python values (snake_case, Decimal) into wire data (camelCase, "100.00")."""
        if self.fast_dump is not None:
            try:
                return self.fast_dump(data)
            except GiveUp:
                pass
        return self.schema.dump(data)

    @property
    def fields(self) -> list[tuple[str, bool]]:
        """(wire name, required) of each top-level field."""
        return [(f.data_key or n, f.required) for n, f in self.schema.fields.items()]


def describe(messages, prefix="") -> str:
    """Flatten marshmallow's nested error messages into ``field: reason; other.0.sku: reason``."""
    parts = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            parts.append(describe(value, f"{prefix}{key}."))
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        parts.append(f"{prefix.rstrip('.')}: {' '.join(messages)}" if prefix else " ".join(messages))
    else:
        parts.extend(describe(m, prefix) for m in messages)
    return "; ".join(parts)


CONTRACTS = (
    Contract("order-placed", "order.placed", events.OrderPlaced, "A customer placed an order."),
    Contract("payment-succeeded", "payment.succeeded", events.PaymentSucceeded, "An order was charged.",
             published_by=("payment",)),
    Contract("payment-failed", "payment.failed", events.PaymentFailed, "The gateway declined an order.",
             published_by=("payment",)),
    Contract("stock-replenished", "stock.replenished", events.StockReplenished, "Stock of a SKU arrived."),
    Contract("inventory-reserved", "inventory.reserved", events.InventoryReserved,
             "Every item of a paid order is reserved.", published_by=("inventory",)),
    Contract("inventory-depleted", "inventory.depleted", events.InventoryDepleted,
             "A SKU's stock fell to or below the threshold.", published_by=("inventory",)),
    Contract("order-cancelled", "order.cancelled", events.OrderCancelled, "An order was cancelled.",
             published_by=("inventory",)),
    Contract("payment-refunded", "payment.refunded", events.PaymentRefunded, "A charged order was refunded.",
             published_by=("payment",)),
    Contract("order-shipped", "order.shipped", events.OrderShipped, "An order left the warehouse.",
             published_by=("shipping",)),
)

_BY_KEY = {c.name: c for c in CONTRACTS} | {c.type: c for c in CONTRACTS}


def get(name_or_type: str) -> Contract:
    """The contract for a CLI name (``order-placed``) or type (``order.placed``)."""
    try:
        return _BY_KEY[name_or_type]
    except KeyError:
        known = ", ".join(c.name for c in CONTRACTS)
        raise UnknownEvent(f"unknown event {name_or_type!r}; known events: {known}") from None
