"""Watching the bus: a temporary queue bound to the events exchange with a topic pattern, and for
``eda tail --correlation-id`` one flow's events as a tree by causation, dead letters included.

``eda.watch(settings)`` is the public way in (``eda tail`` for people, this for programs)::

    with watch(settings, "order.*") as tail:
        for event in tail.events(timeout=10):
            print(tail.describe(event))
"""

import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from kombu import Consumer, Queue

from eda import names
from eda.connection import open_connection
from eda.runtime import failures
from eda.settings import Settings
from eda.topology import Topology

DEAD_LETTER = "eda-dead-letter"  # added to a dead-lettered copy's CloudEvent: who dead-lettered it and why


def describe(wire: dict) -> str:
    """One line for a person: time, type, id, correlation, data."""
    data = json.dumps(wire.get("data"), separators=(",", ":"), sort_keys=True)
    corr = wire.get("correlationid") or "-"
    return f"{wire.get('time', '-')} {wire.get('type', '?'):<20} id={wire.get('id')} correlation={corr} {data}"


class Tail:
    """Receives every event whose routing key matches ``pattern`` while it is open."""

    describe = staticmethod(describe)

    def __init__(self, connection, namespace: str, pattern: str = "#", dead_letters_of=()):
        self.connection = connection
        self.channel = connection.channel()
        topology = Topology(namespace)
        topology.declare_exchanges(self.channel)
        self.dlx = topology.dlx.name
        # Exclusive and auto-deleted: the broker removes it even if this process dies; close() deletes it too.
        self.queue = Queue(f"{namespace}.tail.{uuid.uuid4().hex[:8]}", exchange=topology.events, routing_key=pattern,
                           exclusive=True, auto_delete=True, durable=False)
        self.queue(self.channel).declare()
        for worker in dead_letters_of:  # copies of what these workers dead-letter, with their reasons
            self.channel.queue_bind(self.queue.name, exchange=self.dlx, routing_key=names.work_queue(namespace, worker))
        self._received = []
        self.consumer = Consumer(self.channel, queues=[self.queue], on_message=self._on_message, no_ack=True)
        self.consumer.consume()

    def _on_message(self, message) -> None:
        try:
            wire = json.loads(message.body)
            if not isinstance(wire, dict):
                raise ValueError
        except ValueError:
            wire = {"type": message.delivery_info.get("routing_key"), "data": repr(message.body[:200]),
                    "id": message.properties.get("message_id")}
        if message.delivery_info.get("exchange") == self.dlx:
            headers = message.headers or {}
            wire = {**wire, DEAD_LETTER: {"worker": headers.get("eda-worker"),
                                          "reason": ": ".join(str(headers[k]) for k in ("eda-exception-type",
                                                              "eda-exception-message") if headers.get(k)),
                                          "retries": failures.retry_count(headers)}}
        self._received.append(wire)

    def events(self, timeout: float | None = None, until: Callable[[], bool] = lambda: False) -> Iterator[dict]:
        """Yield CloudEvents (as dicts) as they arrive, until ``timeout`` seconds pass or ``until()``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not until():
            while self._received:
                yield self._received.pop(0)
            if deadline is not None and time.monotonic() >= deadline:
                return
            try:
                self.connection.drain_events(timeout=0.2)
            except socket.timeout:
                self.connection.heartbeat_check()

    def close(self) -> None:
        try:
            self.consumer.cancel()  # before the delete, or the broker cancels it under a closing channel
            self.queue(self.channel).delete()
            self.channel.close()
        except Exception:  # the broker deletes the exclusive queue with the connection anyway
            pass


@contextmanager
def watch(settings: Settings, pattern: str = "#", *, connect_timeout: float = 5.0) -> Iterator[Tail]:
    """A live view of the namespace's events (routing keys matching ``pattern``, a topic pattern) from
    the moment this returns until the block ends: ``tail.events(timeout=None, until=...)`` yields each
    as a CloudEvent dict, ``tail.describe(event)`` makes it one line for a person. Its queue is the
    watcher's own (exclusive, deleted at the end), so watching takes nothing from any worker. Raises
    ``BrokerUnavailable`` when no broker answers within ``connect_timeout`` seconds."""
    connection = open_connection(settings, timeout=connect_timeout)
    try:
        tail = Tail(connection, settings.namespace, pattern)
        try:
            yield tail
        finally:
            tail.close()
    finally:
        connection.release()


def _worker(source) -> str:
    """The worker an eda source names (``eda/payment``), or the source itself (``shop/web``)."""
    text = str(source or "?")
    return text[4:] if text.startswith("eda/") else text


class CausationTree:
    """One flow's events (one correlation id) as lines of a tree by causation id, printed as they
    arrive: a reaction under the event that caused it, each with its worker, time and outcome. An
    event's outcome shows as what came of it: its reactions below it (handled), or a dead letter."""

    def __init__(self, correlation_id: str):
        self.correlation_id = correlation_id
        self.depth = {}  # event id -> depth in the tree

    def lines(self, wire: dict) -> list[str]:
        """The lines to print for an event seen on the bus; none for another flow's event."""
        if wire.get("correlationid", wire.get("id")) != self.correlation_id:
            return []
        event_id, dead = wire.get("id"), wire.get(DEAD_LETTER)
        if dead is not None:
            depth = self.depth.get(event_id, 0) + 1
            retries = f" after {dead['retries']} retries" if dead["retries"] else ""
            return [f"{'   ' * (depth - 1)}└─ ✗ dead-lettered by {dead['worker'] or '?'}{retries}: "
                    f"{dead['reason'] or 'no reason given'}"]
        cause = wire.get("causationid")
        depth = self.depth[cause] + 1 if cause in self.depth else 0
        self.depth.setdefault(event_id, depth)
        branch = f"{'   ' * (depth - 1)}└─ " if depth else ""
        by = "by" if cause else "from"
        return [f"{branch}{wire.get('time', '-')} {wire.get('type', '?')} {by} {_worker(wire.get('source'))} "
                f"id={event_id}"]
