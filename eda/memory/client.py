"""py-amqp's connection and channel, and a kombu transport, on the in-memory broker (``eda.memory.broker``).

eda's runtime talks to RabbitMQ through kombu connections whose transport is py-amqp, and to
py-amqp's channels directly. These classes answer that same
API from the in-memory broker, so that the runtime runs unchanged on it: the transport is of driver
type ``amqp``, a publish goes through ``send_method`` as ``Publisher`` sends it, and what the broker
sends back (deliveries, confirms, returns, a channel closed by an error) waits as frames that
``drain_events`` hands out one at a time, with a socket that is readable while any wait, for the
I/O loop's ``select``. A channel error closes the channel on the broker and reopens it here, as
py-amqp does. Everything runs on the thread that drains the connection (``eda.memory.shared``
locks them for a broker that several threads use).
"""

import select
import socket
from collections import defaultdict, deque

import amqp
import kombu
from amqp import spec
from amqp.basic_message import Message
from amqp.exceptions import ChannelError, ConsumerCancelled, RecoverableConnectionError, error_for_code
from amqp.protocol import queue_declare_ok_t
from amqp.serialization import dumps
from kombu.transport import pyamqp
from kombu.transport.base import to_rabbitmq_queue_arguments

from eda.memory import wire


class Channel:
    """A py-amqp ``Channel`` on the in-memory broker (the methods eda and kombu's entities call)."""

    def __init__(self, connection, channel_id: int):
        self.connection = connection
        self.channel_id = channel_id
        self.auto_decode = True
        self.events = defaultdict(set)
        self.callbacks = {}
        self.cancel_callbacks = {}
        self.is_open = True
        self.is_closing = False
        self._state = connection.broker.open_channel(connection, self)

    def _call(self, method, *args, **kwargs):
        if self.connection is None or not self.connection.connected:
            raise RecoverableConnectionError("connection already closed")
        try:
            return method(self._state, *args, **kwargs)
        except ChannelError:
            self._revive()
            raise

    def _revive(self) -> None:
        """A channel the broker closed with an error opens again (py-amqp's ``_do_revive``)."""
        if self.connection is not None and self.connection.connected:
            self._state = self.connection.broker.open_channel(self.connection, self)

    @property
    def _broker(self):
        return self.connection.broker

    # What kombu's entities need of a channel

    def prepare_queue_arguments(self, arguments, **kwargs):
        return to_rabbitmq_queue_arguments(arguments, **kwargs)

    def message_to_python(self, raw_message):
        """A delivery as kombu's Message, as kombu's py-amqp channel gives it (kombu's Consumer, Queue.get)."""
        return pyamqp.Message(raw_message, channel=self)

    # Exchanges and queues

    def exchange_declare(self, exchange, type, passive=False, durable=False, auto_delete=True, nowait=False,
                         arguments=None, **_):
        self._call(self._broker.declare_exchange, exchange, type, passive, durable, auto_delete, arguments)

    def exchange_delete(self, exchange, if_unused=False, nowait=False, **_):
        self._call(self._broker.delete_exchange, exchange, if_unused)

    def exchange_bind(self, destination, source="", routing_key="", nowait=False, arguments=None, **_):
        self._call(self._broker.bind, destination, source, routing_key, arguments, kind="exchange")

    def exchange_unbind(self, destination, source="", routing_key="", nowait=False, arguments=None, **_):
        self._call(self._broker.bind, destination, source, routing_key, arguments, kind="exchange", unbind=True)

    def queue_declare(self, queue="", passive=False, durable=False, exclusive=False, auto_delete=True,
                      nowait=False, arguments=None, **_):
        return queue_declare_ok_t(*self._call(self._broker.declare_queue, queue, passive, durable, exclusive,
                                              auto_delete, arguments))

    def queue_bind(self, queue, exchange="", routing_key="", nowait=False, arguments=None, **_):
        self._call(self._broker.bind, queue, exchange, routing_key, arguments)

    def queue_unbind(self, queue, exchange, routing_key="", nowait=False, arguments=None, **_):
        self._call(self._broker.bind, queue, exchange, routing_key, arguments, unbind=True)

    def queue_delete(self, queue="", if_unused=False, if_empty=False, nowait=False, **_):
        return self._call(self._broker.delete_queue, queue, if_unused, if_empty)

    def queue_purge(self, queue="", nowait=False, **_):
        return self._call(self._broker.purge_queue, queue)

    # Consuming

    def basic_qos(self, prefetch_size, prefetch_count, a_global, **_):
        self._call(self._broker.qos, prefetch_count, a_global)

    def basic_consume(self, queue="", consumer_tag="", no_local=False, no_ack=False, exclusive=False,
                      nowait=False, callback=None, arguments=None, on_cancel=None, **_):
        tag = self._call(self._broker.consume, queue, consumer_tag, no_ack, exclusive)
        self.callbacks[tag] = callback
        if on_cancel:
            self.cancel_callbacks[tag] = on_cancel
        return tag

    def basic_cancel(self, consumer_tag, nowait=False, **_):
        self._call(self._broker.cancel, consumer_tag)
        self.callbacks.pop(consumer_tag, None)
        self.cancel_callbacks.pop(consumer_tag, None)

    def basic_ack(self, delivery_tag, multiple=False, **_):
        self._call(self._broker.ack, delivery_tag, multiple)

    def basic_reject(self, delivery_tag, requeue, **_):
        self._call(self._broker.reject, delivery_tag, requeue)

    def basic_nack(self, delivery_tag, multiple=False, requeue=True, **_):
        self._call(self._broker.reject, delivery_tag, requeue, multiple, method=spec.Basic.Nack)

    def basic_recover(self, requeue=False):
        self._call(self._broker.recover)

    def basic_get(self, queue="", no_ack=False, **_):
        got = self._call(self._broker.get, queue, no_ack)
        if got is None:
            return None
        tag, stored, header, left = got
        return self._message(stored.body, header, {
            "delivery_tag": tag, "redelivered": stored.redelivered, "exchange": stored.exchange,
            "routing_key": stored.routing_key, "message_count": left})

    # Publishing

    def confirm_select(self, nowait=False):
        self._call(self._broker.confirm)

    def basic_publish(self, msg, exchange="", routing_key="", mandatory=False, immediate=False, **_):
        return self.send_method(spec.Basic.Publish, "Bssbb", (0, exchange, routing_key, mandatory, immediate), msg)

    def send_method(self, sig, format=None, args=None, content=None, wait=None, callback=None, returns_tuple=False):
        """Only ``basic.publish`` is sent as a method (``Publisher`` does): its arguments and properties are
        encoded as py-amqp encodes them, so what it cannot write fails here too."""
        if sig != spec.Basic.Publish:
            raise NotImplementedError(f"the in-memory broker takes no method {sig} through send_method")
        if self.connection is None or not self.connection.connected:
            raise RecoverableConnectionError("connection already closed")
        dumps(format, args)
        _, exchange, routing_key, mandatory, _ = args
        body = content.body
        if isinstance(body, str):
            body = body.encode(content.properties.setdefault("content_encoding", "utf-8"))
        header = content._serialize_properties()
        self._broker.publish(self._state, exchange, routing_key, bool(mandatory), bytes(body), header)

    # Closing

    def close(self, reply_code=0, reply_text="", method_sig=(0, 0), **_):
        try:
            if self.connection is None or not self.is_open:
                return
            self._broker.close_channel(self._state)
        finally:
            self.collect()

    def collect(self) -> None:
        self.is_open = False
        if self.connection is not None:
            self.connection.channels.pop(self.channel_id, None)
        self.connection = None
        self.callbacks.clear()
        self.cancel_callbacks.clear()
        self.events.clear()

    # Frames from the broker (called by the connection's drain_events)

    def _message(self, body: bytes, header: bytes, delivery_info: dict) -> Message:
        properties, undecodable = wire.decode_properties(header)
        message = Message(body, channel=self, **properties)
        message.delivery_info = delivery_info
        if undecodable:
            message.undecodable = undecodable  # as eda.frames marks such a message from RabbitMQ
        if self.auto_decode and properties.get("content_encoding"):
            try:
                message.body = body.decode(properties["content_encoding"])
            except Exception:  # noqa: BLE001 - py-amqp leaves such a body as bytes too
                pass
        return message

    def _dispatch(self, method: str, args: tuple) -> None:
        if method == "deliver":
            consumer_tag, delivery_tag, redelivered, exchange, routing_key, body, header = args
            message = self._message(body, header, {
                "consumer_tag": consumer_tag, "delivery_tag": delivery_tag, "redelivered": redelivered,
                "exchange": exchange, "routing_key": routing_key})
            callback = self.callbacks.get(consumer_tag)
            if callback is None:  # py-amqp gives back what no callback takes
                self.basic_reject(delivery_tag, requeue=True)
            else:
                callback(message)
        elif method in ("ack", "nack"):
            for callback in list(self.events.get(f"basic_{method}", ())):
                callback(*args)
        elif method == "return":
            code, text, exchange, routing_key, body, header = args
            error = error_for_code(code, text, spec.Basic.Return, ChannelError)
            handlers = self.events.get("basic_return")
            if not handlers:
                raise error
            message = self._message(body, header, {"exchange": exchange, "routing_key": routing_key})
            for callback in list(handlers):
                callback(error, exchange, routing_key, message)
        elif method == "cancel":
            (consumer_tag,) = args
            self.callbacks.pop(consumer_tag, None)
            callback = self.cancel_callbacks.pop(consumer_tag, None)
            if callback is None:
                raise ConsumerCancelled(consumer_tag, spec.Basic.Cancel)
            callback(consumer_tag)
        elif method == "close":
            self._revive()
            raise args[0]


