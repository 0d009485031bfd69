"""Reading frames so that no message's properties can break a connection.

py-amqp decodes a message's properties (its headers table above all) while it reads the content
header frame, before any eda code sees the message. A table nested thousands of levels deep raises
RecursionError there, a table timestamp past year 9999 OverflowError, an unknown field type
FrameSyntaxError: the exception leaves ``drain_events`` and would end the connection, and with it the
worker, on every redelivery of the same message. ``guarded_frame_handler`` wraps py-amqp's own frame
handler (passed to ``amqp.Connection`` as ``frame_handler``) and, where a content header cannot be
decoded, hands py-amqp a header it can decode instead: first the same properties with the headers
table emptied, else no properties at all. The message then arrives like any other, its body intact,
with ``undecodable`` set to the reason, and the worker dead-letters it by its own decision.
"""

import struct

from amqp.method_framing import frame_handler

CONTENT_HEADER = 2
_PREFIX = 12  # class id, weight and body size come before the property flags
_SHORT_STRINGS_BEFORE_HEADERS = (0x8000, 0x4000)  # content_type, content_encoding
_HEADERS_FLAG = 0x2000


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
        for replacement in (without_headers(payload), without_properties(payload)):
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


def without_headers(payload) -> bytes | None:
    """The content header with an empty headers table, other properties kept; None if it has no table."""
    try:
        flags, = struct.unpack_from(">H", payload, _PREFIX)
        if not flags & _HEADERS_FLAG:
            return None
        offset = _PREFIX + 2
        for flag in _SHORT_STRINGS_BEFORE_HEADERS:
            if flags & flag:
                offset += 1 + payload[offset]
        length, = struct.unpack_from(">I", payload, offset)
        end = offset + 4 + length
        if end > len(payload):
            return None
        return bytes(payload[:offset]) + b"\0\0\0\0" + bytes(payload[end:])
    except (struct.error, IndexError):
        return None


def without_properties(payload) -> bytes:
    """The content header with no properties at all: class id, weight and body size kept."""
    return bytes(payload[:_PREFIX]) + b"\0\0"
