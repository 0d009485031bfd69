"""The open table of contracts: each event's CLI name, routing key (= CloudEvents type) and data schema.

Any package registers its events with ``@contract`` on an ``EventData`` subclass; eda itself knows
none. Wherever eda takes an event type it takes the contract class too (``ctx.publish(InvoiceSent,
...)``): ``get`` is the one place that resolves either. ``get`` of a name not registered yet first runs
discovery (entry points, ``--app``) once.
"""

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeAlias, TypeVar, Union

from marshmallow import RAISE, Schema, ValidationError, fields as mfields

from eda import app
from eda.contracts import versions
from eda.contracts.compiled import GiveUp, compile_dump, compile_load
from eda.contracts.data import EventData
from eda.contracts.messages import describe, python_names, unknown_keys, unwritable, wire_hints
from eda.errors import ConfigError, ContractError, DefinitionError, UnknownEvent

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
    # The field (snake_case, dotted for a nested one) whose value every publisher puts in the
    # ``eda-partition-key`` header: events of one key reach one partition of an ordered worker.
    key: str | None = None
    # The contract of the reply a request of this type expects (a type or CLI name, resolved when
    # used: it may be registered after this one). None: the event is no request.
    reply: str | None = None
    where: str = field(default="", compare=False)  # module.Class that registered it, for error messages
    schema: Schema = field(init=False, repr=False, compare=False)
    fast_load: object = field(init=False, repr=False, compare=False)
    fast_dump: object = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "schema", self.schema_class())
        if self.key is not None:
            key_field(self.schema, self.key, f"{self.where or self.type}: key={self.key!r}")
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
            raise ContractError(f"{self.type}: invalid data: {describe(wire_hints(exc.messages, self.schema))}",
                                exc.messages) from None

    def from_python(self, data) -> tuple[dict, dict]:
        """Validate data as Python code gives it (snake_case keys, Python values): a reaction, or what
        ``Producer.publish`` sends. Return (loaded data, wire data); an unknown key is an error naming
        it, never dropped, and so is a missing or invalid field."""
        if not isinstance(data, dict):
            raise ContractError(f"{self.type}: data must be a dict")
        unknown = unknown_keys(self.schema, data)
        if unknown:
            raise ContractError(f"{self.type}: invalid data: {'; '.join(unknown)}")
        try:
            wire = self.dump(data)
        except Exception:  # a value its field cannot write, e.g. "ten" as money
            raise ContractError(f"{self.type}: invalid data: {unwritable(self.schema, data)}") from None
        if self.fast_load is not None:
            try:
                return self.fast_load(wire), wire
            except (GiveUp, ValidationError):
                pass
        try:
            return self.schema.load(wire), wire
        except ValidationError as exc:
            messages = python_names(exc.messages, self.schema)
            raise ContractError(f"{self.type}: invalid data: {describe(messages)}", messages) from None

    def dump(self, data: dict) -> dict:
        """Python values (snake_case, Decimal) into wire data (camelCase, "100.00")."""
        if self.fast_dump is not None:
            try:
                return self.fast_dump(data)
            except GiveUp:
                pass
        return self.schema.dump(data)

    def reply_contract(self) -> "Contract":
        """The contract a reply to this event follows; ConfigError when it declares none or names
        one that is not registered."""
        if self.reply is None:
            raise ConfigError(f"{self.type} is no request: its contract declares no reply "
                              f"(@contract({self.type!r}, reply=\"its.reply.type\"))")
        try:
            return get(self.reply)
        except UnknownEvent as exc:
            raise UnknownEvent(f"{self.type} declares the reply {self.reply!r}: {exc}") from None

    @property
    def fields(self) -> list[tuple[str, bool]]:
        """(wire name, required) of each top-level field."""
        return [(f.data_key or n, f.required) for n, f in self.schema.fields.items()]


def key_field(schema: Schema, path: str, where: str):
    """The field a partition key path (``user_id``, ``customer.id``) names; a DefinitionError saying
    ``where`` when a part is not a field, or passes through a list (a key is one value)."""
    field = None
    for part in path.split("."):
        fields_ = {(f.attribute or n): f for n, f in schema.fields.items()} if schema is not None else {}
        field = fields_.get(part)
        if field is None or isinstance(field, mfields.List):
            raise DefinitionError(f"{where}: {part!r} is not a field{' holding one value' if field else ''} "
                                  f"of the event's data")
        schema = field.schema if isinstance(field, mfields.Nested) else None
    return field


_CONTRACTS: dict[str, Contract] = {}  # by type, in registration order
_BY_KEY: dict[str, Contract] = {}  # by type and by CLI name


def _shape(schema: Schema) -> tuple:
    """What makes two schemas the same contract: each field's name, kind, wire key and requiredness."""
    return tuple((name, type(f).__name__, f.data_key, f.required) for name, f in sorted(schema.fields.items()))


