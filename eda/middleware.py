"""Middleware: code wrapped around eda's handling and publishing, and told of each step of a worker's life.

    from eda import Middleware

    class TenantHeader(Middleware):
        def publish(self, message, call_next):
            message.headers["tenant"] = "acme"
            return call_next(message)

A middleware overrides what it needs; each default passes through, and a method left as it is is left
out of its chain. Lists are ordered, the first outermost: process-wide middleware (``Runner(...,
middleware=)``, ``EDA_MIDDLEWARE``, eda's own tracing, metrics and systemd notification) wraps a
worker's own (its class attribute ``middleware``). Chains are composed once, when a worker or producer
starts; with none the handler is called, and the event published, directly.
"""

import inspect
import logging

from eda.errors import DefinitionError, PublishError

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
        ``properties``), ``delivery.worker``, ``delivery.queue``; for a middleware that follows an event
        from ``handle`` to its end (tracing's span ends here)."""

    def on_outcome(self, worker: str, event_type: str | None, outcome: str, seconds: float | None) -> None:
        """An event was settled: ``ok`` (acked), ``retried``, ``dead-lettered``, ``rejected`` (contract
        failure, dead-lettered) or ``requeued`` (given back: circuit open); ``seconds`` its handler took."""

    def on_published(self, worker: str, event_type: str) -> None:
        """A reaction was confirmed by the broker."""


def overrides(middleware, method: str) -> bool:
    """Whether ``middleware`` does more in ``method`` than ``Middleware``'s default."""
    return getattr(type(middleware), method, None) is not getattr(Middleware, method)


def _name(middleware) -> str:
    kind = middleware if isinstance(middleware, type) else type(middleware)
    return f"{kind.__module__}.{kind.__qualname__}"


def checked(middleware, where: str) -> list:
    """``middleware`` as a list of Middleware instances, or a DefinitionError naming what is wrong."""
    if isinstance(middleware, Middleware) or isinstance(middleware, type) and issubclass(middleware, Middleware):
        kind = middleware if isinstance(middleware, type) else type(middleware)
        raise DefinitionError(f"{where}: middleware is a list or tuple of instances: ({kind.__name__}(...),) "
                              f"(mind the comma)")
    if isinstance(middleware, (str, bytes)) or not hasattr(middleware, "__iter__"):
        raise DefinitionError(f"{where}: middleware is a list of eda.Middleware instances, not {middleware!r}")
    found = list(middleware)
    for m in found:
        if isinstance(m, type) and issubclass(m, Middleware):
            raise DefinitionError(f"{where}: middleware {_name(m)} is a class: give an instance, {m.__name__}(...)")
        if not isinstance(m, Middleware):
            raise DefinitionError(f"{where}: {m!r} is not an eda.Middleware")
        for method, coroutine in (("handle", False), ("handle_async", True)):
            if overrides(m, method) and inspect.iscoroutinefunction(getattr(m, method)) != coroutine:
                raise DefinitionError(f"{where}: middleware {_name(m)}: {method} must be "
                                      f"{'an `async def`' if coroutine else 'a plain `def`'}")
    return found


def unique(middleware) -> list:
    """Each middleware once, in first-seen order (one listed process-wide and by a worker observes once)."""
    seen, found = set(), []
    for m in middleware:
        if id(m) not in seen:
            seen.add(id(m))
            found.append(m)
    return found


# Handling

def handling(worker, middleware, asynchronous: bool):
    """The chain around ``worker``'s handlers, composed now: a callable ``(event, ctx)`` (returning a
    coroutine for an async worker), or None where no middleware wraps handling (call the handler
    directly). A middleware wrapping only the other style of handler is a DefinitionError."""
    method = "handle_async" if asynchronous else "handle"
    other = "handle" if asynchronous else "handle_async"
    wrapping = []
    for m in middleware:
        if overrides(m, method):
            wrapping.append(getattr(m, method))
        elif overrides(m, other):
            style, needed = ("`async def`", "handle_async") if asynchronous else ("plain `def`", "handle")
            raise DefinitionError(f"middleware {_name(m)} cannot wrap worker {worker.name!r}, whose handlers are "
                                  f"{style}: it has {other} but no {needed}")
    if not wrapping:
        return None
    methods = {event_type: getattr(worker, attr) for event_type, attr in worker.handlers.items()}

    # The end of the chain: the handler, and what it returned taken as a request's reply (``ctx.answer``
    # once ``call_next`` returned), inside every middleware.
    def handler(event, ctx):
        ctx.returned(methods[event.type](event, ctx))

    async def handler_async(event, ctx):
        ctx.returned(await methods[event.type](event, ctx))

    chain = handler_async if asynchronous else handler
    for wrap in reversed(wrapping):
        chain = _link(wrap, chain)
    return chain


def _link(wrap, call_next):
    # Made once per middleware when the chain is composed: no closure per event.
    return lambda event, ctx: wrap(event, ctx, call_next)


class Chains:
    """A worker's middleware, composed when it starts: process-wide first, then the worker's own."""

    __slots__ = ("middleware", "handle", "publish", "on_settled", "on_outcome", "on_published")

    def __init__(self, worker, process_wide, asynchronous: bool):
        own = checked(getattr(worker, "middleware", ()), f"worker {worker.name!r}")
        self.middleware = [*process_wide, *own]
        self.handle = handling(worker, self.middleware, asynchronous)
        self.publish = publishing(self.middleware)
        observers = unique(self.middleware)
        self.on_settled = [m.on_settled for m in observers if overrides(m, "on_settled")]
        self.on_outcome = [m.on_outcome for m in observers if overrides(m, "on_outcome")]
        self.on_published = [m.on_published for m in observers if overrides(m, "on_published")]


# Publishing

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


def publishing(middleware):
    """The chain around a publish, composed now: a callable ``(message)``, or None where no middleware
    wraps publishing (publish directly)."""
    wrapping = [m.publish for m in middleware if overrides(m, "publish")]
    if not wrapping:
        return None
    chain = _send
    for wrap in reversed(wrapping):
        chain = _link_publish(wrap, chain)
    return chain


def _send(message) -> None:
    message._send(message)


def _link_publish(wrap, call_next):
    return lambda message: wrap(message, call_next)


def publish_through(chain, message: Outgoing) -> None:
    """Run ``message`` through a publish chain. A middleware that raised before the event was sent (or
    returned without sending it) settles it with that error; an error of the send itself propagates, as
    it does without middleware; one raised after the send is logged, since the broker's answer will
    settle the publish."""
    try:
        chain(message)
    except Exception as exc:
        if message.send_failed:
            raise
        if not message.sent:
            message.settle(exc)
            return
        log.exception("a publish middleware failed after %s was sent; its confirm settles it", message.event.type)
        return
    if not message.sent:
        message.settle(PublishError(f"{message.event.type} {message.event.id}: not sent: a publish middleware "
                                    f"returned without calling call_next"))


def from_settings(settings) -> list:
    """The process-wide middleware ``EDA_MIDDLEWARE`` names (see ``load``)."""
    text = getattr(settings, "middleware", None)
    return load(text) if text else []


def load(text: str) -> list:
    """Middleware from import paths, comma-separated: ``module:name`` (or ``module.name``), naming a
    Middleware instance, a Middleware class (made without arguments) or a list of instances. Modules
    are found as ``--app`` finds them (the current directory first)."""
    import importlib
    import os
    import sys

    from eda import app

    app.load()  # the app's modules first (their contracts, their middleware)
    if os.getcwd() not in sys.path:  # a project's modules are found without installing it, as --app's are
        sys.path.insert(0, os.getcwd())
    found = []
    where = "--middleware (EDA_MIDDLEWARE)"
    for path in (p.strip() for p in text.split(",")):
        if not path:
            continue
        module_name, _, attr = path.partition(":") if ":" in path else path.rpartition(".")
        if not module_name or not attr:
            raise DefinitionError(f"{where}: {path!r} is not module:name")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise DefinitionError(f"{where}: cannot import {module_name!r}: {exc}") from None
        try:
            value = getattr(module, attr)
        except AttributeError:
            raise DefinitionError(f"{where}: module {module_name!r} has no {attr!r}") from None
        if isinstance(value, type) and issubclass(value, Middleware):
            value = value()
        found.extend(checked(value if isinstance(value, (list, tuple)) else [value], f"{where}: {path}"))
    return found
