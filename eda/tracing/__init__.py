"""OpenTelemetry traces of events, opt in: a span per publish and per handling, context on the wire.

Tracing is on when ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``, ``console``, or any installed
``opentelemetry_traces_exporter`` entry point); unset or ``none`` it is off, and nothing of
OpenTelemetry is imported. ``setup`` decides once per process, in this one place: on, ``Tracing`` is a
middleware that the process's entry points (``eda worker``, ``eda publish``, the Producer, the outbox
relay) put first in their middleware list; off, there is none, and the runtime runs nothing for it.

The context travels in the event, as the CloudEvents Distributed Tracing extension says: the
``traceparent`` and ``tracestate`` attributes (W3C Trace Context). Spans follow OpenTelemetry's
messaging conventions: ``publish <type>`` (PRODUCER, ended when the broker confirms), ``process
<type>`` (CONSUMER, ended when the event is settled, with its outcome) and inside it the handler's
own span, current while it runs, so that spans the handler makes (an instrumented HTTP call) nest
under it. A reaction's publish span is a child of the handler's span.
"""

import os
import threading

from eda.contracts.envelope import Event
from eda.tracing.export import exporter_names
from eda.tracing.spans import Tracing, span_ids

__all__ = ["Tracing", "active", "exporter_names", "middleware", "setup", "span_ids", "stamp"]

active = None  # the Tracing of this process once ``setup`` turned it on (for ``stamp``), else None
_lock = threading.Lock()
_decided = False


def setup(service: str, environ=os.environ):
    """Turn tracing on for this process if ``OTEL_TRACES_EXPORTER`` asks for it, with ``service`` as
    the service name unless ``OTEL_SERVICE_NAME`` says otherwise; the first call decides, later ones
    return its choice. Returns ``active``. A missing SDK or exporter is a ConfigError (one line, exit 2)."""
    global active, _decided
    if not _decided:
        with _lock:
            if not _decided:
                if exporter_names(environ):
                    active = Tracing(service, environ)
                    from eda import logs

                    logs.trace_ids = active.current_ids
                _decided = True
    return active


def middleware(service: str, environ=os.environ) -> list:
    """``[Tracing]`` where tracing is on (see ``setup``), else ``[]``: the head of a middleware list."""
    tracer = setup(service, environ)
    return [tracer] if tracer is not None else []


def stamp(event: Event, service: str = "eda-outbox") -> Event:
    """Write the current trace context into ``event`` (a ``create`` span, ended at once) for an event
    that another process publishes later, as the outbox does: call it before encoding the event, in
    the caller's context (its request's span becomes the parent). The process that publishes the
    body later makes its publish span in that trace. Nothing happens when tracing is off; returns
    the event."""
    if not _decided:
        setup(service)
    if active is not None:
        active.create(event)
    return event
