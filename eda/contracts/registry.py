"""The open table of contracts: each event's CLI name, routing key (= CloudEvents type) and data schema.

Any package registers its events with ``@contract`` on an ``EventData`` subclass; eda itself knows
none. ``get`` of a name not registered yet first runs discovery (entry points, ``--app``) once.
"""

from dataclasses import dataclass, field

from marshmallow import RAISE, Schema, ValidationError

from eda.contracts.compiled import GiveUp, compile_dump, compile_load
from eda.errors import ContractError, DefinitionError, UnknownEvent

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
    where: str = field(default="", compare=False)  # module.Class that registered it, for error messages
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


_CONTRACTS: dict[str, Contract] = {}  # by type, in registration order
_BY_KEY: dict[str, Contract] = {}  # by type and by CLI name


def _shape(schema: Schema) -> tuple:
    """What makes two schemas the same contract: each field's name, kind, wire key and requiredness."""
    return tuple((name, type(f).__name__, f.data_key, f.required) for name, f in sorted(schema.fields.items()))


def register(new: Contract) -> Contract:
    """Add a contract; the same type registered again with the same schema is the one already there
    (a module imported twice), with another schema it is an error naming both places."""
    old = _CONTRACTS.get(new.type) or _BY_KEY.get(new.name)
    if old is not None:
        if old.type == new.type and old.name == new.name and old.version == new.version \
                and _shape(old.schema) == _shape(new.schema):
            return old
        raise DefinitionError(f"event {new.type!r} ({new.name}) is registered twice with different schemas: "
                              f"{old.where} and {new.where}")
    _CONTRACTS[new.type] = new
    _BY_KEY[new.type] = _BY_KEY[new.name] = new
    return new


def contract(type: str, *, name: str | None = None, version: int = 1, description: str = "",
             published_by: tuple[str, ...] = (CLIENTS,)):
    """Register an ``EventData`` subclass as the data schema of events of ``type`` (its routing key).

    The CLI name defaults to the type with dots as dashes (``invoice.requested`` -> ``invoice-requested``).
    """

    def register_class(schema_class):
        doc = (schema_class.__doc__ or "").strip().splitlines()
        registered = register(Contract(
            name or type.replace(".", "-"), type, schema_class, description or (doc[0] if doc else ""),
            version=version, published_by=tuple(published_by),
            where=f"{schema_class.__module__}.{schema_class.__qualname__}"))
        schema_class.eda_contract = registered
        return schema_class

    return register_class


def _discover() -> None:
    from eda import discovery  # discovery imports workers, which import this module

    discovery.load()


def all_contracts() -> tuple[Contract, ...]:
    """Every registered contract, in registration order (after discovery)."""
    _discover()
    return tuple(_CONTRACTS.values())


def get(name_or_type: str) -> Contract:
    """The contract for a CLI name (``order-placed``) or type (``order.placed``)."""
    found = _BY_KEY.get(name_or_type)
    if found is None:
        _discover()
        found = _BY_KEY.get(name_or_type)
    if found is None:
        known = ", ".join(c.name for c in _CONTRACTS.values()) or "none"
        raise UnknownEvent(f"unknown event {name_or_type!r}; known events: {known}")
    return found