def register(new: Contract) -> Contract:
    """Add a contract, or a new version of one; returns the type's newest version. The same version
    registered again with the same schema is the one already there (a module imported twice), with
    another schema it is an error naming both places; so is a CLI name taken by another type."""
    old = versions.registered(new.type, new.version)
    if old is not None:
        if old.name == new.name and old.key == new.key and old.reply == new.reply \
                and _shape(old.schema) == _shape(new.schema):
            return old
        raise DefinitionError(f"event {new.type!r} ({new.name}) version {new.version} is registered twice with "
                              f"different schemas: {old.where} and {new.where}")
    other = _BY_KEY.get(new.name) or _BY_KEY.get(new.type)
    if other is not None and other.type != new.type:
        raise DefinitionError(f"event name {new.name!r} is registered twice: {other.where} ({other.type}) and "
                              f"{new.where} ({new.type})")
    if other is not None and other.name != new.name:
        raise DefinitionError(f"the versions of {new.type!r} must share one name: {other.name!r} ({other.where}) "
                              f"and {new.name!r} ({new.where})")
    newest = versions.add(new)
    _CONTRACTS[new.type] = newest
    _BY_KEY[new.type] = _BY_KEY[new.name] = newest
    return newest


D = TypeVar("D", bound=type[EventData])


def contract(type: str, *, name: str | None = None, version: int = 1, description: str = "",
             published_by: tuple[str, ...] = (CLIENTS,), key: str | None = None,
             reply: "EventRef | None" = None) -> Callable[[D], D]:
    """Register an ``EventData`` subclass as the data schema of events of ``type`` (its routing key),
    as its ``version`` (a later version of a type is registered beside the earlier ones, with the
    upcasters between them: eda.contracts.versions).

    The CLI name defaults to the type with dots as dashes (``invoice.requested`` -> ``invoice-requested``).
    ``key`` names the field (snake_case; dotted for a nested one) that publishers put in the
    ``eda-partition-key`` header, so that a worker ordered by it gets each key's events in order.
    ``reply`` makes the event a request: it names the contract of the reply its handler gives
    (``Producer.request`` waits for it; the handler returns its data or calls ``ctx.reply``).
    """
    if reply is not None and not isinstance(reply, str):
        reply = get(reply).type  # a contract class: registered already, since it is defined

    def register_class(schema_class: D) -> D:
        doc = (schema_class.__doc__ or "").strip().splitlines()
        register(Contract(
            name or type.replace(".", "-"), type, schema_class, description or (doc[0] if doc else ""),
            version=version, published_by=tuple(published_by), key=key, reply=reply,
            where=f"{schema_class.__module__}.{schema_class.__qualname__}"))
        # The class names its own version: `ctx.publish(OrderPlacedV1, ...)` publishes version 1.
        schema_class.eda_contract = versions.registered(type, version)
        return schema_class

    return register_class


def all_contracts() -> tuple[Contract, ...]:
    """Every registered contract (the newest version of each type), in registration order (after discovery)."""
    app.load()
    return tuple(_CONTRACTS.values())


def all_versions() -> tuple[Contract, ...]:
    """Every version of every registered contract, each type's oldest first (after discovery)."""
    app.load()
    return tuple(c for newest in _CONTRACTS.values() for c in versions.of(newest.type))


def version(name_or_type: "EventRef", number: int) -> Contract:
    """One version of a contract; UnknownEvent where that version is not registered."""
    newest = get(name_or_type)
    found = versions.registered(newest.type, number)
    if found is None:
        raise UnknownEvent(f"{newest.type} has no version {number}; registered: "
                           f"{', '.join(str(c.version) for c in versions.of(newest.type))}")
    return found


# What names an event type wherever eda takes one: its type (``order.placed``), its CLI name
# (``order-placed``) or its contract class (the ``EventData`` subclass ``@contract`` registered).
EventRef: TypeAlias = Union[str, type[EventData], Contract]


def _of_class(ref) -> Contract:
    """The contract a class registered itself as (its own ``@contract``, not one inherited)."""
    found = vars(ref).get("eda_contract") if isinstance(ref, type) else None
    if isinstance(found, Contract):
        return found
    if isinstance(ref, type):
        raise UnknownEvent(f"{ref.__module__}.{ref.__qualname__} is not a contract: an EventData subclass "
                           f"becomes one with @contract(\"its.type\")")
    raise UnknownEvent(f"an event type is a type or CLI name (a string) or a @contract class, not "
                       f"{ref.__class__.__name__} {ref!r:.80}")


def get(name_or_type: EventRef) -> Contract:
    """The contract for a CLI name (``order-placed``), a type (``order.placed``) or a contract class."""
    if isinstance(name_or_type, Contract):
        return name_or_type
    if not isinstance(name_or_type, str):
        return _of_class(name_or_type)
    found = _BY_KEY.get(name_or_type)
    if found is None:
        app.load()
        found = _BY_KEY.get(name_or_type)
    if found is None:
        known = ", ".join(c.name for c in _CONTRACTS.values()) or "none"
        raise UnknownEvent(f"unknown event {name_or_type!r}{_did_you_mean(name_or_type)}; known events: {known}")
    return found


def _did_you_mean(name: str) -> str:
    """`` (did you mean 'loan.requested'?)`` for the registered name closest to ``name``, spelt as it is
    (a type where it has a dot, else a CLI name); empty where none is close."""
    close = difflib.get_close_matches(name, [c.type if "." in name else c.name for c in _CONTRACTS.values()], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def requests_replied_by(event_type: str) -> list[Contract]:
    """The request contracts whose reply is ``event_type`` (a reply is sent to its requester alone)."""
    return [c for c in all_contracts()
            if c.reply is not None and getattr(_BY_KEY.get(c.reply), "type", None) == event_type]
