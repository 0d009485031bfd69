"""How a worker is declared: a ``Worker`` subclass with a name and one ``@handles`` method per type.

    class Shipping(Worker):
        name = "shipping"

        @handles("inventory.reserved")
        def ship(self, event, ctx):
            ctx.publish("order.shipped", {"order_id": event.data["order_id"], ...})

A handler gets the validated event and a context to publish reactions with (``eda.context.Context``). Reactions are sent,
with publisher confirms, only after the handler returned, and the handled event is acked after that.
Event names resolve when the worker starts, so a worker module may be imported before its contracts.
"""

import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from eda.context import Context
from eda.contracts import registry, versions
from eda.contracts.envelope import Event
from eda.errors import DefinitionError, UnknownEvent
from eda.logs import handling
from eda.settings import Settings
from eda.worker_settings import declared

# What the runtime reads or calls on a worker: a handler method may have any other name.
RESERVED = frozenset({"name", "description", "handlers", "record_processed", "inline", "circuit_pause", "settings",
                      "source", "log", "setup", "teardown", "event_types", "ordered_by", "middleware"})


H = TypeVar("H", bound=Callable)


HANDLER_CODES: set = set()  # the code of every @handles function: a traceback frame of one is a handler's body


def _remember_code(function) -> None:
    """Remember a handler's code, so that eda.runtime.failures tells a TypeError raised by calling it
    from one raised inside it."""
    code = getattr(function, "__code__", None) or getattr(getattr(function, "__func__", None), "__code__", None)
    if code is not None:
        HANDLER_CODES.add(code)


def handles(event_type: registry.EventRef) -> Callable[[H], H]:
    """Mark a method as the handler of one event type (routing key, CLI name or contract class)."""

    def mark(method: H) -> H:
        if getattr(method, "eda_handles", None) is not None:
            raise DefinitionError(f"{getattr(method, '__qualname__', method)!r}: one @handles per handler, not "
                                  f"{_shown(method.eda_handles)} and {_shown(event_type)}; write a handler for each")
        method.eda_handles = event_type
        _remember_code(method)  # a TypeError from calling it, not from its body, is a programming error
        return method

    return mark


def _shown(ref) -> str:
    """An event reference as written: 'order.placed', or a contract class's name."""
    return repr(ref) if isinstance(ref, str) else getattr(ref, "__qualname__", repr(ref))


class _Handlers:
    """``Worker.handlers``: event type -> method name, resolved through the registry on first use."""

    def __get__(self, obj, cls) -> dict[str, str]:
        resolved = cls.__dict__.get("_eda_resolved")
        if resolved is None:
            resolved, spelt = {}, {}
            for name, attr in cls._eda_handler_names.items():
                try:
                    contract = registry.get(name)
                except UnknownEvent as exc:
                    raise UnknownEvent(f"worker {cls.name!r} handles an {exc} (is the module that registers it "
                                       f"imported? a package's eda.contracts entry point, or --app / EDA_APP)"
                                       ) from None
                versions.check(contract.type)  # every older version it may receive can be upcast
                if contract.reply is not None:
                    contract.reply_contract()  # a request's reply contract must be known when the worker starts
                if contract.type in resolved:  # two spellings of one type: order-placed and order.placed
                    raise DefinitionError(f"{_where(cls)}: two handlers of {contract.type!r}: "
                                          f"{resolved[contract.type]} ({_shown(spelt[contract.type])}) and {attr} "
                                          f"({_shown(name)}); one event type has one handler in a worker")
                resolved[contract.type], spelt[contract.type] = attr, name
            cls._eda_resolved = resolved
        return resolved


