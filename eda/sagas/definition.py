"""How a saga (a process manager) is declared: a ``Saga`` subclass with a name, a correlation field, its
state as marshmallow fields, and handlers marked ``@starts`` (may start an instance) or ``@handles``.

    class OrderSaga(Saga):
        name = "order-saga"
        correlation = "order_id"          # the data field every handled event carries
        status = fields.String()          # the state

        @starts("order.placed")
        def placed(self, event, ctx):
            self.status = "placed"
            self.schedule_timeout("order.payment-expired", {"order_id": self.key}, delay=timedelta(minutes=15))

        @handles("order.shipped")
        def shipped(self, event, ctx):
            self.complete()

A saga is a worker (``eda worker order-saga``). In a handler ``self`` is one instance: the state of the
event's correlation value (``self.key``), loaded from the worker's store, its fields as attributes, and
saved when the handler returns, in one transaction with the record that the event was applied
(eda.sagas.running). Everything else the worker has (settings, what ``setup`` opened) reads as usual.
"""

import functools
import inspect
from collections.abc import Callable
from typing import TypeVar

from marshmallow import Schema, fields as marshmallow_fields

from eda.contracts import registry
from eda.contracts.envelope import Event
from eda.errors import DefinitionError, ScheduleError
from eda.names import FLOW
from eda.worker import RESERVED, Worker, handles
from eda.worker_settings import Setting

H = TypeVar("H", bound=Callable)
WEEK = 7 * 24 * 3600.0
# Besides what the runtime reads on any worker: what a saga instance has, which no handler or state field
# may hide.
SAGA_RESERVED = RESERVED | {"correlation", "key", "complete", "completed", "schedule_timeout", "retention", "state",
                            "eda_check"}


def starts(event_type: registry.EventRef) -> Callable[[H], H]:
    """Mark a method as the handler of one event type that may start an instance: for a correlation value
    with no instance it makes one (its fields at their defaults); for one with a live instance it runs on
    that instance like ``@handles`` (an event that may arrive first, as NServiceBus's
    ``IAmStartedByMessages``). A saga may have several."""
    mark = handles(event_type)

    def start(method: H) -> H:
        method = mark(method)
        method.eda_saga_starts = True  # type: ignore[attr-defined]
        return method

    return start


def _handler(function, starts_instances: bool):
    """The method the runtime calls for a saga's handler: it runs ``function`` on the event's instance."""

    @functools.wraps(function)  # its signature and eda_handles mark, for eda's checks and the registry
    def handle(self, event, ctx):
        self._eda_saga.handle(self, function, starts_instances, event, ctx)

    handle.eda_saga_handler = function
    return handle


def _hook(function, opening: bool):
    """``setup`` (or ``teardown``) with the saga's store opened before it (closed after it)."""

    @functools.wraps(function)
    def hook(self):
        if opening:
            self._eda_open()
            function(self)
            return
        try:
            function(self)
        finally:
            self._eda_close()

    hook.eda_saga_hook = True
    return hook


class _Body(dict):
    """A saga class's body as it runs: a name given to a state field and to something else too (a handler
    of the same name) would keep only the last, and the field would be gone without a word."""

    def __setitem__(self, name, value):
        before = self.get(name, value)
        field = marshmallow_fields.Field
        if before is not value and (isinstance(before, field) or isinstance(value, field)):
            raise DefinitionError(f"{self.get('__qualname__', 'a saga')}: {name!r} names a state field and something "
                                  f"else too (a handler?): give them two names")
        super().__setitem__(name, value)


class _SagaType(type):
    @classmethod
    def __prepare__(mcs, name, bases, **kwargs):
        return _Body()


