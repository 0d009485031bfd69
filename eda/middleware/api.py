"""What a middleware's author sees: ``Middleware``, the class to subclass, and ``Outgoing``, one publish
as its ``publish`` gets it; the outcome names ``on_outcome`` and ``on_settled`` are told (eda.middleware)."""

import logging

log = logging.getLogger("eda.middleware")

# The outcomes of a settled event, as ``on_outcome`` and ``on_settled`` name them.
OK, RETRIED, DEAD_LETTERED, REJECTED, REQUEUED = "ok", "retried", "dead-lettered", "rejected", "requeued"


class Middleware:
    """Wraps handling and publishing; subclass it and override what you need (each default passes through).

    ``handle`` wraps a plain-``def`` worker's handler, on its handler thread (on the I/O thread for an
    ``inline`` worker: it must not wait then); ``handle_async`` wraps an ``async def`` worker's, on its
    event loop. A middleware overriding only one of them on a worker of the other style is a start
    error. ``publish`` wraps every event eda publishes (reactions, ``Producer.publish``, ``eda publish``,
    the outbox relay), on the thread that publishes. The ``on_*`` methods observe, on the I/O thread,
    and must be quick."""

    def handle(self, event, ctx, call_next):
        """Around a plain-``def`` handler: ``call_next(event, ctx)`` runs the rest of the chain."""
        return call_next(event, ctx)

    async def handle_async(self, event, ctx, call_next):
        """Around an ``async def`` handler: ``await call_next(event, ctx)`` runs the rest of the chain."""
        return await call_next(event, ctx)

    def publish(self, message, call_next):
        """Around one publish (an ``Outgoing``): call ``call_next(message)`` once, on this thread, or raise
        to refuse it (the publish then fails with that error)."""
        return call_next(message)

    def on_ready(self, runner) -> None:
        """Connected and consuming (again, after a reconnect)."""

    def on_connection_lost(self, runner, reason: str) -> None:
        """The broker connection is gone; the runner is reconnecting."""

    def on_tick(self, runner) -> None:
        """The I/O loop is alive: called at least once a second."""

    def on_stopping(self, runner) -> None:
        """A graceful stop began."""

    def on_settled(self, delivery, outcome: str) -> None:
        """An event's delivery was settled (before ``on_outcome``): ``delivery.event`` (None for a message
        that was no valid event), ``delivery.message`` (the broker's: ``headers``, ``delivery_info``,
        ``properties``), ``delivery.worker``, ``delivery.queue``, ``delivery.origin`` (the exchange and
        routing key it was first published with) and ``delivery.attempt`` (1 for the first); for a
        middleware that follows an event from ``handle`` to its end (tracing's span ends here)."""

    def on_outcome(self, worker: str, event_type: str | None, outcome: str, seconds: float | None) -> None:
        """An event was settled: ``ok`` (acked), ``retried``, ``dead-lettered``, ``rejected`` (contract
        failure, dead-lettered) or ``requeued`` (given back: circuit open); ``seconds`` its handler took."""

    def on_published(self, worker: str, event_type: str) -> None:
        """A reaction was confirmed by the broker."""


def overrides(middleware, method: str) -> bool:
    """Whether ``middleware`` does more in ``method`` than ``Middleware``'s default."""
    return getattr(type(middleware), method, None) is not getattr(Middleware, method)


def name_of(middleware) -> str:
    """A middleware's class (or the class itself) as ``module.QualName``, for the messages that name it."""
    kind = middleware if isinstance(middleware, type) else type(middleware)
    return f"{kind.__module__}.{kind.__qualname__}"


class Outgoing:
    """One event on its way to the broker, as ``publish`` middleware sees it: change ``headers`` (a dict)
    or ``properties``, replace ``body`` (the encoded CloudEvent), and learn the broker's answer with
    ``on_confirm``. ``event`` is the Event sent (its ``data`` is empty for a body encoded elsewhere, as
    ``eda publish`` and the outbox relay send them)."""

    __slots__ = ("event", "exchange", "routing_key", "body", "headers", "properties", "mandatory", "sent",
                 "send_failed", "_callbacks", "_done", "_result", "_send")

    def __init__(self, event, exchange: str, routing_key: str, body: bytes, headers: dict, properties: dict, *,
                 mandatory: bool = False, callback=None, send=None):
        self.event, self.exchange, self.routing_key = event, exchange, routing_key
        self.body, self.headers, self.properties, self.mandatory = body, headers, properties, mandatory
        self.sent = self.send_failed = False
        self._callbacks = []
        self._done = callback
        self._result = None  # (error,) once the broker settled it
        self._send = send

    def on_confirm(self, callback) -> None:
        """Call ``callback(error)`` once the broker settled the publish: None when it took the event,
        else the error (a nack, unroutable, the connection lost). It runs on the thread that reads the
        broker's answers (a worker's I/O thread), before the publisher goes on, and must be quick."""
        if self._result is not None:
            callback(self._result[0])
        else:
            self._callbacks.append(callback)

    def settle(self, error) -> None:
        """The broker's answer (or the error that kept the event from it): the callbacks, then the caller's."""
        if self._result is not None:
            return
        self._result = (error,)
        for callback in self._callbacks:
            try:
                callback(error)
            except Exception:  # noqa: BLE001 - one middleware's callback must not keep the publish unsettled
                log.exception("a publish middleware's on_confirm callback failed")
        if self._done is not None:
            self._done(error)

    def __repr__(self) -> str:
        return f"<Outgoing {self.event.type} {self.event.id} to {self.exchange!r}>"
