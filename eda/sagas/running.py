"""Handling one event of a saga, exactly once per event even across crashes and instances.

In one transaction of the worker's store: look up whether the event was applied already and load the
event's instance (one query); run the handler on the instance; save the state with optimistic
concurrency (``UPDATE ... WHERE version = ?``, or an ``INSERT`` for a start) together with the record
"event E applied to key K" and the reactions the handler made. Nothing else runs the handler: the
runtime then publishes the reactions (confirmed) and acks, as for any worker. A redelivered event found
applied is not run again: its recorded reactions go out again under the same ids (scheduled ones are
written to the outbox again, where their id makes them one row). A save that finds the instance changed
meanwhile (another instance of the worker handled an event of it at the same moment) rolls back and
runs the handler again on the new state, a few times, then fails the event as a transient failure.
"""

import json
import logging
import threading

from marshmallow import EXCLUDE, ValidationError, fields as mfields, missing

from eda.contracts.envelope import Event, decode
from eda.contracts.messages import describe, unwritable
from eda.errors import SagaConflict, SagaStateError
from eda.publishing.partitioning import key_value
from eda.sagas.table import Table, schema
from eda.store import open_store

CONFLICT_ATTEMPTS = 5  # handler runs per event before a conflict is a transient failure
PRUNE_EVERY = 600.0  # seconds between two deletions of what is past the retention


class _Conflict(Exception):
    """Another handling changed the instance (or applied the event) first: roll back and run again."""