class Connection:
    """A py-amqp ``Connection`` on the in-memory broker: channels, and the frames the broker sent them."""

    Channel = Channel
    connection_errors = amqp.Connection.connection_errors
    channel_errors = amqp.Connection.channel_errors
    recoverable_connection_errors = amqp.Connection.recoverable_connection_errors
    recoverable_channel_errors = amqp.Connection.recoverable_channel_errors

    def __init__(self, broker=None, heartbeat=0, **_):
        if broker is None:
            raise ValueError("an in-memory connection needs its broker (transport_options={'broker': ...})")
        self.broker = broker
        self.heartbeat = heartbeat or 0
        self.channels: dict[int, Channel] = {}
        self.frames: deque = deque()  # (channel, method, args) sent by the broker, not yet read
        self.connected = False
        self.is_closing = False
        self.transport = None  # no socket transport: eda's frame reader is not installed
        self.server_properties = {"product": "eda in-memory broker", "version": "3.10"}
        self.frame_max = 131072
        self.channel_max = 2047
        self.sock = None
        self._writer = None
        self._readable = False
        self.client = None

    def connect(self, callback=None):
        self.sock, self._writer = socket.socketpair()
        self.sock.setblocking(False)
        self.connected = True
        self.broker.attach(self)
        return self

    def channel(self, channel_id=None, callback=None) -> Channel:
        if not self.connected:
            raise RecoverableConnectionError("connection already closed")
        if channel_id in self.channels:
            return self.channels[channel_id]
        channel_id = channel_id or next(i for i in range(1, self.channel_max + 1) if i not in self.channels)
        channel = self.channels[channel_id] = self.Channel(self, channel_id)
        return channel

    def receive(self, frame) -> None:
        """Called by the broker: a frame for one of this connection's channels."""
        self.frames.append(frame)
        if not self._readable and self._writer is not None:
            self._readable = True
            self._writer.send(b"\0")

    def drain_events(self, timeout=None) -> None:
        """Hand one frame to its channel; raise socket.timeout where none comes within ``timeout``."""
        if not self.connected:
            raise RecoverableConnectionError("connection already closed")
        if not self.frames:
            self._quiet()
            if timeout != 0:
                select.select([self.sock], [], [], timeout)  # nothing can come: only this thread feeds it
            raise socket.timeout("timed out")
        channel, method, args = self.frames.popleft()
        if not self.frames:
            self._quiet()
        if channel.connection is self:
            channel._dispatch(method, args)

    def _quiet(self) -> None:
        if self._readable:
            self._readable = False
            try:
                self.sock.recv(4096)
            except BlockingIOError:
                pass

    def heartbeat_tick(self, rate=2) -> None:
        """Nothing to do: the broker is in this process."""

    def send_heartbeat(self) -> None:
        """Nothing to do: the broker is in this process."""

    def close(self, reply_code=0, reply_text="", method_sig=(0, 0), argsig="BsBB") -> None:
        if not self.connected:
            return
        self.connected = False
        self.broker.detach(self)
        for channel in list(self.channels.values()):
            channel.collect()
        self.frames.clear()
        for sock in (self.sock, self._writer):
            sock.close()
        self._writer = None

    def collect(self) -> None:
        self.close()


class Transport(pyamqp.Transport):
    """kombu's py-amqp transport with the in-memory broker's connection (``transport_options={'broker': broker}``).

    Its driver type stays ``amqp``: eda's runtime takes the path it takes on RabbitMQ."""

    Connection = Connection
    driver_name = "eda-memory"

    def establish_connection(self):
        options = self.client.transport_options or {}
        connection = self.Connection(broker=options.get("broker"), heartbeat=self.client.heartbeat)
        connection.client = self.client
        connection.connect()
        return connection

    def verify_connection(self, connection):
        return connection.connected


def open_connection(broker) -> kombu.Connection:
    """A connected kombu connection to ``broker``, as ``eda.connection.open_connection`` gives for RabbitMQ."""
    connection = kombu.Connection("memory", transport=Transport, transport_options={"broker": broker})
    connection.connect()
    return connection
