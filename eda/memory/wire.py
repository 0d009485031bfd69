"""Message properties as the in-memory broker keeps them: encoded as py-amqp writes a content header.

A publish encodes its properties exactly as py-amqp would on a socket (so what py-amqp cannot write
fails the same way), and a delivery decodes them as py-amqp reads them (timestamps as datetimes,
strings as str), with eda's guard for a header it cannot decode (``eda.frames``): the message then
arrives with ``undecodable`` set, as from RabbitMQ. The broker's own header edits (``x-death``,
a quorum queue's ``x-delivery-count``) decode, change and encode again. Also how RabbitMQ shows
values and names an argument that differs on a redeclare.
"""

import struct
from decimal import Decimal

from amqp.basic_message import Message
from amqp.serialization import decode_properties_basic

from eda.frames import decodable_part, without_properties

_PREFIX = struct.Struct(">HHQ")  # a content header's class id, weight and body size, before the properties
BASIC = 60

# The queue arguments RabbitMQ 3.10 compares on a redeclare (others are taken as given the first time).
QUEUE_ARGUMENTS = ("x-expires", "x-message-ttl", "x-dead-letter-exchange", "x-dead-letter-routing-key",
                   "x-max-length", "x-max-length-bytes", "x-max-in-memory-length", "x-max-in-memory-bytes",
                   "x-max-priority", "x-overflow", "x-queue-mode", "x-single-active-consumer", "x-queue-type",
                   "x-quorum-initial-group-size", "x-delivery-limit", "x-dead-letter-strategy",
                   "x-queue-master-locator", "x-queue-leader-locator")


def encode_properties(properties: dict) -> bytes:
    """The properties as a content header carries them; raises where py-amqp could not write them."""
    return Message(b"", **properties)._serialize_properties()


def decode_properties(header: bytes) -> tuple[dict, str | None]:
    """(properties, None), or where py-amqp could not decode them all, (what can be decoded, why)."""
    try:
        return decode_properties_basic(header, 0)[0], None
    except Exception as exc:  # noqa: BLE001 - RecursionError, UnicodeDecodeError, FrameSyntaxError, ...
        reason = f"its AMQP properties cannot be decoded ({type(exc).__name__}: {str(exc)[:200]})"
    payload = _PREFIX.pack(BASIC, 0, 0) + header
    for replacement in (decodable_part(payload), without_properties(payload)):
        if replacement is not None:
            try:
                return decode_properties_basic(replacement, _PREFIX.size)[0], reason
            except Exception:  # noqa: BLE001
                continue
    return {}, reason


def with_headers(header: bytes, extra: dict, drop=()) -> bytes:
    """``header`` with ``extra`` headers set and the properties in ``drop`` removed; as it was where it
    cannot be decoded."""
    properties, problem = decode_properties(header)
    if problem:
        return header
    properties["application_headers"] = {**(properties.get("application_headers") or {}), **extra}
    for name in drop:
        properties.pop(name, None)
    return encode_properties(properties)


def with_properties(header: bytes, **changes) -> bytes:
    """``header`` with the given properties set (``reply_to=...``); as it was where it cannot be decoded."""
    properties, problem = decode_properties(header)
    return header if problem else encode_properties({**properties, **changes})


def dead_lettered(header: bytes, *, queue: str, reason: str, exchange: str, routing_key: str, time) -> bytes:
    """The properties of a message dead-lettered from ``queue``: an ``x-death`` entry counted per queue
    and reason (latest first), ``x-first-death-*`` kept from the first time, no ``expiration``."""
    properties, problem = decode_properties(header)
    if problem:
        return header
    headers = properties.get("application_headers") or {}
    deaths = [dict(d) for d in headers.get("x-death") or [] if isinstance(d, dict)]
    entry = next((d for d in deaths if d.get("queue") == queue and d.get("reason") == reason), None)
    if entry is None:
        entry = {"count": 0, "reason": reason, "queue": queue, "exchange": exchange, "routing-keys": [routing_key]}
    else:
        deaths.remove(entry)
    entry.update(count=(entry.get("count") or 0) + 1, time=time)
    first = {} if "x-first-death-reason" in headers else {
        "x-first-death-exchange": exchange, "x-first-death-queue": queue, "x-first-death-reason": reason}
    return with_headers(header, {"x-death": [entry, *deaths], **first}, drop=("expiration",))


def expiration_ms(header: bytes) -> int | None:
    """A message's own TTL (its ``expiration`` property, milliseconds as text), if it has one."""
    value = decode_properties(header)[0].get("expiration")
    try:
        return max(0, int(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


def shown(value) -> str:
    """A value as RabbitMQ quotes it in an error (``'true'``, ``'topic'``)."""
    return f"'{str(value).lower() if isinstance(value, bool) else value}'"


def typed(value) -> str:
    """A table value as RabbitMQ names it: ``the value 'quorum' of type 'longstr'``, or ``none``."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        kind = "bool"
    elif isinstance(value, int):
        kind = "signedint" if -2**31 <= value < 2**31 else "long"
    else:
        kind = {float: "double", Decimal: "decimal", dict: "table", list: "array"}.get(type(value), "longstr")
    return f"the value {shown(value)} of type '{kind}'"


def _same(a, b) -> bool:
    return (type(a) is bool) == (type(b) is bool) and a == b


def argument_mismatch(current: dict, asked: dict, keys=QUEUE_ARGUMENTS) -> tuple[str, str] | None:
    """The first argument among ``keys`` whose value differs: (``'name'``, ``received ... but current is
    ...``), as RabbitMQ words a PRECONDITION_FAILED redeclare; None where they agree."""
    for key in keys:
        if not _same(current.get(key), asked.get(key)):
            return f"'{key}'", f"received {typed(asked.get(key))} but current is {typed(current.get(key))}"
    return None
