"""Content headers py-amqp cannot decode: the decodable part is kept, the rest left out."""

import struct
import sys

import pytest
from amqp.basic_message import Message
from amqp.serialization import decode_properties_basic

from eda.frames import decodable_part, guarded_frame_handler, without_properties

BODY = b'{"a": 1}'


def header_frame(**properties) -> bytes:
    """A basic content header frame's payload, as py-amqp writes it."""
    message = Message(BODY, **properties)
    return struct.pack(">HHQ", 60, 0, len(BODY)) + message._serialize_properties()


def deep_table(levels: int) -> dict:
    table = {}
    for _ in range(levels):
        table = {"d": table}
    return table


def with_raw_correlation_id(raw: bytes) -> bytes:
    """A header whose correlation_id is ``raw`` bytes (py-amqp would refuse to write what is not UTF-8)."""
    payload = header_frame(correlation_id="X" * len(raw), message_id="m-1")
    return payload.replace(b"X" * len(raw), raw)


def decoded(payload: bytes) -> dict:
    return decode_properties_basic(payload, 12)[0]


def test_headers_too_deep_to_decode_are_left_out_and_every_other_property_kept():
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)
    try:
        payload = header_frame(application_headers={"deep": deep_table(3000)}, message_id="m-1",
                               correlation_id="c-1", type="order.placed", content_type="application/json")
    finally:
        sys.setrecursionlimit(limit)
    with pytest.raises(RecursionError):
        decoded(payload)
    kept = decoded(decodable_part(payload))
    assert kept == {"content_type": "application/json", "correlation_id": "c-1", "message_id": "m-1",
                    "type": "order.placed"}


def test_a_short_string_that_is_not_utf8_is_left_out():
    kept = decoded(decodable_part(with_raw_correlation_id(b"\xff\xfe")))
    assert kept == {"message_id": "m-1"}


def test_a_header_that_decodes_is_kept_whole():
    payload = header_frame(application_headers={"a": 1}, message_id="m-1", timestamp=5, delivery_mode=2)
    assert decodable_part(payload) == payload


def test_a_frame_that_cannot_be_walked_has_no_decodable_part_and_falls_back_to_no_properties():
    payload = header_frame(message_id="m-1")[:-3]  # cut short
    assert decodable_part(payload) is None
    assert decoded(without_properties(payload)) == {}


def test_the_guard_delivers_the_message_marked_with_the_reason():
    delivered = []
    handler = guarded_frame_handler(connection=type("C", (), {"bytes_recv": 0})(),
                                    callback=lambda channel, sig, args, msg: delivered.append(msg))
    deliver = struct.pack(">HH", 60, 60) + b"\x03tag" + struct.pack(">Q", 1) + b"\x00\x00\x02rk"
    handler((1, 1, deliver))
    handler((2, 1, with_raw_correlation_id(b"\xff")))
    handler((3, 1, BODY))
    [message] = delivered
    assert message.body == BODY and message.properties == {"message_id": "m-1"}
    assert "UnicodeDecodeError" in message.undecodable


def test_an_error_raised_by_whoever_takes_the_message_is_not_swallowed():
    def callback(channel, sig, args, msg):
        raise KeyError("the consumer's own bug")

    handler = guarded_frame_handler(connection=type("C", (), {"bytes_recv": 0})(), callback=callback)
    deliver = struct.pack(">HH", 60, 60) + b"\x03tag" + struct.pack(">Q", 1) + b"\x00\x00\x02rk"
    handler((1, 1, deliver))
    empty = struct.pack(">HHQ", 60, 0, 0) + Message(b"", message_id="m")._serialize_properties()
    with pytest.raises(KeyError):
        handler((2, 1, empty))
