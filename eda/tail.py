"""Watching the bus: a temporary queue bound to the events exchange with a topic pattern."""

import json
import socket
import time
import uuid

from kombu import Consumer, Queue

from eda.topology import Topology


def describe(wire: dict) -> str:
    """One line for a person: time, type, id, correlation, data."""
    data = json.dumps(wire.get("data"), separators=(",", ":"), sort_keys=True)
    corr = wire.get("correlationid") or "-"
    return f"{wire.get('time', '-')} {wire.get('type', '?'):<20} id={wire.get('id')} correlation={corr} {data}"


class Tail:
    """Receives every event whose routing key matches ``pattern`` while it is open."""

    def __init__(self, connection, namespace: str, pattern: str = "#"):
        self.connection = connection
        self.channel = connection.channel()
        topology = Topology(namespace)
        topology.declare_exchanges(self.channel)
        # Exclusive and auto-deleted: the broker removes it even if this process dies; close() deletes it too.
        self.queue = Queue(f"{namespace}.tail.{uuid.uuid4().hex[:8]}", exchange=topology.events, routing_key=pattern,
                           exclusive=True, auto_delete=True, durable=False)
        self.queue(self.channel).declare()
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
        self._received.append(wire)

    def events(self, timeout: float | None = None, until=lambda: False):
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
