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
from contextlib import contextmanager
from importlib.metadata import entry_points

import orjson

from eda.contracts.envelope import Event, trace_context
from eda.errors import ConfigError
from eda.middleware import Middleware

active = None  # the Tracing of this process once ``setup`` turned it on (for ``stamp``), else None
_lock = threading.Lock()
OFF = ("", "none")
EXPORTER_GROUP = "opentelemetry_traces_exporter"
OTLP_PROTOCOLS = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}
OUTCOMES = {"requeued": "given-back"}  # the runtime's outcome names, as a span says them
SYSTEM = "rabbitmq"
INSTALL = "pip install 'eda[otel]'"


def exporter_names(environ=os.environ) -> list[str]:
    """The exporters ``OTEL_TRACES_EXPORTER`` asks for (a comma-separated list); none: tracing is off."""
    names = [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "").split(",")]
    return [n for n in names if n not in OFF]


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


def stamp(event, service: str = "eda-outbox"):
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


def span_ids(span) -> dict:
    """``trace_id`` and ``span_id`` of a span as log fields (hex, as trace backends show them)."""
    ctx = span.get_span_context()
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")} if ctx.is_valid else {}


def _with_trace_context(body: bytes, event) -> bytes:
    """An encoded CloudEvent with the event's trace attributes added (eda's bodies are JSON objects)."""
    if body[:1] != b"{" or b'"traceparent"' in body:
        return body
    extra = b'"traceparent":"%s",' % event.traceparent.encode()
    if event.tracestate:
        extra += b'"tracestate":"%s",' % event.tracestate.encode().replace(b"\\", b"\\\\").replace(b'"', b'\\"')
    return b"{" + extra + body[1:]


def _replace_trace_context(body: bytes, event) -> bytes:
    """An encoded CloudEvent with the event's trace attributes in place of those it was encoded with
    (a reaction carries its cause's until its own publish span exists)."""
    if b'"traceparent"' not in body:
        return _with_trace_context(body, event)
    import orjson

    wire = orjson.loads(body)
    wire["traceparent"] = event.traceparent
    if event.tracestate:
        wire["tracestate"] = event.tracestate
    else:
        wire.pop("tracestate", None)
    return orjson.dumps(wire)


def _read_context(event, body: bytes) -> None:
    """The trace context an encoded CloudEvent carries, onto ``event`` (valid W3C context only)."""
    try:
        wire = orjson.loads(body)
    except (ValueError, TypeError):
        return
    if isinstance(wire, dict):
        event.traceparent, event.tracestate = trace_context(wire.get("traceparent"), wire.get("tracestate"))


def _provider(service: str, environ):
    """An SDK TracerProvider configured by the standard OTEL_* variables, with a batch processor per exporter."""
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigError(f"OTEL_TRACES_EXPORTER is set: tracing needs the OpenTelemetry SDK ({INSTALL})") from None
    named = environ.get("OTEL_SERVICE_NAME") or "service.name=" in environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    provider = TracerProvider(resource=Resource.create({} if named else {SERVICE_NAME: service}))
    for name in exporter_names(environ):
        provider.add_span_processor(BatchSpanProcessor(_exporter(name, environ)))
    return provider


def _exporter(name: str, environ):
    if name == "otlp":  # OTLP over http/protobuf unless OTEL_EXPORTER_OTLP_PROTOCOL says grpc
        protocol = (environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                    or "http/protobuf").strip()
        if protocol not in OTLP_PROTOCOLS:
            raise ConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: traces go over http/protobuf or grpc")
        name = OTLP_PROTOCOLS[protocol]
    found = list(entry_points(group=EXPORTER_GROUP, name=name))
    if not found:
        raise ConfigError(f"OTEL_TRACES_EXPORTER: no span exporter {name!r} is installed ({INSTALL} brings otlp "
                          f"over http/protobuf and console)")
    return found[0].load()()


