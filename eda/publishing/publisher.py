"""Publishing with publisher confirms, pipelined: many events in flight, each settled by the broker.

An event counts as published only once the broker acked it. A nack, or a ``basic.return`` of a
``mandatory`` event that no queue took, settles it with an error that names the event. Callbacks run
on the thread that drains the connection, which is the only thread that touches it.
"""

import socket
import time
from collections import deque

from amqp import spec
from amqp.basic_message import Message as AmqpMessage
from amqp.exceptions import RecoverableConnectionError
from kombu import Producer

from eda import tracing
from eda.contracts.envelope import CONTENT_TYPE, Event, encode
from eda.connection import is_amqp
from eda.errors import BrokerUnavailable, PublishError, Unroutable
from eda.publishing.partitioning import partition_headers

DEFAULT_WINDOW = 1000


def event_properties(event: Event) -> dict:
    """The AMQP properties the wire contract fixes for an event."""
    return {"content_encoding": "utf-8", **_amqp_properties(event)}


def _amqp_properties(event: Event) -> dict:
    # Without content_encoding: py-amqp would otherwise decode the body to str for every consumer.
    return {
        "content_type": CONTENT_TYPE,
        "delivery_mode": 2,
        "message_id": event.id,
        "type": event.type,
        "correlation_id": event.correlation_id,
        "timestamp": int(time.time()),
        "app_id": event.source,
    }


def _text(label) -> str:
    """What names a publish in an error: its label, or the type and id of the event it is."""
    return f"{label.type} {label.id}" if isinstance(label, Event) else label


