"""The partition key header of an event: what sends each key's events to one partition of an ordered worker.

A publisher does not know which workers consume its events, so the rule belongs to the contract: a
contract may name its key field (``@contract("payment.succeeded", key="user_id")``), and every event of
that type is published with the ``eda-partition-key`` header holding that field's value. An ordered
worker's consistent-hash exchange hashes that header. ``eda publish``, the Producer API and reactions
set it through ``Publisher.send_event``; anything else that publishes events (an outbox relay, a
bridge) calls ``partition_headers`` and adds what it returns to the message's headers.
"""

import json

from eda.contracts import registry
from eda.contracts.envelope import Event
from eda.errors import UnknownEvent
from eda.names import PARTITION_KEY_HEADER

__all__ = ["PARTITION_KEY_HEADER", "key_value", "partition_key", "partition_headers", "wire_key"]


def key_value(data, path: str):
    """The value at ``path`` (``user_id``, ``customer.id``) of an event's data, or None where absent."""
    value = data
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _text(value) -> str:
    """A key as header text: a string as it is, anything else in its JSON form (``5``, ``true``)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str, separators=(",", ":"))
    except (TypeError, ValueError):
        return str(value)


def _wire_path(contract) -> tuple[str, ...]:
    """The key's path as the wire has it (camelCase names: ``customer.id`` -> ``("customer", "id")``)."""
    path = _WIRE_PATHS.get(contract.type)
    if path is None:
        schema, parts = contract.schema, []
        for part in contract.key.split("."):
            field = {(f.attribute or n): f for n, f in schema.fields.items()}[part]
            parts.append(field.data_key or part)
            schema = getattr(field, "schema", None)
        path = _WIRE_PATHS[contract.type] = tuple(parts)
    return path


_WIRE_PATHS: dict[str, tuple[str, ...]] = {}


def wire_key(contract) -> str | None:
    """The key field as the wire names it (``userId``, ``customer.customerId``), or None: what another
    client reads from ``data`` to set the header."""
    return ".".join(_wire_path(contract)) if contract.key else None


def partition_key(event: Event, body: bytes | None = None) -> str | None:
    """The value of the event's partition key field as text, or None when its contract names no key
    or the event has no value there (the broker then hashes all such events to one partition).

    An event carried as its encoded ``body`` alone (``eda publish`` streams its input, an outbox relay
    reads rows: their ``data`` is empty) has its key read from the body's ``data``."""
    try:
        contract = registry.get(event.type)
    except UnknownEvent:  # not a registered event (a test's, a bridge's): it has no key
        return None
    if contract.key is None:
        return None
    value = key_value(event.data, contract.key)
    if value is None and not event.data and body:
        try:
            data = json.loads(body).get("data")
        except (ValueError, TypeError, AttributeError, UnicodeDecodeError):
            return None
        value = key_value(data, ".".join(_wire_path(contract)))
    return None if value is None else _text(value)


def partition_headers(event: Event, body: bytes | None = None) -> dict[str, str]:
    """``{"eda-partition-key": value}`` for an event whose contract names a key, else ``{}``: the
    headers to publish the event with (one dict lookup for an event without a key)."""
    key = partition_key(event, body)
    return {PARTITION_KEY_HEADER: key} if key is not None else {}