class Tracing(Middleware):
    """Tracing on, as a middleware: a span around each handling (ended by ``on_settled``) and each
    publish (ended by the broker's confirm), the context written into what is published."""

    def __init__(self, service: str, environ=os.environ):
        try:
            from opentelemetry import context, trace
            from opentelemetry.trace import SpanKind, Status, StatusCode
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
        except ImportError:
            raise ConfigError(f"OTEL_TRACES_EXPORTER is set: tracing needs OpenTelemetry ({INSTALL})") from None
        from eda import __version__

        self._trace, self._context, self._kind = trace, context, SpanKind
        self._error = lambda description: Status(StatusCode.ERROR, description[:1000])
        self._propagator = TraceContextTextMapPropagator()  # the wire contract is W3C, whatever OTEL_PROPAGATORS says
        provider = trace.get_tracer_provider()
        if isinstance(provider, trace.ProxyTracerProvider):  # none set by the application: eda sets the SDK's
            provider = _provider(service, environ)
            trace.set_tracer_provider(provider)
        self.provider = provider
        self.tracer = provider.get_tracer("eda", __version__)

    # Context on the wire

    def _parent(self, event):
        """The context an incoming event carries; an empty one (a new trace) where it has none."""
        if event.traceparent is None:
            return self._context.Context()
        carrier = {"traceparent": event.traceparent}
        if event.tracestate:
            carrier["tracestate"] = event.tracestate
        return self._propagator.extract(carrier, context=self._context.Context())

    def _write(self, event, span) -> None:
        carrier = {}
        self._propagator.inject(carrier, context=self._trace.set_span_in_context(span))
        event.traceparent, event.tracestate = carrier.get("traceparent"), carrier.get("tracestate")

    @staticmethod
    def _attributes(event, operation: str, kind: str) -> dict:
        attributes = {"messaging.system": SYSTEM, "messaging.operation.name": operation,
                      "messaging.operation.type": kind, "messaging.message.id": event.id,
                      "messaging.message.conversation_id": event.correlation_id,
                      "messaging.rabbitmq.destination.routing_key": event.type,  # = the CloudEvent's type
                      "cloudevents.event_source": event.source}  # id and type: the two above
        if event.causation_id:
            attributes["eda.causation_id"] = event.causation_id
        return attributes

    # Publishing

    def publishing(self, event) -> None:
        """Start ``event``'s publish span, a child of the current span, and write its context into the
        event; the span ends when the broker confirms the event (``sending``)."""
        event.span = self.tracer.start_span(f"publish {event.type}", kind=self._kind.PRODUCER,
                                            attributes=self._attributes(event, "publish", "send"))
        self._write(event, event.span)

    def create(self, event) -> None:
        """A ``create`` span, ended at once, whose context the event carries (see ``stamp``)."""
        span = self.tracer.start_span(f"create {event.type}", kind=self._kind.PRODUCER,
                                      attributes=self._attributes(event, "create", "create"))
        self._write(event, span)
        span.end()

    def sending(self, event, body, exchange: str, callback):
        """Called as the event is handed to the broker: its publish span (started now unless ``handle``
        started it, a reaction's), the body with its context, and a callback that ends the span once
        the broker settled the publish."""
        if event.span is not None and getattr(event.span, "end_time", None) is not None:
            event.span = None  # sent before (a publish retried by the caller): a new span, in the same trace
        if event.span is None:
            if event.traceparent is None and body is not None and b'"traceparent"' in body:
                _read_context(event, body)  # stamped when it was encoded (the outbox): join that trace
            if event.traceparent is None:  # a new publish: its span's context goes on the wire
                self.publishing(event)
                if body is not None:  # encoded before (eda publish validates everything first)
                    body = _with_trace_context(body, event)
            else:  # the event carries a context already (stamped): the publish span joins it
                event.span = self.tracer.start_span(f"publish {event.type}", context=self._parent(event),
                                                    kind=self._kind.PRODUCER,
                                                    attributes=self._attributes(event, "publish", "send"))
        event.span.set_attribute("messaging.destination.name", exchange)
        return body, self._ending(event.span, callback)

    # The middleware

    def handle(self, event, ctx, call_next):
        with self.handling(ctx.worker, event, ctx.worker.handlers[event.type]):
            result = call_next(event, ctx)
            self._reactions(ctx)
        return result

    async def handle_async(self, event, ctx, call_next):
        with self.handling(ctx.worker, event, ctx.worker.handlers[event.type]):
            result = await call_next(event, ctx)
            self._reactions(ctx)
        return result

    def _reactions(self, ctx) -> None:
        """Start the publish span of each reaction, a child of the handler's span (current here), and
        write its context into the reaction's body; the spans end when the broker confirms them. A
        scheduled reaction gets a ``create`` span instead, whose context the relay's publish joins; a
        request's reply a publish span as a reaction does."""
        for i, (reaction, body) in enumerate(ctx.reactions):
            if reaction.span is None:
                self.publishing(reaction)
                ctx.reactions[i] = (reaction, _replace_trace_context(body, reaction))
        for i, (reaction, body, due) in enumerate(ctx.scheduled):
            self.create(reaction)
            ctx.scheduled[i] = (reaction, _replace_trace_context(body, reaction), due)
        if ctx.answer is not None and ctx.answer[0].span is None:  # a request's reply: published like a reaction
            answer, body = ctx.answer
            self.publishing(answer)
            ctx.answer = (answer, _replace_trace_context(body, answer))

    def publish(self, message, call_next):
        message.body, ended = self.sending(message.event, message.body, message.exchange, None)
        message.on_confirm(ended)
        return call_next(message)

    def on_settled(self, delivery, outcome: str) -> None:
        self.settled(delivery, outcome)

    # Handling

    @contextmanager
    def handling(self, worker, event, method: str):
        """The handling span of ``event`` (ended when it is settled, see ``settled``), and inside it
        the handler's own span, current while the handler runs; an exception is recorded on both."""
        span = self.tracer.start_span(f"process {event.type}", context=self._parent(event),
                                      kind=self._kind.CONSUMER, attributes={
                                          **self._attributes(event, "process", "process"), "eda.worker": worker.name})
        event.span = span
        inner = self.tracer.start_span(f"{worker.name}.{method}", context=self._trace.set_span_in_context(span))
        token = self._context.attach(self._trace.set_span_in_context(inner))
        try:
            yield inner
        except BaseException as exc:
            description = f"{type(exc).__name__}: {exc}"
            for s in (inner, span):
                s.record_exception(exc)
                s.set_status(self._error(description))
            raise
        finally:
            self._context.detach(token)
            inner.end()

    def settled(self, delivery, outcome: str) -> None:
        """End the handling span of a settled delivery with its outcome: ok, retried, dead-lettered,
        rejected or given-back. A message that was no event gets a span of its own (rejected)."""
        from eda.runtime import failures

        event, message = delivery.event, delivery.message
        span = event.span if event is not None else None
        if span is None:
            if event is not None:
                return  # a copy acked from the processed-event record: never handled here
            span = self.tracer.start_span(f"process {message.delivery_info.get('routing_key')}",
                                          kind=self._kind.CONSUMER, attributes={
                                              "messaging.system": SYSTEM, "messaging.operation.name": "process",
                                              "messaging.operation.type": "process",
                                              "eda.worker": delivery.consumer.worker.name})
            span.set_status(self._error("the message is not a valid event"))
        info = message.delivery_info
        exchange, routing_key = failures.origin(message.headers, info)
        span.set_attributes({"eda.outcome": OUTCOMES.get(outcome, outcome), "messaging.destination.name": exchange,
                             "messaging.rabbitmq.destination.routing_key": routing_key,
                             "messaging.destination.subscription.name": delivery.consumer.queue_name,
                             "eda.attempt": failures.retry_count(message.headers) + 1})
        if outcome not in ("ok", "requeued") and event is not None and not span_has_error(span):
            span.set_status(self._error(outcome))
        span.end()

    def replaying(self, message, queue: str, callback):
        """A span for a dead event replayed to ``queue`` (``eda dlq replay``), in the event's own trace."""
        props = message.properties
        carrier = Event(type=str(props.get("type")), data={}, source=str(props.get("app_id")),
                        id=str(props.get("message_id")), correlation_id=props.get("correlation_id"))
        _read_context(carrier, message.body)
        span = self.tracer.start_span(f"replay {carrier.type}", context=self._parent(carrier),
                                      kind=self._kind.PRODUCER, attributes={
                                          **self._attributes(carrier, "publish", "send"),
                                          "messaging.destination.name": "", "eda.replayed_to": queue})
        return self._ending(span, callback)

    def _ending(self, span, callback):
        """A publish callback that ends ``span`` (with the error, if any) before calling ``callback``."""
        def settled(error):
            if error is not None:
                span.set_status(self._error(f"{type(error).__name__}: {error}"))
            span.end()
            if callback is not None:
                callback(error)

        return settled

    # Logs

    def current_ids(self) -> dict:
        """The current span's ids as log fields (empty outside a span): for eda.logs."""
        return span_ids(self._trace.get_current_span())

    def flush(self, timeout_ms: int = 5000) -> None:
        flush = getattr(self.provider, "force_flush", None)
        if flush is not None:
            flush(timeout_ms)


def span_has_error(span) -> bool:
    status = getattr(span, "status", None)
    return status is not None and getattr(status.status_code, "name", "") == "ERROR"