class Worker:
    """Base of every named worker. Subclasses set ``name`` and mark handlers with ``@handles``.

    A handler may have any name except those in ``RESERVED`` (an error when the class is created)."""

    name: str = ""
    description: str = ""
    handlers = _Handlers()
    _eda_handler_names: dict[str, str] = {}
    # True for a worker without idempotency of its own: the runtime records the ids of the events it
    # processed (under EDA_STATE_DIR) and acks a redelivered one without running the handler again.
    record_processed: bool = False
    # True when the handlers never wait on the network (computation and local state only): they run on
    # the I/O thread one at a time, without the two thread wake-ups per event a handler thread costs;
    # --concurrency does not apply. Handlers that call a remote service keep the default.
    inline: bool = False
    # Seconds the worker stops taking events after a handler met an open circuit breaker
    # (pybreaker.CircuitBreakerError): the event is given back, no attempt counted.
    circuit_pause: float = 30.0
    # The data field (snake_case; dotted for a nested one) the worker's events are ordered by: each
    # handled contract names it as its ``key``, and the events are spread over EDA_PARTITIONS partition
    # queues by it, each handled one at a time in order, a failing event retried in place (see README).
    # ``eda.FLOW`` orders by the flow instead: the events sharing a correlation id (an order's, say).
    ordered_by: str | None = None
    # Middleware around this worker's handling and its reactions' publishing (eda.Middleware instances,
    # the first outermost), inside the process-wide middleware (README, "Middleware").
    middleware: tuple = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        by_attr = {}  # a subclass's @handles on a method of a base's name replaces the base's
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                event_type = getattr(value, "eda_handles", None)
                if event_type:
                    if attr in RESERVED:
                        raise DefinitionError(f"{_where(cls)}: a handler cannot be named "
                                              f"{attr!r}, which eda reserves ({', '.join(sorted(RESERVED))})")
                    by_attr[attr] = event_type
        found = {}
        for attr, event_type in by_attr.items():
            if event_type in found:
                raise DefinitionError(f"{_where(cls)}: two handlers of {_shown(event_type)}: {found[event_type]} and "
                                      f"{attr}; one event type has one handler in a worker")
            found[event_type] = attr
        cls._eda_handler_names = found
        cls._eda_resolved = None
        cls._eda_async = _coroutine_handlers(cls, found)

    def __init__(self, settings: Settings):
        self.settings = settings
        self.source = f"eda/{self.name}"
        self.log = logging.getLogger(f"eda.worker.{self.name}")
        for setting in declared(type(self)):
            getattr(self, setting.name)  # a bad value fails now, when the worker is made, not later

    @classmethod
    def event_types(cls) -> list[str]:
        return sorted(cls.handlers)

    def setup(self) -> None:
        """Open what the handlers need (stores, gateway clients); runs once before consuming."""

    def teardown(self) -> None:
        """Close what ``setup`` opened; runs once after the last handler finished."""


def _where(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _coroutine_handlers(cls, found: dict[str, str]) -> bool:
    """True when the class's handlers are ``async def`` (run on an event loop), False when plain ``def``
    (run on a handler thread or inline); a class mixing both, or with an async setup or teardown beside
    plain handlers, is refused when it is defined."""
    kinds = {inspect.iscoroutinefunction(getattr(cls, attr)) for attr in found.values()}
    where = f"{cls.__module__}.{cls.__qualname__}"
    if len(kinds) > 1:
        raise DefinitionError(f"{where}: the handlers of one worker are all `async def` or all `def`, not both")
    asynchronous = kinds == {True}
    for hook in ("setup", "teardown"):
        if found and not asynchronous and inspect.iscoroutinefunction(getattr(cls, hook)):
            raise DefinitionError(f"{where}: an `async def {hook}` needs `async def` handlers (they share its "
                                  f"event loop)")
    return asynchronous


def is_async(worker) -> bool:
    """Whether a worker (class or instance) has coroutine handlers."""
    return getattr(worker, "_eda_async", False)


async def dispatch_async(worker: Worker, event: Event, chain=None) -> Context:
    """``dispatch`` for a worker whose handlers are coroutines: awaited on the worker's event loop (each
    event's task has its own copy of ``handling``)."""
    ctx = Context(event, worker.source, worker)
    token = handling.set(ctx)
    try:
        if chain is None:
            ctx.returned(await getattr(worker, worker.handlers[event.type])(event, ctx))
        else:  # the chain's end takes what the handler returned (a request's reply)
            await chain(event, ctx)
    finally:
        handling.reset(token)
    return ctx


def dispatch(worker: Worker, event: Event, chain=None) -> Context:
    """Run the worker's handler of the event's type, inside ``chain`` (its middleware, composed by
    ``eda.middleware.handling``; None: none wraps it); return the context holding its reactions.
    Meanwhile ``eda.logs.handling`` holds the context: the lines logged carry the event's fields."""
    ctx = Context(event, worker.source, worker)
    token = handling.set(ctx)
    try:
        if chain is None:
            ctx.returned(getattr(worker, worker.handlers[event.type])(event, ctx))
        else:  # the chain's end takes what the handler returned (a request's reply)
            chain(event, ctx)
    finally:
        handling.reset(token)
    return ctx
