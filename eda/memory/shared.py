"""The in-memory broker of a ``memory://`` URL: one per process (per URL), shared by its threads, in real time.

``eda.connection.open_connection`` gives a connection to it for a ``memory://`` broker URL, so that
``eda.running``, ``Producer``, ``watch`` and ``Requester`` of one program meet on it as they would on
RabbitMQ, through the same runtime path (``eda demo --embedded`` runs so). Unlike a test bus's
broker, which runs on the caller's thread on a clock the test moves, this one is used by several
threads at once (workers, a producer, a live view): every call into it holds the broker's lock, and
its clock is the real one, a thread of its own dead-lettering what expires (retry queues' TTLs) when due.
"""

import select
import threading
import time
from urllib.parse import urlsplit

import kombu

from eda.memory.broker import Broker, Clock
from eda.memory.client import Channel, Connection, Transport


class RealClock(Clock):
    """Monotonic seconds that pass by themselves."""

    def __call__(self) -> float:
        return time.monotonic()

    def advance_to(self, moment: float) -> None:
        """Nothing to move: time passes."""


class SharedBroker(Broker):
    """A ``Broker`` for several threads, on the real clock; see the module docstring."""

    def __init__(self):
        super().__init__(clock=RealClock())
        self.lock = threading.RLock()
        self._changed = threading.Condition(self.lock)
        self._timing = False  # the timer thread runs (set and cleared under the lock)

    def call(self, method, *args, **kwargs):
        """``method(*args, **kwargs)`` under the broker's lock; the timer then looks at what is due anew."""
        with self.lock:
            try:
                return method(*args, **kwargs)
            finally:
                self._changed.notify()

    def expire_due(self) -> None:
        """Dead-letter what expired by now (called under the lock)."""
        self.advance(self.clock())

    def attach(self, connection) -> None:
        """A connection opened (called under the lock): the timer runs while any is open."""
        super().attach(connection)
        if not self._timing:
            self._timing = True
            threading.Thread(target=self._expire_when_due, name="eda-memory-broker", daemon=True).start()

    def _expire_when_due(self) -> None:
        """While connections are open: wait for the next expiry (or a change), then dead-letter what is due."""
        with self.lock:
            while self.connections:
                due = self.next_expiry()
                self._changed.wait(None if due is None else max(0.0, due - self.clock()))
                self.expire_due()
            self._timing = False


class SharedChannel(Channel):
    """A channel whose every call into the broker holds the broker's lock."""

    def __init__(self, connection, channel_id: int):
        with connection.broker.lock:
            super().__init__(connection, channel_id)

    def _call(self, method, *args, **kwargs):
        return self.connection.broker.call(super()._call, method, *args, **kwargs) if self.connection is not None \
            else super()._call(method, *args, **kwargs)

    def send_method(self, *args, **kwargs):
        broker = self.connection.broker if self.connection is not None else None
        if broker is None:
            return super().send_method(*args, **kwargs)
        return broker.call(super().send_method, *args, **kwargs)

    def close(self, *args, **kwargs):
        broker = self.connection.broker if self.connection is not None else None
        if broker is None:
            return super().close(*args, **kwargs)
        return broker.call(super().close, *args, **kwargs)


class SharedConnection(Connection):
    """A connection to a ``SharedBroker``: its frames are taken under the broker's lock, and it waits
    for them (``drain_events``) without holding it."""

    Channel = SharedChannel

    def connect(self, callback=None):
        return self.broker.call(super().connect, callback)

    def close(self, *args, **kwargs) -> None:
        self.broker.call(super().close, *args, **kwargs)

    def drain_events(self, timeout=None) -> None:
        """Hand one frame to its channel (under the lock, as the broker's own calls are), or wait up to
        ``timeout`` for one and raise socket.timeout where none came."""
        if timeout != 0 and self.connected and not self.frames:
            select.select([self.sock], [], [], timeout)
        with self.broker.lock:
            return super().drain_events(timeout=0)


class SharedTransport(Transport):
    """kombu's py-amqp transport on a ``SharedBroker`` (driver type ``amqp``, as on RabbitMQ)."""

    Connection = SharedConnection


_brokers: dict[str, SharedBroker] = {}
_brokers_lock = threading.Lock()


def broker(url: str = "memory://") -> SharedBroker:
    """The in-memory broker of ``url`` in this process (``memory://`` or ``memory://NAME``: one per name)."""
    name = urlsplit(url).netloc
    with _brokers_lock:
        found = _brokers.get(name)
        if found is None:
            found = _brokers[name] = SharedBroker()
        return found


def open_connection(url: str = "memory://", heartbeat: int = 0) -> kombu.Connection:
    """A connected kombu connection to the in-memory broker of ``url`` (see ``broker``)."""
    connection = kombu.Connection("memory", transport=SharedTransport, heartbeat=heartbeat,
                                  transport_options={"broker": broker(url)})
    connection.connect()
    return connection
