"""``Tracing``, the middleware tracing is once on: a span per handling and per publish, their context
written into what is published (see eda.tracing for when it is on, and the conventions its spans follow)."""

import os
from contextlib import contextmanager

from eda.contracts.envelope import Event
from eda.errors import ConfigError
from eda.middleware import Middleware
from eda.tracing.export import INSTALL, sdk_provider
from eda.tracing.wire import read_context, replace_trace_context, with_trace_context

OUTCOMES = {"requeued": "given-back"}  # the runtime's outcome names, as a span says them
SYSTEM = "rabbitmq"


def span_ids(span) -> dict:
    """``trace_id`` and ``span_id`` of a span as log fields (hex, as trace backends show them)."""
    ctx = span.get_span_context()
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")} if ctx.is_valid else {}


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

        self._trace, self._context, self._kind = trace, context, SpanKind
        self._error = lambda description: Status(StatusCode.ERROR, description[:1000])
        self._propagator = TraceContextTextMapPropagator()  # the wire contract is W3C, whatever OTEL_PROPAGATORS says
        provider = trace.get_tracer_provider()
        if isinstance(provider, trace.ProxyTracerProvider):  # none set by the application: eda sets the SDK's
            provider = sdk_provider(service, environ)
            trace.set_tracer_provider(provider)
        self.provider = provider
        self.tracer = provider.get_tracer("eda", _version())

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
                read_context(event, body)  # stamped when it was encoded (the outbox): join that trace
            if event.traceparent is None:  # a new publish: its span's context goes on the wire
                self.publishing(event)
                if body is not None:  # encoded before (eda publish validates everything first)
                    body = with_trace_context(body, event)
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
                ctx.reactions[i] = (reaction, replace_trace_context(body, reaction))
        for i, (reaction, body, due) in enumerate(ctx.scheduled):
            self.create(reaction)
            ctx.scheduled[i] = (reaction, replace_trace_context(body, reaction), due)
        if ctx.answer is not None and ctx.answer[0].span is None:  # a request's reply: published like a reaction
            answer, body = ctx.answer
            self.publishing(answer)
            ctx.answer = (answer, replace_trace_context(body, answer))

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
        event, message = delivery.event, delivery.message
        span = event.span if event is not None else None
        if span is None:
            if event is not None:
                return  # a copy acked from the processed-event record: never handled here
            span = self.tracer.start_span(f"process {message.delivery_info.get('routing_key')}",
                                          kind=self._kind.CONSUMER, attributes={
                                              "messaging.system": SYSTEM, "messaging.operation.name": "process",
                                              "messaging.operation.type": "process",
                                              "eda.worker": delivery.worker.name})
            span.set_status(self._error("the message is not a valid event"))
        exchange, routing_key = delivery.origin
        span.set_attributes({"eda.outcome": OUTCOMES.get(outcome, outcome), "messaging.destination.name": exchange,
                             "messaging.rabbitmq.destination.routing_key": routing_key,
                             "messaging.destination.subscription.name": delivery.queue,
                             "eda.attempt": delivery.attempt})
        if outcome not in ("ok", "requeued") and event is not None and not span_has_error(span):
            span.set_status(self._error(outcome))
        span.end()

    def replaying(self, message, queue: str, callback):
        """A span for a dead event replayed to ``queue`` (``eda dlq replay``), in the event's own trace."""
        props = message.properties
        carrier = Event(type=str(props.get("type")), data={}, source=str(props.get("app_id")),
                        id=str(props.get("message_id")), correlation_id=props.get("correlation_id"))
        read_context(carrier, message.body)
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


def _version() -> str:
    """eda's installed version, the tracer's (what eda/__init__.py's __version__ says too)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("eda")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def span_has_error(span) -> bool:
    status = getattr(span, "status", None)
    return status is not None and getattr(status.status_code, "name", "") == "ERROR"
