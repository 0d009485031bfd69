"""An AMQP 0-9-1 broker in memory: the part of RabbitMQ's model eda's runtime relies on, for tests.

Exchanges (the default exchange, direct, topic, fanout, headers, and the consistent-hash plugin's
``x-consistent-hash`` with ``hash-header`` or ``hash-property``), exchange-to-exchange bindings, queues
with their arguments (``x-message-ttl``, ``x-dead-letter-exchange`` and ``-routing-key``, single active
consumer, quorum queues' delivery count and limit), redeclares checked as RabbitMQ checks them
(PRECONDITION_FAILED), consumers with prefetch, acks (``multiple``), rejects and requeues with
``redelivered``, publisher confirms and ``basic.return`` of a mandatory message no queue took, and
direct reply-to (``amq.rabbitmq.reply-to``).

Time is a ``Clock`` that moves only when told (``Clock.advance_to``): a message expires once the
clock passes its TTL, at the head of its queue as in RabbitMQ. Clients speak to it through
``eda.memory.client`` (py-amqp's API); everything runs on the caller's thread, one call at a time.
"""

import itertools
from datetime import datetime, timezone

from amqp import spec
from amqp.exceptions import ChannelError, error_for_code

from eda.memory import wire
from eda.memory.declarations import Declarations, reply_text as _reply_text
from eda.memory.routing import Exchange, Queue, route

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"  # RabbitMQ's pseudo-queue of direct reply-to
START = 1000.0  # a clock's first reading, in seconds (any number works; not 0, so that it is never falsy)


class Clock:
    """Monotonic seconds that pass only when moved on: the broker's TTLs and a test's waits."""

    def __init__(self, now: float = START):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance_to(self, moment: float) -> None:
        self.now = max(self.now, moment)


class StoredMessage:
    """A message as a queue holds it: body, encoded properties, where it was published, its history."""

    __slots__ = ("body", "header", "exchange", "routing_key", "redelivered", "expires", "position", "returns",
                 "serial")

    def __init__(self, body: bytes, header: bytes, exchange: str, routing_key: str, serial: int):
        self.body, self.header = body, header
        self.exchange, self.routing_key = exchange, routing_key
        self.redelivered = False
        self.expires = None  # clock reading past which it is dead-lettered (or dropped)
        self.position = 0  # its place in its queue: a requeued message goes back there
        self.returns = 0  # deliveries that ended in a requeue (a quorum queue's x-delivery-count)
        self.serial = serial  # order of arrival across the broker

    def copy(self, serial: int) -> "StoredMessage":
        return StoredMessage(self.body, self.header, self.exchange, self.routing_key, serial)

    @property
    def properties(self) -> dict:
        """The decoded properties (``application_headers`` holds the headers); {} where they cannot be decoded."""
        return wire.decode_properties(self.header)[0]


class Consumer:
    __slots__ = ("tag", "queue", "state", "no_ack", "exclusive", "prefetch", "unacked")

    def __init__(self, tag, queue, state, no_ack, exclusive, prefetch):
        self.tag, self.queue, self.state = tag, queue, state
        self.no_ack, self.exclusive, self.prefetch = no_ack, exclusive, prefetch
        self.unacked = 0

    @property
    def ready(self) -> bool:
        return self.state.open and (self.no_ack or not self.prefetch or self.unacked < self.prefetch)


class ChannelState:
    """The broker's side of one channel: its consumers, deliveries not yet acked, confirm numbering."""

    def __init__(self, broker, connection, channel):
        self.broker, self.connection, self.channel = broker, connection, channel
        self.open = True
        self.prefetch = 0
        self.confirming = False
        self.published = 0  # confirm sequence numbers given so far
        self.next_tag = 0
        self.unacked: dict[int, tuple[StoredMessage, Queue, Consumer | None]] = {}
        self.consumers: dict[str, Consumer] = {}
        self.reply_consumer = None  # the tag consuming direct reply-to on this channel
        self.reply_address = None  # what ``reply_to: amq.rabbitmq.reply-to`` becomes on this channel

    def send(self, method: str, *args) -> None:
        """A frame from the broker to the client, read by the client's ``drain_events``."""
        self.connection.receive((self.channel, method, args))


