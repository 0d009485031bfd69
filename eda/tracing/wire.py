"""The trace context an encoded CloudEvent carries (the Distributed Tracing extension's ``traceparent``
and ``tracestate`` attributes), written into or read from the body without decoding the event."""

import orjson

from eda.contracts.envelope import trace_context


def with_trace_context(body: bytes, event) -> bytes:
    """An encoded CloudEvent with the event's trace attributes added (eda's bodies are JSON objects)."""
    if body[:1] != b"{" or b'"traceparent"' in body:
        return body
    extra = b'"traceparent":"%s",' % event.traceparent.encode()
    if event.tracestate:
        extra += b'"tracestate":"%s",' % event.tracestate.encode().replace(b"\\", b"\\\\").replace(b'"', b'\\"')
    return b"{" + extra + body[1:]


def replace_trace_context(body: bytes, event) -> bytes:
    """An encoded CloudEvent with the event's trace attributes in place of those it was encoded with
    (a reaction carries its cause's until its own publish span exists)."""
    if b'"traceparent"' not in body:
        return with_trace_context(body, event)
    wire = orjson.loads(body)
    wire["traceparent"] = event.traceparent
    if event.tracestate:
        wire["tracestate"] = event.tracestate
    else:
        wire.pop("tracestate", None)
    return orjson.dumps(wire)


def read_context(event, body: bytes) -> None:
    """The trace context an encoded CloudEvent carries, onto ``event`` (valid W3C context only)."""
    try:
        wire = orjson.loads(body)
    except (ValueError, TypeError):
        return
    if isinstance(wire, dict):
        event.traceparent, event.tracestate = trace_context(wire.get("traceparent"), wire.get("tracestate"))
