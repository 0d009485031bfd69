"""Publishing with publisher confirms, pipelined: many events in flight, each settled by the broker.

An event counts as published only once the broker acked it. A nack, or a ``basic.return`` of a
``mandatory`` event that no queue took, settles it with an error that names the event (the
bookkeeping is ``eda.publishing.confirms``). Callbacks run on the thread that drains the connection,
which is the only thread that touches it. ``publish_all`` is the one confirm-window loop: ``eda
publish`` and the Producer API, ``eda dlq replay`` and the outbox relay all publish through it.
"""

import socket
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from amqp import spec
from amqp.basic_message import Message as AmqpMessage
from amqp.exceptions import RecoverableConnectionError

from eda.contracts.envelope import Event, amqp_properties, encode
from eda.errors import BrokerUnavailable, PublishError
from eda.publishing.confirms import Confirms, Settled
from eda.middleware import Outgoing, publish_through
from eda.publishing.partitioning import partition_headers

T = TypeVar("T")
DEFAULT_WINDOW = 1000


class Publisher:
    """Confirmed publishing on a channel of its own; ``send`` never blocks for a confirm."""

    def __init__(self, connection, window: int = DEFAULT_WINDOW):
        self.connection = connection
        self.window = window
        self.channel = connection.channel()
        self.confirms = Confirms()
        self.channel.confirm_select()
        # Broker answers, called from drain_events on the I/O thread.
        self.channel.events["basic_ack"].add(self.confirms.ack)
        self.channel.events["basic_nack"].add(self.confirms.nack)
        self.channel.events["basic_return"].add(self._on_return)

    @property
    def in_flight(self) -> int:
        """Publishes sent and not settled by the broker yet."""
        return len(self.confirms)

    def send(self, exchange: str, routing_key: str, body: bytes, properties: dict, *, headers=None,
             mandatory=False, label="event", callback=None, middleware=None, event=None) -> None:
        """Publish one message; ``callback(error_or_None)`` runs once the broker settled it. With
        ``middleware`` (a chain composed by ``eda.middleware.publishing``), the message is ``event``'s
        and goes through it first (a request, a reply)."""
        if middleware is not None:
            props = dict(properties)
            props.pop("content_encoding", None)
            publish_through(middleware, Outgoing(event, exchange, routing_key, body, dict(headers or {}), props,
                                                 mandatory=mandatory, callback=callback, send=self._send_outgoing))
            return
        props = dict(properties)
        props.pop("content_encoding", None)
        self._publish(exchange, routing_key, body, props, headers, mandatory, label, callback,
                      properties.get("message_id"))

    def send_event(self, event: Event, exchange: str, *, body=None, mandatory=False, callback=None,
                   middleware=None) -> None:
        """Publish an event with the routing key, properties and partition key header the wire contract
        fixes, through ``middleware`` (a chain composed by ``eda.middleware.publishing``; None: none)."""
        body = encode(event) if body is None else body
        headers = partition_headers(event, body) or None
        if middleware is not None:
            publish_through(middleware, Outgoing(event, exchange, event.type, body, headers or {},
                                                 amqp_properties(event), mandatory=mandatory, callback=callback,
                                                 send=self._send_outgoing))
        else:  # the label is the event itself, made into text only if the broker refuses it
            self._publish(exchange, event.type, body, amqp_properties(event), headers, mandatory, event, callback,
                          event.id)

    def _send_outgoing(self, message: Outgoing) -> None:
        """The end of a publish middleware chain: send the message as the middleware left it, once (a
        second ``call_next`` of one publish raises, after the first send: its confirm settles it)."""
        if message.sent:
            raise PublishError(f"{message.event.type} {message.event.id}: a publish middleware called call_next "
                               f"twice; the event was sent once")
        message.sent = True
        try:
            self._publish(message.exchange, message.routing_key, message.body, message.properties,
                          message.headers, message.mandatory, message.event, message.settle,
                          message.properties.get("message_id"))
        except BaseException:
            message.send_failed = True
            raise

    def _publish(self, exchange, routing_key, body, props, headers, mandatory, label, callback, message_id):
        message = AmqpMessage(body, application_headers=headers or {}, **props)
        # basic.publish sent as py-amqp's basic_publish does, without the non-blocking read it makes
        # first: that read dispatches deliveries from inside a publish (recursing when the publish
        # is itself made from a delivery's callback) and costs a syscall per event.
        if not self.channel.connection:
            raise RecoverableConnectionError("basic_publish: connection closed")
        self.channel.send_method(spec.Basic.Publish, "Bssbb", (0, exchange, routing_key, mandatory, False), message)
        # Counted only once sent: a message that cannot be encoded raises above before any byte is
        # written, and must not take a delivery tag the broker never gives (confirms would shift).
        self.confirms.sent(label, callback, message_id)

    def _on_return(self, exc, exchange, routing_key, message):
        self.confirms.returned(message.properties.get("message_id"), exchange, routing_key)

    def fail_all(self, error: Exception) -> None:
        """Settle everything in flight with ``error`` (the connection is gone)."""
        self.confirms.fail_all(error)

    def wait(self, timeout: float = 30.0, until: int = 0) -> None:
        """Drain the connection until at most ``until`` publishes are unsettled (for callers that own
        the connection, like ``eda publish``); raise BrokerUnavailable past ``timeout``."""
        deadline = time.monotonic() + timeout
        while len(self.confirms) > until:
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

    def publish_all(self, items: Iterable[T], send: Callable[[T, Settled], None], *,
                    on_confirmed: Callable[[T], None] | None = None, timeout: float = 30.0,
                    stop_at_error: bool = True) -> list[Exception]:
        """The confirm window: ``send(item, settled)`` publishes each item (through ``send`` or
        ``send_event``, passing ``settled`` as the callback), at most ``window`` unsettled at once:
        past it, wait until half of them are. ``on_confirmed(item)`` runs for each item the broker
        took, in publish order. Returns, once everything sent is settled, the errors of those it did
        not take (nacked, unroutable, or the connection's loss); with ``stop_at_error`` nothing more is
        sent after the first. Raises BrokerUnavailable when the broker stops answering."""
        errors: list[Exception] = []
        failed_callback: list[Exception] = []

        def settled_for(item):
            def settled(error):
                if error is not None:
                    errors.append(error)
                elif on_confirmed is not None and not failed_callback:
                    try:
                        on_confirmed(item)
                    except Exception as exc:  # noqa: BLE001 - the caller's, raised below as it is
                        failed_callback.append(exc)
            return settled

        for item in items:
            send(item, settled_for(item))
            if len(self.confirms) >= self.window:
                self.wait(timeout, until=self.window // 2)
            if (errors and stop_at_error) or failed_callback:
                break
        self.wait(timeout)
        if failed_callback:  # raised here, once what was sent is settled: not from within a read of the socket
            raise failed_callback[0]
        return errors

    def publish_events(self, events, exchange: str, *, mandatory=True, timeout: float = 30.0,
                       on_confirmed=None, middleware=None) -> None:
        """Publish many events within the confirm window; raise the first error once all are settled.

        ``on_confirmed(event)`` runs for each event the broker confirmed, in publish order."""
        self.publish_encoded(((event, None) for event in events), exchange, mandatory=mandatory, timeout=timeout,
                             on_confirmed=on_confirmed, middleware=middleware)

    def publish_encoded(self, items, exchange: str, *, mandatory=True, timeout: float = 30.0,
                        on_confirmed=None, middleware=None) -> None:
        """``publish_events`` for ``(event, body)`` pairs whose bodies are encoded already (None: encode
        it here), as ``eda publish`` has them from validating its input."""
        def send(item, settled):
            self.send_event(item[0], exchange, body=item[1], mandatory=mandatory, callback=settled,
                            middleware=middleware)

        errors = self.publish_all(items, send, timeout=timeout,
                                  on_confirmed=(lambda item: on_confirmed(item[0])) if on_confirmed else None)
        if errors:
            raise errors[0]

    def close(self) -> None:
        try:
            self.channel.close()
        except Exception:  # closing a channel of a dead connection is not worth an error
            pass