class Saga(Worker, metaclass=_SagaType):
    """Base of every saga: subclasses set ``name`` and ``correlation``, declare their state as marshmallow
    fields and mark handlers with ``@starts`` or ``@handles`` (plain ``def``: they run in the store's
    transaction, so they decide and publish; calls to remote services belong in other workers)."""

    # The data field (snake_case; a dotted path for a nested one) whose value names the instance an event
    # belongs to: every event the saga handles must have it.
    correlation: str = ""
    # Each flow's events in the order they were published, across instances (README, "Ordering per key").
    ordered_by = FLOW
    retention = Setting(WEEK, "Seconds a completed saga instance's final state, and the record of the events "
                              "applied, are kept (a late copy of an event is recognised meanwhile).",
                        low=1.0, high=100 * 365 * 24 * 3600.0)

    @property
    def inline(self) -> bool:
        """On the I/O thread with a local SQLite store (nothing to wait for); handler threads where the
        state lives in PostgreSQL, whose round trips would stall the broker connection."""
        return not self.settings.database_url

    def __init_subclass__(cls, **kwargs):
        where = f"{cls.__module__}.{cls.__qualname__}"
        for attr, value in list(vars(cls).items()):
            if getattr(value, "eda_handles", None) is not None and not hasattr(value, "eda_saga_handler"):
                if inspect.iscoroutinefunction(value):
                    raise DefinitionError(f"{where}.{attr}: a saga's handlers are plain `def`: they run in its "
                                          f"store's transaction (make the remote calls in another worker)")
                if attr in SAGA_RESERVED:
                    raise DefinitionError(f"{where}: a saga handler cannot be named {attr!r}, which eda reserves")
                setattr(cls, attr, _handler(value, getattr(value, "eda_saga_starts", False)))
        for hook in ("setup", "teardown"):
            value = vars(cls).get(hook)
            if value is not None and not getattr(value, "eda_saga_hook", False):
                if inspect.iscoroutinefunction(value):
                    raise DefinitionError(f"{where}: a saga's {hook} is plain `def`, as its handlers are")
                setattr(cls, hook, _hook(value, hook == "setup"))
        super().__init_subclass__(**kwargs)
        cls._eda_state_fields = state_fields(cls)
        cls._eda_state_schema = Schema.from_dict(dict(cls._eda_state_fields), name=f"{cls.__name__}State")()

    def __init__(self, settings):
        super().__init__(settings)
        self._eda_saga = None

    @classmethod
    def eda_check(cls) -> None:
        """Start checks (eda.worker_checks, before any process starts): see ``check``."""
        check(cls)

    def setup(self) -> None:
        """Open what the handlers need; the saga's store is open by then (a subclass's own ``setup`` runs
        after it is opened, its ``teardown`` before it is closed)."""

    def teardown(self) -> None:
        """Close what ``setup`` opened."""

    # The store: opened before the saga's setup, closed after its teardown (eda.sagas.running).

    def _eda_open(self) -> None:
        if self._eda_saga is None:
            from eda.sagas.running import Running

            self._eda_saga = Running(type(self), self.settings, self.log, self.retention)

    def _eda_close(self) -> None:
        running, self._eda_saga = self._eda_saga, None
        if running is not None:
            running.close()

    # What a handler does with its instance.

    @property
    def key(self) -> str:
        """The instance's correlation value (as text): the value of the ``correlation`` field of its events."""
        return self.__dict__.get("_eda_key")

    @property
    def completed(self) -> bool:
        """Whether a handler of this event completed the instance."""
        return self.__dict__.get("_eda_completed", False)

    def complete(self) -> None:
        """End the instance: saved as completed with this state; later events for it are ignored (logged),
        its final state kept for ``retention`` (``eda saga list --completed``), then deleted."""
        self.__dict__["_eda_completed"] = True

    def schedule_timeout(self, event_type: registry.EventRef, data: dict, *, delay=None, at=None) -> Event:
        """Publish ``event_type`` to this saga (and any consumer of it) when due, after ``delay`` (a
        timedelta or seconds) or ``at`` (an aware datetime): ``ctx.publish(..., delay=)``, written to the
        outbox with this event's other reactions and published by ``eda outbox relay`` when due. It
        arrives as an event like any other; one that comes when the instance moved on is for the handler
        to ignore (or the instance is completed, and it is ignored). Returns the scheduled event."""
        ctx = self.__dict__.get("_eda_ctx")
        if ctx is None:
            raise RuntimeError("schedule_timeout is called on a saga instance, in one of its handlers")
        if delay is None and at is None:
            raise ScheduleError("schedule_timeout needs delay= (a timedelta or seconds) or at= (an aware datetime)")
        return ctx.publish(event_type, data, delay=delay, at=at)


Saga.setup = _hook(Saga.setup, opening=True)
Saga.teardown = _hook(Saga.teardown, opening=False)


def state_fields(cls) -> dict:
    """The saga's state: its marshmallow fields (its bases' too), by attribute name, in declaration order."""
    found = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            if isinstance(value, marshmallow_fields.Field):
                if attr.startswith("_") or attr in SAGA_RESERVED:
                    raise DefinitionError(f"{cls.__module__}.{cls.__qualname__}: a state field cannot be named "
                                          f"{attr!r} ({'private' if attr.startswith('_') else 'eda reserves it'})")
                found[attr] = value
    return found


def check(cls) -> None:
    """Refuse at start (DefinitionError: one line, exit 2) a saga without a correlation field, or handling
    an event type whose contract lacks it."""
    where = f"saga {cls.name!r}"
    field = cls.correlation
    if not isinstance(field, str) or not field:
        raise DefinitionError(f"{where}: correlation must name the data field that says which instance an event "
                              f"belongs to (correlation = \"order_id\")")
    for event_type in cls.event_types():
        if not _has(registry.get(event_type).schema, field):
            raise DefinitionError(f"{where} is correlated by {field!r}, but the contract of {event_type} has no such "
                                  f"field: every event a saga handles must say which instance it belongs to")


def _has(schema, path: str) -> bool:
    for part in path.split("."):
        by_attribute = {(f.attribute or n): f for n, f in getattr(schema, "fields", {}).items()}
        if part not in by_attribute:
            return False
        schema = getattr(by_attribute[part], "schema", None)
    return True