class Running:
    """One saga worker's instances: its store (opened here), state schema and record of applied events."""

    def __init__(self, saga, settings, log: logging.Logger, retention: float):
        self.name = saga.name
        self.cls = saga
        self.correlation = saga.correlation
        self.fields = saga._eda_state_fields
        self.schema = saga._eda_state_schema
        # marshmallow writes any value of a String field as its str() ("5", "{'a': 1}"), which loads
        # back: these fields are checked to hold a string, as an Integer field is checked by the load
        self.text_fields = [name for name, field in self.fields.items() if type(field) is mfields.String]
        self.log = log
        self.retention = retention
        self.store = open_store(settings, saga.name, schema(bool(settings.database_url)))
        self.table = Table(saga.name)
        self._stop = threading.Event()
        self._pruner = threading.Thread(target=self._prune_now_and_then, name=f"eda-{saga.name}-prune", daemon=True)
        self._pruner.start()

    def close(self) -> None:
        self._stop.set()
        self._pruner.join(timeout=10)
        self.store.close()

    # One event

    def handle(self, worker, function, starts: bool, event: Event, ctx) -> None:
        """Apply ``event`` to its instance through the handler ``function`` (see the module docstring)."""
        key = self.key_of(event)
        for _ in range(CONFLICT_ATTEMPTS):
            ctx.reactions, ctx.scheduled, ctx.answer = [], [], None  # this attempt's alone
            try:
                with self.store.transaction() as tx:
                    recorded, before = self.table.load(tx, key, event.id)
                    if recorded is not None:
                        self._replay(ctx, recorded, event, key)
                        return
                    if before is None and not starts or before is not None and before.completed:
                        self._ignore(event, key, before)
                        return
                    instance = self._instance(worker, key, before, ctx, event)
                    function(instance, event, ctx)
                    state = self._state_of(instance, key, event)
                    if not self.table.save(tx, key, state, before, instance.completed, event, _recorded(ctx)):
                        raise _Conflict
            except _Conflict:
                continue
            self._changed(before, instance, event, key)
            return
        raise SagaConflict(f"saga {self.name} {key}: the instance kept changing under {event.type} {event.id} "
                           f"({CONFLICT_ATTEMPTS} attempts); retried later")

    def key_of(self, event: Event) -> str:
        """The instance an event belongs to: its correlation field's value, as text."""
        value = key_value(event.data, self.correlation)
        if value is None:
            raise SagaStateError(f"{event.type} {event.id} has no {self.correlation}: saga {self.name} cannot tell "
                                 f"which instance it belongs to")
        return value if isinstance(value, str) else json.dumps(value, default=str, separators=(",", ":"))

    def _instance(self, worker, key: str, before, ctx, event):
        """The saga instance a handler gets as ``self``: the worker's attributes (settings, what setup
        opened), the state's fields as loaded (or their defaults), its key and the event's context."""
        instance = object.__new__(self.cls)
        values = instance.__dict__
        values.update(worker.__dict__)
        state = self._loaded(before, key, event) if before is not None else {}
        for name, field in self.fields.items():
            default = field.load_default
            values[name] = state[name] if name in state else None if default is missing else \
                default() if callable(default) else default
        values.update(_eda_key=key, _eda_ctx=ctx, _eda_completed=False)
        values["_eda_known"] = frozenset(values)  # what the handler set beyond these is not kept: refused
        return instance

    def _loaded(self, row, key: str, event) -> dict:
        try:
            return self.schema.load(row.state, unknown=EXCLUDE)
        except ValidationError as exc:
            raise SagaStateError(f"saga {self.name} {key}: its stored state no longer loads with the saga's fields "
                                 f"({describe(exc.messages)}); {event.type} {event.id} cannot be applied") from None

    def _state_of(self, instance, key: str, event) -> str:
        """The instance's fields as JSON, checked as the next event will load them (None: not stored). An
        attribute the handler set that is no field would be lost without a word (a typo: self.stauts)."""
        known = instance.__dict__.get("_eda_known", ())
        undeclared = sorted(n for n in instance.__dict__ if n not in known and not n.startswith("_"))
        if undeclared:
            raise SagaStateError(f"saga {self.name} {key}: {event.type} set {', '.join(map(repr, undeclared))}, "
                                 f"not a field of its state, which would not be kept (declare it as a field)")
        present = {name: instance.__dict__.get(name) for name in self.fields}
        # None is not stored (the next event reads the field's load_default), except in a field that
        # allows it: a None set there is the state, and must not turn back into the default.
        present = {name: value for name, value in present.items()
                   if value is not None or self.fields[name].allow_none}
        try:
            texts = {name: ["Not a valid string."] for name in self.text_fields
                     if present.get(name) is not None and not isinstance(present[name], str)}
            if texts:
                raise ValidationError(texts)
            dumped = self.schema.dump(present)
            self.schema.load(dumped)
        except (ValidationError, ValueError, TypeError) as exc:
            reason = describe(exc.messages) if isinstance(exc, ValidationError) else unwritable(self.schema, present)
            raise SagaStateError(f"saga {self.name} {key}: {event.type} left its state invalid: {reason}") from None
        return json.dumps(dumped, default=str, separators=(",", ":"), sort_keys=True)

    def _replay(self, ctx, recorded: list, event: Event, key: str) -> None:
        for due, body in recorded:
            reaction = _event_of(body)
            if due is None:
                ctx.reactions.append((reaction, body.encode()))
            else:
                ctx.scheduled.append((reaction, body.encode(), due))
        self.log.info("already applied: its recorded reactions go out again", extra=self._fields(event, key))

    def _ignore(self, event: Event, key: str, before) -> None:
        why = "completed" if before is not None else "no instance (and the event starts none)"
        self.log.info(f"ignored: {why}", extra=self._fields(event, key))

    def _changed(self, before, instance, event: Event, key: str) -> None:
        if before is None or instance.completed:
            what = "started and completed" if before is None and instance.completed else \
                "started" if before is None else "completed"
            self.log.info(f"instance {what}", extra=self._fields(event, key, version=1 if before is None else
                                                                 before.version + 1))

    def _fields(self, event: Event, key: str, **extra) -> dict:
        return {"worker": self.name, "saga_key": key, "event_id": event.id, "event_type": event.type, **extra}

    # Housekeeping

    def prune(self) -> tuple[int, int]:
        """Delete instances completed past the retention and the records of the events applied to them (a live
        instance keeps its records); (instances, records)."""
        with self.store.transaction() as tx:
            deleted = self.table.prune(tx, self.retention)
        if any(deleted):
            self.log.info("deleted %d completed instances and %d applied-event records past the retention",
                          *deleted, extra={"worker": self.name})
        return deleted

    def _prune_now_and_then(self) -> None:
        while not self._stop.wait(PRUNE_EVERY):
            try:
                self.prune()
            except Exception as exc:  # noqa: BLE001 - never the events' business; tried again later
                self.log.warning("deleting saga records past the retention failed: %s", exc,
                                 extra={"worker": self.name})


def _recorded(ctx) -> list:
    """The reactions of a handling as the record keeps them: ``[due or None, body]``, in publish order."""
    return [[None, body.decode()] for _, body in ctx.reactions] + \
        [[due, body.decode()] for _, body, due in ctx.scheduled]


def _event_of(body: str) -> Event:
    """A recorded reaction as an Event (its body goes out as it is); one that no longer validates (its
    contract changed since) keeps the attributes publishing needs."""
    try:
        return decode(body.encode())
    except Exception:  # noqa: BLE001
        wire = json.loads(body)
        return Event(type=wire["type"], data={}, source=wire["source"], id=wire["id"], time=wire.get("time", ""),
                     correlation_id=wire.get("correlationid"), causation_id=wire.get("causationid"))