class Broker(Declarations):
    """One virtual host's exchanges, queues and consumers; see the module docstring. Declaring, binding
    and deleting exchanges and queues are ``Declarations``'."""

    def __init__(self, clock: Clock | None = None):
        self.clock = clock or Clock()
        self.exchanges: dict[str, Exchange] = {name: Exchange(name, kind, durable=True) for name, kind in (
            ("", "direct"), ("amq.direct", "direct"), ("amq.topic", "topic"), ("amq.fanout", "fanout"),
            ("amq.headers", "headers"), ("amq.match", "headers"))}
        self.queues: dict[str, Queue] = {}
        self.connections = []
        self.taps = []  # callables given each message the broker took: see ``Published``
        self.reply_channels: dict[str, ChannelState] = {}  # direct reply-to address -> its channel
        self._serial = itertools.count(1)
        self._consumer_serial = itertools.count(1)

    # Connections and channels

    def attach(self, connection) -> None:
        self.connections.append(connection)

    def detach(self, connection) -> None:
        """A connection closed: its channels close (unacked messages requeued), its exclusive queues go."""
        for channel in list(connection.channels.values()):
            self.close_channel(channel._state)
        if connection in self.connections:
            self.connections.remove(connection)
        for queue in [q for q in self.queues.values() if q.owner is connection]:
            self._delete_queue(queue)
        self._dispatch()

    def open_channel(self, connection, channel) -> ChannelState:
        return ChannelState(self, connection, channel)

    def close_channel(self, state: ChannelState) -> None:
        if not state.open:
            return
        state.open = False
        self.reply_channels.pop(state.reply_address, None)
        for consumer in list(state.consumers.values()):
            self._remove_consumer(consumer)
        self._requeue_all(state)
        self._dispatch()

    def _requeue_all(self, state: ChannelState) -> None:
        unacked, state.unacked = state.unacked, {}
        for message, queue, consumer in unacked.values():
            if consumer is not None:
                consumer.unacked -= 1
            self._requeue(queue, message)

    def _fail(self, state: ChannelState, code: int, text: str, method=None) -> ChannelError:
        """Close the channel as RabbitMQ does on a channel error; return the error py-amqp raises for it."""
        self.close_channel(state)
        return error_for_code(code, text, method, ChannelError)

    @property
    def idle(self) -> bool:
        """No frame waits for any client (every delivery, confirm and return was read)."""
        return not any(c.frames for c in self.connections)

    # Consuming

    def qos(self, state, prefetch_count: int, a_global: bool = False) -> None:
        state.prefetch = prefetch_count  # per consumer started after it (RabbitMQ 3.3+ without global)

    def consume(self, state, queue_name, tag="", no_ack=False, exclusive=False) -> str:
        method = spec.Basic.Consume
        if queue_name == DIRECT_REPLY_TO:
            return self._consume_replies(state, tag, no_ack)
        queue = self.queues.get(queue_name)
        if queue is None:
            raise self._fail(state, 404, _reply_text("NOT_FOUND", f"no queue '{queue_name}' in vhost '/'"), method)
        if queue.owner is not None and queue.owner is not state.connection:
            raise self._fail(state, 405, _reply_text("RESOURCE_LOCKED", f"cannot obtain exclusive access to locked "
                                                     f"queue '{queue_name}' in vhost '/'"), method)
        if any(c.exclusive for c in queue.consumers) or (exclusive and queue.consumers):
            raise self._fail(state, 403, _reply_text("ACCESS_REFUSED", f"queue '{queue_name}' in vhost '/' in "
                                                     f"exclusive use"), method)
        tag = tag or f"amq.ctag-{next(self._consumer_serial)}"
        if tag in state.consumers:
            raise self._fail(state, 530, _reply_text("NOT_ALLOWED", f"attempt to reuse consumer tag '{tag}'"), method)
        consumer = Consumer(tag, queue, state, no_ack, exclusive, state.prefetch)
        state.consumers[tag] = consumer
        queue.consumers.append(consumer)
        queue.had_consumer = True
        self._dispatch()
        return tag

    def _consume_replies(self, state, tag, no_ack) -> str:
        """Direct reply-to: replies to this channel's requests come to ``tag``, without acks."""
        if not no_ack or state.reply_consumer is not None:
            why = "reply consumer cannot acknowledge" if not no_ack else "reply consumer already set"
            raise self._fail(state, 406, _reply_text("PRECONDITION_FAILED", why), spec.Basic.Consume)
        state.reply_consumer = tag or f"amq.ctag-{next(self._consumer_serial)}"
        state.reply_address = f"{DIRECT_REPLY_TO}.g{next(self._serial)}"
        self.reply_channels[state.reply_address] = state
        return state.reply_consumer

    def cancel(self, state, tag) -> None:
        if tag == state.reply_consumer:
            self.reply_channels.pop(state.reply_address, None)
            state.reply_consumer = state.reply_address = None
        consumer = state.consumers.get(tag)
        if consumer is not None:
            self._remove_consumer(consumer)
            self._dispatch()

    def _remove_consumer(self, consumer: Consumer, auto_delete: bool = True) -> None:
        consumer.state.consumers.pop(consumer.tag, None)
        queue = consumer.queue
        if consumer in queue.consumers:
            queue.consumers.remove(consumer)
        # Deliveries the client has not read yet go back as if never sent; those it read stay unacked.
        frames = consumer.state.connection.frames
        for frame in [f for f in frames if f[1] == "deliver" and f[0] is consumer.state.channel and f[2][0] == consumer.tag]:
            frames.remove(frame)
            message, _, _ = consumer.state.unacked.pop(frame[2][1])
            consumer.unacked -= 1
            self._requeue(queue, message, redelivered=message.redelivered)
        if auto_delete and queue.auto_delete and queue.had_consumer and not queue.consumers \
                and queue.name in self.queues:
            self._delete_queue(queue)

    def ack(self, state, tag: int, multiple: bool = False) -> None:
        self._settle(state, tag, multiple, spec.Basic.Ack)
        self._dispatch()

    def reject(self, state, tag: int, requeue: bool, multiple: bool = False, method=spec.Basic.Reject) -> None:
        for message, queue, _ in self._settle(state, tag, multiple, method):
            if requeue:
                self._requeue(queue, message)
            else:
                self._dead_letter(queue, message, "rejected")
        self._dispatch()

    def _settle(self, state, tag, multiple, method) -> list:
        if not state.open:
            return []
        if tag not in state.unacked and not (multiple and tag == 0):
            state.send("close", self._fail(state, 406, _reply_text("PRECONDITION_FAILED", f"unknown delivery tag "
                                                                   f"{tag}"), method))
            return []
        tags = [t for t in state.unacked if t <= tag or (multiple and tag == 0)] if multiple else [tag]
        settled = [state.unacked.pop(t) for t in tags]
        for _, _, consumer in settled:
            if consumer is not None:
                consumer.unacked -= 1
        return settled

    def get(self, state, queue_name, no_ack=False):
        """basic.get: (delivery tag, message, messages left) or None when the queue is empty."""
        queue = self.queues.get(queue_name)
        if queue is None:
            raise self._fail(state, 404, _reply_text("NOT_FOUND", f"no queue '{queue_name}' in vhost '/'"),
                             spec.Basic.Get)
        self._expire()
        if not queue.messages:
            return None
        message = queue.messages.pop(0)
        state.next_tag += 1
        if not no_ack:
            state.unacked[state.next_tag] = (message, queue, None)
        return state.next_tag, message, self._delivered_header(queue, message), len(queue.messages)

    def recover(self, state) -> None:
        self._requeue_all(state)
        self._dispatch()

    # Publishing

    def confirm(self, state) -> None:
        state.confirming = True

    def publish(self, state, exchange: str, routing_key: str, mandatory: bool, body: bytes, header: bytes) -> None:
        """basic.publish: route the message, then (in confirm mode) ack it, after a return where a
        mandatory one reached no queue. An unknown exchange closes the channel, as in RabbitMQ."""
        if not state.open:
            return
        target = self.exchanges.get(exchange)
        if target is None:
            state.send("close", self._fail(state, 404, _reply_text("NOT_FOUND", f"no exchange '{exchange}' in vhost "
                                                                   f"'/'"), spec.Basic.Publish))
            return
        if DIRECT_REPLY_TO.encode() in header and wire.decode_properties(header)[0].get("reply_to") == DIRECT_REPLY_TO:
            if state.reply_consumer is None:
                state.send("close", self._fail(state, 406, _reply_text("PRECONDITION_FAILED", "fast reply consumer "
                                                                       "does not exist"), spec.Basic.Publish))
                return
            header = wire.with_properties(header, reply_to=state.reply_address)
        if state.confirming:
            state.published += 1
        if exchange == "" and routing_key.startswith(DIRECT_REPLY_TO + "."):
            self._reply(state, routing_key, mandatory, body, header)
            return
        message = StoredMessage(body, header, exchange, routing_key, next(self._serial))
        queues = route(self, target, routing_key, lambda: wire.decode_properties(header)[0])
        for tap in self.taps:
            tap(Published(state.connection, exchange, routing_key, message, [q.name for q in queues]))
        for queue in queues:
            self._enqueue(queue, message.copy(next(self._serial)) if len(queues) > 1 else message)
        if not queues and mandatory:
            state.send("return", 312, "NO_ROUTE", exchange, routing_key, body, header)
        if state.confirming:
            state.send("ack", state.published, False)
        self._dispatch()

    def _reply(self, state, address: str, mandatory: bool, body: bytes, header: bytes) -> None:
        """A reply to a direct reply-to address: straight to its channel's reply consumer, or dropped
        where that is gone. RabbitMQ 3.10 returns a mandatory one as unroutable either way."""
        target = self.reply_channels.get(address)
        if target is not None and target.open:
            target.next_tag += 1
            target.send("deliver", target.reply_consumer, target.next_tag, False, "", address, body, header)
        if mandatory:
            state.send("return", 312, "NO_ROUTE", "", address, body, header)
        if state.confirming:
            state.send("ack", state.published, False)

    # Queue contents: enqueue, expire, requeue, dead-letter, deliver

    def _enqueue(self, queue: Queue, message: StoredMessage) -> None:
        ttl = queue.ttl_ms
        expiration = wire.expiration_ms(message.header)
        if expiration is not None:
            ttl = expiration if ttl is None else min(ttl, expiration)
        message.expires = None if ttl is None else self.clock() + ttl / 1000
        message.position = next(self._serial)
        queue.messages.append(message)

    def _requeue(self, queue: Queue, message: StoredMessage, redelivered: bool = True) -> None:
        if queue.name not in self.queues:
            return  # the queue was deleted meanwhile: the message goes with it
        message.redelivered = redelivered
        if redelivered:
            message.returns += 1
        limit = queue.arguments.get("x-delivery-limit") if queue.quorum else None
        if isinstance(limit, int) and message.returns > limit:
            self._dead_letter(queue, message, "delivery_limit")
            return
        index = next((i for i, m in enumerate(queue.messages) if m.position > message.position), len(queue.messages))
        queue.messages.insert(index, message)

    def _dead_letter(self, queue: Queue, message: StoredMessage, reason: str) -> None:
        """Republish to the queue's dead-letter exchange with an ``x-death`` entry, or drop it."""
        dlx = queue.arguments.get("x-dead-letter-exchange")
        exchange = self.exchanges.get(dlx) if isinstance(dlx, str) else None
        if exchange is None:
            return  # no dead-letter exchange (or it is gone): the message is dropped, as in RabbitMQ
        key = queue.arguments.get("x-dead-letter-routing-key")
        key = key if isinstance(key, str) else message.routing_key
        header = wire.dead_lettered(message.header, queue=queue.name, reason=reason, exchange=message.exchange,
                                    routing_key=message.routing_key, time=datetime.now(timezone.utc))
        moved = StoredMessage(message.body, header, exchange.name, key, next(self._serial))
        for target in route(self, exchange, key, lambda: wire.decode_properties(header)[0]):
            self._enqueue(target, moved.copy(next(self._serial)))

    def _expire(self) -> None:
        now = self.clock()
        for queue in list(self.queues.values()):
            while queue.messages and queue.messages[0].expires is not None and queue.messages[0].expires <= now:
                self._dead_letter(queue, queue.messages.pop(0), "expired")

    def next_expiry(self) -> float | None:
        """The clock reading at which the next message expires (at the head of its queue), or None."""
        heads = [q.messages[0].expires for q in self.queues.values() if q.messages and q.messages[0].expires is not None]
        return min(heads) if heads else None

    def advance(self, moment: float) -> None:
        """Move the clock on to ``moment``: messages whose TTL passed are dead-lettered, in order."""
        while (due := self.next_expiry()) is not None and due <= moment:
            self.clock.advance_to(due)
            self._expire()
        self.clock.advance_to(moment)
        self._dispatch()

    def _dispatch(self) -> None:
        """Deliver what waits in queues to consumers with room in their prefetch."""
        self._expire()
        for queue in list(self.queues.values()):
            while queue.messages:
                consumer = queue.next_consumer()
                if consumer is None:
                    break
                self._deliver(queue, queue.messages.pop(0), consumer)

    def _deliver(self, queue: Queue, message: StoredMessage, consumer: Consumer) -> None:
        state = consumer.state
        state.next_tag += 1
        if not consumer.no_ack:
            state.unacked[state.next_tag] = (message, queue, consumer)
            consumer.unacked += 1
        state.send("deliver", consumer.tag, state.next_tag, message.redelivered, message.exchange,
                   message.routing_key, message.body, self._delivered_header(queue, message))

    @staticmethod
    def _delivered_header(queue: Queue, message: StoredMessage) -> bytes:
        if queue.quorum and message.returns:
            return wire.with_headers(message.header, {"x-delivery-count": message.returns})
        return message.header


class Published:
    """What a tap sees of a message the broker took: who published it where, and the queues it reached."""

    __slots__ = ("connection", "exchange", "routing_key", "message", "queues")

    def __init__(self, connection, exchange, routing_key, message, queues):
        self.connection, self.exchange, self.routing_key = connection, exchange, routing_key
        self.message, self.queues = message, queues

    @property
    def body(self) -> bytes:
        return self.message.body

    @property
    def properties(self) -> dict:
        return self.message.properties
