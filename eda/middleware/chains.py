"""Chains composed once, when a worker or producer starts: the middleware around a worker's handlers
and around a publish, each a callable; None where no middleware wraps that step (eda.middleware)."""

import logging

from eda.errors import DefinitionError, PublishError
from eda.middleware.api import Outgoing, name_of, overrides
from eda.middleware.lists import checked, unique

log = logging.getLogger("eda.middleware")


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
            raise DefinitionError(f"middleware {name_of(m)} cannot wrap worker {worker.name!r}, whose handlers are "
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