class Publisher:
    """Confirmed publishing on a channel of its own; ``send`` never blocks for a confirm."""

    def __init__(self, connection, window: int = DEFAULT_WINDOW):
        self.connection = connection
        self.window = window
        self.channel = connection.channel()
        self._amqp = is_amqp(connection)
        self._pending = {}  # confirm sequence number -> (label, callback), in publish order
        self._returned = {}  # message_id -> deque of reasons, filled by basic.return before the ack
        self._seq = 0
        if self._amqp:
            self.channel.confirm_select()
            self.channel.events["basic_ack"].add(self._on_ack)
            self.channel.events["basic_nack"].add(self._on_nack)
            self.channel.events["basic_return"].add(self._on_return)
        else:
            self._producer = Producer(self.channel)

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def send(self, exchange: str, routing_key: str, body: bytes, properties: dict, *, headers=None,
             mandatory=False, label="event", callback=None) -> None:
        """Publish one message; ``callback(error_or_None)`` runs once the broker settled it."""
        if not self._amqp:  # in-memory transport: delivery is synchronous, nothing to confirm
            self._producer.publish(body, exchange=exchange, routing_key=routing_key, headers=headers or {},
                                   **properties)
            if callback:
                callback(None)
            return
        props = dict(properties)
        props.pop("content_encoding", None)
        self._publish(exchange, routing_key, body, props, headers, mandatory, label, callback,
                      properties.get("message_id"))

    def send_event(self, event: Event, exchange: str, *, body=None, mandatory=False, callback=None) -> None:
        """Publish an event with the routing key, properties and partition key header the wire contract fixes."""
        if tracing.active is not None:  # the publish span, ended by the broker's confirm; its context in the body
            body, callback = tracing.active.sending(event, body, exchange, callback)
        body = encode(event) if body is None else body
        headers = partition_headers(event, body) or None
        if not self._amqp:
            self.send(exchange, event.type, body, event_properties(event), headers=headers, mandatory=mandatory,
                      callback=callback)
        else:  # the label is the event itself, made into text only if the broker refuses it
            self._publish(exchange, event.type, body, _amqp_properties(event), headers, mandatory, event, callback,
                          event.id)

    def _publish(self, exchange, routing_key, body, props, headers, mandatory, label, callback, message_id):
        message = AmqpMessage(body, application_headers=headers or {}, **props)
        # basic.publish sent as py-amqp's basic_publish does, without the non-blocking read it makes
        # first: that read dispatches deliveries from inside a publish (recursing when the publish
        # is itself made from a delivery's callback) and costs a syscall per event.
        if not self.channel.connection:
            raise RecoverableConnectionError("basic_publish: connection closed")
        self.channel.send_method(spec.Basic.Publish, "Bssbb", (0, exchange, routing_key, mandatory, False), message)
        # Counted only once sent: a message that cannot be encoded raises above before any byte is
        # written, and must not take a sequence number the broker never gives (confirms would shift).
        self._seq += 1
        self._pending[self._seq] = (label, callback, message_id)

    # Broker answers, called from drain_events on the I/O thread.

    def _settle(self, tag: int, multiple: bool, error_for) -> None:
        if multiple:
            tags = []
            for t in self._pending:  # in publish order: stop at the first tag past the ack
                if t > tag:
                    break
                tags.append(t)
        else:
            tags = [tag] if tag in self._pending else []
        for t in tags:
            label, callback, message_id = self._pending.pop(t)
            error = error_for(label)
            reasons = self._returned.get(message_id) if self._returned else None
            if reasons:
                error = Unroutable(f"{_text(label)}: {reasons.popleft()}")
                if not reasons:
                    del self._returned[message_id]
            if callback:
                callback(error)

    def _on_ack(self, tag, multiple):
        self._settle(tag, multiple, lambda label: None)

    def _on_nack(self, tag, multiple):
        self._settle(tag, multiple, lambda label: PublishError(f"{_text(label)}: the broker refused it (nack)"))

    def _on_return(self, exc, exchange, routing_key, message):
        reason = f"routed to no queue (exchange {exchange!r}, routing key {routing_key!r})"
        self._returned.setdefault(message.properties.get("message_id"), deque()).append(reason)

    def fail_all(self, error: Exception) -> None:
        """Settle everything in flight with ``error`` (the connection is gone)."""
        pending, self._pending = self._pending, {}
        self._returned.clear()
        for _, callback, _ in pending.values():
            if callback:
                callback(error)

    def wait(self, timeout: float = 30.0, until: int = 0) -> None:
        """Drain the connection until at most ``until`` publishes are unsettled (for callers that own
        the connection, like ``eda publish``); raise BrokerUnavailable past ``timeout``."""
        deadline = time.monotonic() + timeout
        while len(self._pending) > until:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerUnavailable(f"the broker confirmed nothing for {timeout:.0f}s")
            try:
                self.connection.drain_events(timeout=min(remaining, 1.0))
            except socket.timeout:
                continue
            except self.connection.connection_errors as exc:
                self.fail_all(BrokerUnavailable(f"lost the broker connection: {exc}"))
                raise BrokerUnavailable(f"lost the broker connection while waiting for confirms: {exc}") from None

    def publish_events(self, events, exchange: str, *, mandatory=True, timeout: float = 30.0,
                       on_confirmed=None) -> None:
        """Publish many events within the confirm window; raise the first error once all are settled.

        ``on_confirmed(event)`` runs for each event the broker confirmed, in publish order."""
        self.publish_encoded(((event, None) for event in events), exchange, mandatory=mandatory, timeout=timeout,
                             on_confirmed=on_confirmed)

    def publish_encoded(self, items, exchange: str, *, mandatory=True, timeout: float = 30.0,
                        on_confirmed=None) -> None:
        """``publish_events`` for ``(event, body)`` pairs whose bodies are encoded already (None: encode
        it here), as ``eda publish`` has them from validating its input."""
        errors = []

        def settled_for(event):
            def settled(error):
                if error:
                    errors.append(error)
                elif on_confirmed:
                    on_confirmed(event)
            return settled

        for event, body in items:
            self.send_event(event, exchange, body=body, mandatory=mandatory, callback=settled_for(event))
            if len(self._pending) >= self.window:
                self.wait(timeout, until=self.window // 2)
            if errors:
                break
        self.wait(timeout)
        if errors:
            raise errors[0]

    def close(self) -> None:
        try:
            self.channel.close()
        except Exception:  # closing a channel of a dead connection is not worth an error
            pass
