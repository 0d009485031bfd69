"""CloudEvents in binary content mode, as the RabbitMQ protocol binding defines it: the attributes in
``ce-*`` headers (``ce-id``, ``ce-type``, ``ce-source``, ``ce-specversion``, extensions such as
``ce-correlationid``), ``content_type`` the data's media type, the data alone in the body.

eda accepts it on every queue, for clients that publish with a CloudEvents SDK in that mode: the
event is put back together in structured mode and validated exactly as one that came so. eda itself
publishes structured mode only.
"""

import orjson

from eda.contracts.envelope import CONTENT_TYPE, DATA_CONTENT_TYPE, Event, decode
from eda.errors import ContractError

PREFIX = "ce-"
MARKER = PREFIX + "specversion"
TRACE_CONTEXT = ("traceparent", "tracestate")  # ce-traceparent: never a failure, whatever it holds


def is_binary(content_type, headers) -> bool:
    return bool(headers) and MARKER in headers and content_type != CONTENT_TYPE


def _text(name: str, value):
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ContractError(f"CloudEvent attribute {name!r} (header {PREFIX}{name}) is not UTF-8") from None
    return value


def structured(body: bytes, content_type, headers: dict) -> bytes:
    """The structured-mode body of a binary-mode message: its ce-* headers and data in one JSON object."""
    wire = {}
    for key, value in headers.items():
        if isinstance(key, str) and key.lower().startswith(PREFIX):
            name = key[len(PREFIX):].lower()
            if name in TRACE_CONTEXT and isinstance(value, bytes):
                value = value.decode("utf-8", "replace")  # checked by decode: a bad one starts a new trace
            wire[name] = _text(name, value)
    media_type = (content_type or DATA_CONTENT_TYPE).split(";")[0].strip().lower()
    wire["datacontenttype"] = media_type  # checked by decode like any datacontenttype
    try:
        wire["data"] = orjson.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ContractError(f"binary-mode CloudEvent: the body is not UTF-8 JSON: {exc}") from None
    return orjson.dumps(wire)


def decode_message(body: bytes, content_type=None, headers=None, accepted_types=None) -> Event:
    """Decode a delivery in either content mode; raise ContractError saying what is wrong."""
    if is_binary(content_type, headers):
        body = structured(body, content_type, headers)
    return decode(body, accepted_types)


CLAIM_BODY_LIMIT = 65_536  # a larger body is not parsed again to name a message that is no event


def claimed_identity(body, properties, headers) -> tuple:
    """The id and type a message says it has, whether or not it is a valid event (to name a poison
    message in logs and in ``eda dlq``): its AMQP properties, its ce-* headers, or, in structured mode
    (the body is the envelope, not the data), its JSON body's."""
    event_id, event_type = properties.get("message_id"), properties.get("type")
    attributes = {k.lower(): v for k, v in headers.items() if isinstance(k, str)} if isinstance(headers, dict) else {}
    event_id = event_id or _shown(attributes.get(PREFIX + "id"))
    event_type = event_type or _shown(attributes.get(PREFIX + "type"))
    binary = is_binary(properties.get("content_type"), attributes)
    if (event_id is None or event_type is None) and not binary and len(body or b"") <= CLAIM_BODY_LIMIT:
        try:
            wire = orjson.loads(body)
        except (TypeError, ValueError):
            wire = None
        if isinstance(wire, dict):
            event_id = event_id or _shown(wire.get("id"))
            event_type = event_type or _shown(wire.get("type"))
    return event_id, event_type


def _shown(value):
    """A claimed attribute as text (a number as its digits), or None where it is neither."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) else None
