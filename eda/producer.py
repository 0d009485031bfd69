"""The producer API for applications: validate an event against its contract and publish it confirmed.

    from eda import Producer, Settings

    with Producer(Settings.from_env(), source="shop/web") as producer:
        event = producer.publish("order-placed", {"order_id": "1", "user_id": "u1", ...})

``publish`` returns once the broker confirmed the event (and a queue took it); it raises a
ContractError for invalid data and a PublishError or BrokerUnavailable otherwise. One Producer may be
shared by threads: a lock keeps its connection to one thread at a time. ``request`` publishes a
request and waits for its reply (``eda.publishing.requests``), on a connection of its own.

``publish(..., at=datetime)`` or ``delay=timedelta`` schedules the event instead: it is written to the
outbox (eda.outbox) with its due time, and ``eda outbox relay`` publishes it then; ``cancel(id)`` before.
"""

import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from eda import tracing
from eda.connection import describe_connection_error, open_connection
from eda.contracts import registry
from eda.contracts.building import python_event
from eda.contracts.envelope import Event
from eda.errors import BrokerUnavailable
from eda.middleware import checked, from_settings, publishing
from eda.publishing.failover import publish_through_losses, reiterable
from eda.publishing.publisher import Publisher
from eda.publishing.requests import Requests
from eda.settings import Settings
from eda.topology import Topology


class Producer(Requests):
    def __init__(self, settings: Settings, source: str = "eda/producer", *, mandatory: bool = True,
                 timeout: float = 30.0, middleware=()):
        self.settings = settings
        self.source = source
        self.mandatory = mandatory
        self.timeout = timeout
        self.exchange = Topology(settings.namespace).events.name
        self._lock = threading.Lock()
        self._conn = None
        self._publisher = None
        self._connected = False  # once connected, a lost connection is failed over, not an error
        self._scheduling = None  # the outbox that scheduled events wait in, made on first use
        # Tracing first, where OTEL_TRACES_EXPORTER asks (each publish a span, a child of the caller's
        # current span, in the application's TracerProvider where it set one up); then EDA_MIDDLEWARE's
        # middleware, then this producer's own. Composed once, here.
        self.middleware = [*tracing.middleware("eda-producer"), *from_settings(settings),
                           *checked(middleware, "Producer")]
        self._publishing = publishing(self.middleware)

    def _ready_publisher(self) -> Publisher:
        if self._publisher is None:
            self._conn = open_connection(self.settings)
            self._publisher = Publisher(self._conn)
            Topology(self.settings.namespace).declare_exchanges(self._publisher.channel)
        return self._publisher

    def publish(self, event_name: registry.EventRef, data: dict, correlation_id: str | None = None, *,
                at: datetime | None = None, delay: timedelta | float | None = None) -> Event:
        """Validate ``data`` (Python values, snake_case keys, as a handler's ``ctx.publish`` takes
        them), publish and wait for the broker's confirm; return the published event.

        With ``at`` (an aware datetime) or ``delay`` (a timedelta or seconds): write the event to the
        outbox, durably, to be published by ``eda outbox relay`` when due; return it once written (its
        id is what ``cancel`` takes). Nothing goes to the broker now."""
        if at is not None or delay is not None:
            return self._schedule().schedule(event_name, data, correlation_id, at, delay)
        event, _ = python_event(event_name, data, self.source, correlation_id)
        self.publish_events([event])
        return event

    def cancel(self, event_id: str) -> bool:
        """Cancel a scheduled event not published yet: True, and it never will be; False when it was
        published or cancelled already, or is unknown (``Outbox.find`` tells which)."""
        return self._schedule().outbox.cancel(event_id)

    def _schedule(self):
        from eda.outbox.scheduling import Scheduling  # the outbox's database driver only where used

        with self._lock:
            if self._scheduling is None:
                self._scheduling = Scheduling(self.settings, self.source)
            return self._scheduling

    def publish_events(self, events: Iterable[Event], on_confirmed: Callable[[Event], None] | None = None) -> None:
        """Publish built events with pipelined confirms; return once every one is confirmed."""
        self.publish_encoded([(event, None) for event in events], on_confirmed=on_confirmed)

    def publish_encoded(self, items, on_confirmed=None) -> None:
        """Publish ``(event, body)`` pairs (a body of None is encoded from the event) with pipelined
        confirms, as ``publish_events`` does: ``eda publish`` sends bodies it encoded while validating.
        A connection lost on the way is failed over within the reconnect window: what the broker had
        not confirmed is sent again on a new connection (``eda.publishing.failover``)."""
        items = reiterable(items)
        with self._lock:
            publish_through_losses(lambda progress: self._publish_unconfirmed(items, progress, on_confirmed),
                                   self.settings.reconnect_window, connected=lambda: self._connected)

    def _publish_unconfirmed(self, items, progress, on_confirmed) -> None:
        publisher = self._ready_publisher()
        self._connected = True
        positions = {}  # id(event) -> its position in items, while the broker has not confirmed it

        def unconfirmed():
            for index, (event, body) in enumerate(items):
                if not progress.confirmed(index):
                    positions[id(event)] = index
                    yield event, body

        callers = []  # what the caller's on_confirmed raised: its own, whatever its type

        def confirmed(event):
            progress.confirm(positions.pop(id(event)))
            if on_confirmed:
                try:
                    on_confirmed(event)
                except Exception as exc:
                    callers.append(exc)
                    raise

        try:
            publisher.publish_encoded(unconfirmed(), self.exchange, mandatory=self.mandatory, timeout=self.timeout,
                                      on_confirmed=confirmed, middleware=self._publishing)
        except (OSError, *self._conn.connection_errors) as exc:  # the socket died under a publish
            if callers and exc is callers[0]:  # an OSError of the caller's (a closed pipe): not a lost connection
                raise
            self._reset()
            raise BrokerUnavailable(f"lost the broker connection: {describe_connection_error(exc)}") from None
        except Exception:
            self._reset()  # a connection in an unknown state is not reused
            raise

    def _reset(self) -> None:
        if self._conn is not None:
            try:
                self._conn.release()
            except Exception:  # already broken; nothing to release
                pass
        self._conn = self._publisher = None

    def close(self) -> None:
        self.close_requests()
        with self._lock:
            self._reset()
            if self._scheduling is not None:
                self._scheduling.close()
                self._scheduling = None

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
