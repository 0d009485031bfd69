"""Reading frames so that no message's properties can break a connection.

py-amqp decodes a message's properties (its headers table above all) while it reads the content
header frame, before any eda code sees the message. A table nested thousands of levels deep raises
RecursionError there, a table timestamp past year 9999 OverflowError, an unknown field type
FrameSyntaxError: the exception leaves ``drain_events`` and would end the connection, and with it the
worker, on every redelivery of the same message. ``guarded_frame_handler`` wraps py-amqp's own frame
handler (passed to ``amqp.Connection`` as ``frame_handler``) and, where a content header cannot be
decoded, hands py-amqp a header it can decode instead: the same properties less those that cannot
be decoded (each checked alone), else no properties at all. The message then arrives like any other, its body intact,
with ``undecodable`` set to the reason, and the worker dead-letters it by its own decision.
"""

import struct

from amqp.method_framing import frame_handler
from amqp.serialization import loads

CONTENT_HEADER = 2
_PREFIX = 12  # class id, weight and body size come before the property flags
SHORT, TABLE, OCTET, TIMESTAMP = "s", "F", "o", "T"
# basic's properties in the order of their flag bits (AMQP 0-9-1): content_type, content_encoding,
# headers, delivery_mode, priority, correlation_id, reply_to, expiration, message_id, timestamp, type,
# user_id, app_id, cluster_id.
_BASIC_PROPERTIES = ((0x8000, SHORT), (0x4000, SHORT), (0x2000, TABLE), (0x1000, OCTET), (0x0800, OCTET),
                     (0x0400, SHORT), (0x0200, SHORT), (0x0100, SHORT), (0x0080, SHORT), (0x0040, TIMESTAMP),
                     (0x0020, SHORT), (0x0010, SHORT), (0x0008, SHORT), (0x0004, SHORT))


def guarded_frame_handler(connection, callback):
    """py-amqp's frame handler, made to deliver a message whose properties it cannot decode."""
    undecodable = {}  # channel id -> why the message in the making on it lost properties
    delivering = [False]  # set once py-amqp hands a message on: an error after that is not ours to catch

    def deliver(channel, method_sig, args, content):
        delivering[0] = True
        if content is not None:
            content.undecodable = undecodable.pop(channel, None)
        return callback(channel, method_sig, args, content)

    inner = frame_handler(connection, deliver)

    def on_frame(frame):
        frame_type, channel, payload = frame
        if frame_type != CONTENT_HEADER:
            return inner(frame)
        delivering[0] = False
        try:
            return inner(frame)
        except Exception as exc:  # noqa: BLE001 - any failure to decode the properties
            if delivering[0]:
                raise  # raised by whoever took the message, not by the decoding
            reason = f"its AMQP properties cannot be decoded ({type(exc).__name__}: {str(exc)[:200]})"
        for replacement in (decodable_part(payload), without_properties(payload)):
            if replacement is None:
                continue
            undecodable[channel] = reason
            delivering[0] = False
            try:
                return inner((frame_type, channel, replacement))
            except Exception:  # noqa: BLE001
                if delivering[0]:
                    raise
        raise AssertionError("unreachable: a header without properties always decodes")

    return on_frame


def decodable_part(payload) -> bytes | None:
    """The content header less each property that cannot be decoded on its own (a short string that is
    not UTF-8, a headers table too deep or malformed); None where the frame cannot even be walked."""
    try:
        flags, = struct.unpack_from(">H", payload, _PREFIX)
        offset, kept, parts = _PREFIX + 2, 0, []
        for flag, kind in _BASIC_PROPERTIES:
            if not flags & flag:
                continue
            size = {OCTET: 1, TIMESTAMP: 8}.get(kind)
            if kind == SHORT:
                size = 1 + payload[offset]
            elif kind == TABLE:
                size = 4 + struct.unpack_from(">I", payload, offset)[0]
            raw = bytes(payload[offset:offset + size])
            offset += size
            if len(raw) != size:
                return None
            if _decodes(kind, raw):
                kept |= flag
                parts.append(raw)
        return bytes(payload[:_PREFIX]) + struct.pack(">H", kept) + b"".join(parts)
    except (struct.error, IndexError):
        return None


def _decodes(kind: str, raw: bytes) -> bool:
    try:
        if kind == SHORT:
            raw[1:].decode("utf-8")  # strict: py-amqp's own decoding would let surrogates through
        elif kind == TABLE:
            loads(TABLE, raw, 0)
        return True
    except Exception:  # noqa: BLE001 - RecursionError, UnicodeDecodeError, FrameSyntaxError, ...
        return False


def without_properties(payload) -> bytes:
    """The content header with no properties at all: class id, weight and body size kept."""
    return bytes(payload[:_PREFIX]) + b"\0\0"
