"""``TestBus``: a project's workers run by eda's own runtime on an in-memory broker, for unit tests.

    from eda.testing import TestBus

    def test_billing_sends_invoices():
        with TestBus(Billing) as bus:
            bus.publish("invoice.requested", {"invoice_id": "i-1", "amount": "5.00"})
            assert [e.data["invoice_id"] for e in bus.published("invoice.sent")] == ["i-1"]

The workers run exactly as under ``eda worker``: the same ``Runner``, consumers, settlement, failure
policy, duplicate detection, routing-key check and ordering, on ``eda.memory``'s broker instead of
RabbitMQ (its exchanges, queues, TTL retry queues, dead-letter queues and publisher confirms). What
the real worker refuses at start, the bus refuses at ``with``. Retries wait in their TTL queues on
a clock of the bus's own, which jumps to the next expiry once nothing else is left to do: the retry
schedule is followed exactly, without waiting. ``publish`` returns once everything it caused is
settled, and raises AssertionError where it dead-lettered an event, unless the test expects that.
"""

import contextlib
import shutil
import tempfile
import time
from dataclasses import dataclass, field

from eda import names, replies
from eda.contracts import registry
from eda.contracts.binary import decode_message
from eda.contracts.envelope import Event, encode, new_event
from eda.errors import ContractError, RequestTimeout, Unroutable
from eda.memory import Broker, Published, open_connection
from eda.memory.driver import Driver
from eda.middleware import publishing
from eda.outbox.relay import row_event
from eda.publishing.partitioning import partition_headers
from eda.producer import python_event
from eda.publishing.publisher import Publisher
from eda.publishing.requester import timeout_message
from eda.contracts.envelope import event_properties
from eda.runtime import failures
from eda.runtime.runner import Runner
from eda.settings import Settings
from eda.topology import Topology
from eda.worker import Worker

__test__ = False  # not a pytest test module's class, despite its name
FAIL, ALLOW = "fail", "allow"


@dataclass
class DeadLetter:
    """An event a worker dead-lettered, with the headers its DLQ copy carries (``eda-exception-*``)."""

    worker: str
    event: Event | None  # None: the body was not a valid event
    body: bytes
    headers: dict = field(repr=False)

    @property
    def reason(self) -> str:
        return self.headers.get("eda-exception-message") or self._broker_reason()

    @property
    def exception_type(self) -> str | None:
        return self.headers.get("eda-exception-type")

    @property
    def traceback(self) -> str:
        return self.headers.get("eda-exception-stacktrace") or ""

    @property
    def attempts(self) -> int:
        return failures.retry_count(self.headers) + 1

    def _broker_reason(self) -> str:
        deaths = self.headers.get("x-death") or [{}]
        return f"dead-lettered by the broker ({deaths[0].get('reason', 'unknown reason')})"

    def describe(self) -> str:
        """The dead letter as a test failure shows it: the event, the worker, the reason, the traceback."""
        if self.event is not None:
            what = f"{self.event.type} {self.event.id} with data {self.event.data!r}"
        else:
            what = f"a message that is not a valid event: {self.body[:300]!r}"
        lines = [f"worker {self.worker!r} dead-lettered {what}",
                 f"  after {self.attempts} attempt(s): {self.exception_type or 'rejected'}: {self.reason}"]
        if self.traceback:
            lines += ["  traceback (eda-exception-stacktrace):", *("    " + line for line in self.traceback.splitlines())]
        return "\n".join(lines)


class TestBus:
    """The given worker classes run by eda's runtime on an in-memory broker; use it as a context manager.

    ``settings``: the framework's settings (default: a temporary state folder, namespace ``testbus``).
    ``options``: the workers' own settings, ``{"inventory": {"stock_threshold": 3}}``.
    ``concurrency``: handlers at once per worker, 1 by default so that a test runs the same way each
    time (each worker handles its events one by one, in queue order); None keeps the settings'.
    ``dead_letters``: ``"fail"`` (default) raises AssertionError from ``publish`` when an event is
    dead-lettered, ``"allow"`` only keeps it for ``dead_letters()``; ``expect_dead_letters()`` allows
    them for a block of the test. ``timeout``: seconds of real time a publish may take to settle.
    ``middleware``: process-wide middleware (``Runner(middleware=)``), around the workers' handling and
    every publish, the bus's own included; a worker's own ``middleware`` runs as under ``eda worker``.
    """

    __test__ = False

    def __init__(self, *worker_classes, settings: Settings | None = None, options: dict | None = None,
                 concurrency: int | None = 1, dead_letters: str = FAIL, timeout: float = 30.0, middleware=()):
        if dead_letters not in (FAIL, ALLOW):
            raise ValueError(f"dead_letters must be {FAIL!r} or {ALLOW!r}, not {dead_letters!r}")
        self._state_dir = None
        if settings is None:
            self._state_dir = tempfile.mkdtemp(prefix="eda-testbus-")
            settings = Settings(state_dir=self._state_dir, namespace="testbus")
        if concurrency is not None:
            settings = settings.with_(concurrency=concurrency)
        if options:
            settings = settings.with_(worker_options=_worker_options(settings, options))
        self.settings = settings
        self.worker_classes = worker_classes
        self.timeout = timeout
        self.middleware = tuple(middleware)
        self.broker = Broker()
        self.runner: Runner | None = None
        self.workers = []
        self._dead_letters = dead_letters
        self._allowing = 0  # open expect_dead_letters() blocks
        self._reported: set[int] = set()  # dead letters already raised or allowed (by arrival serial)
        self._published: list[Event] = []
        self._given_back: list[tuple[str, Event]] = []
        self._held: set[int] = set()  # ordered workers' deliveries held by a pause, recorded as given back
        self._replies: list = []  # messages to the bus's direct reply-to address, not yet matched to a request
        self._advanced = 0.0  # seconds advance() let pass: scheduled events are due by real time plus these
        self._started_at = self.broker.clock()
        self._connection = None

    # Lifecycle

    def __enter__(self) -> "TestBus":
        topology = Topology.from_settings(self.settings)
        self._events_exchange = topology.events.name
        # Everything eda worker checks at start happens here: unknown event types, ordered workers
        # whose contracts name no key, the workers' own settings, the queues' declarations.
        try:
            self.runner = Runner(self.worker_classes, self.settings, clock=self.broker.clock, wall_clock=self._now,
                                 connect=lambda _: open_connection(self.broker), middleware=self.middleware)
        except BaseException:
            self._close()
            raise
        self.workers = self.runner.workers
        self._work_queues = {names.work_queue(self.settings.namespace, w.name): w.name
                             for w in self.workers if not w.ordered_by}
        try:
            self.runner.setup()
        except BaseException:
            self._close(teardown=False)  # as eda worker: no teardown of a worker whose setup failed
            raise
        try:
            self.runner.start_session()
            self.broker.taps.append(self._tap)
            self._driver = Driver(self.runner, self.broker, self.timeout, before_each=self._read_replies)
            self._connection = open_connection(self.broker)
            self._publisher = Publisher(self._connection)
            # The bus publishes as a producer of the same process would: through the process-wide middleware.
            self._publishing = publishing(self.runner.middleware)
            # Requests go out on the channel that consumes their replies (direct reply-to), as a Producer's.
            self._publisher.channel.auto_decode = False
            self._publisher.channel.basic_consume(replies.DIRECT_REPLY_TO, no_ack=True, callback=self._replies.append)
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._check_dead_letters()
        finally:
            self._close()

    def _close(self, teardown: bool = True) -> None:
        if self._connection is not None:
            self._connection.release()
            self._connection = None
        if self.runner is not None and teardown:
            self.runner.close()
        elif self.runner is not None:
            for consumer in self.runner.consumers:
                consumer.close()
                if consumer.asynchronous:
                    consumer.pool.shutdown()
        if self.runner is not None and self.runner.drained():
            self.runner.release()  # no handler runs: no outcome can come any more (else it closes when collected)
        if self._state_dir:
            shutil.rmtree(self._state_dir, ignore_errors=True)

    # What a test does

    def publish(self, event_type: registry.EventRef | Event, data: dict | None = None, *, source: str = "eda/testbus",
                correlation_id: str | None = None, retries: bool = True) -> Event:
        """Publish an event as a client would (Python values, snake_case keys) and run everything it
        causes; a contract failure raises ContractError, as ``Producer.publish`` does. An ``Event``
        instead of a type is published as it is, same id (a producer's retry: a duplicate).

        Returns once everything is settled: with ``retries=False``, failed events are left waiting in
        their retry queues (``retrying()``; ``advance`` lets their time pass)."""
        self._check_started()
        if isinstance(event_type, Event):
            event = event_type
            body = encode(event)
        else:  # as Producer.publish builds it
            event, wire = python_event(event_type, data if data is not None else {}, source, correlation_id)
            body = encode(event, wire)
        self._publisher.publish_encoded([(event, body)], self._events_exchange, mandatory=False,
                                        middleware=self._publishing)
        self._settle(retries=retries)
        self._release_scheduled(retries=retries)
        return event

    def request(self, event_type: registry.EventRef, data: dict | None = None, *, source: str = "eda/testbus",
                correlation_id: str | None = None, timeout: float | None = None) -> Event:
        """Publish a request as ``Producer.request`` does (``reply_to`` direct reply-to), run everything
        it causes, and return the reply a handler gave, validated as a requester reads it.
        ``RequestFailed`` when a worker dead-lettered the request (its dead letter then does not fail
        the test: the requester is told), ``RequestTimeout`` when no handler replied (with ``timeout``:
        within that many seconds of the bus's clock, as a requester waits; retries due later still run
        on the bus, as they do on a broker), ``Unroutable`` when no worker takes it."""
        self._check_started()
        contract = registry.get(event_type)
        reply_type = contract.reply_contract().type  # ConfigError: not a request
        loaded, wire = contract.from_python(data if data is not None else {})
        request = new_event(contract, loaded, source, **({"correlation_id": correlation_id} if correlation_id else {}))
        body = encode(request, wire)
        settled = []
        properties, headers = {**event_properties(request), "reply_to": replies.DIRECT_REPLY_TO}, {}
        if timeout is not None:  # it expires as a Producer's request does (eda.replies.expiry)
            properties["expiration"], headers = replies.expiry(timeout, self._now())
        self._publisher.send(self._events_exchange, request.type, body, properties,
                             headers={**partition_headers(request, body), **headers} or None, mandatory=True,
                             label=f"{request.type} {request.id}", callback=settled.append,
                             middleware=self._publishing, event=request)
        self._publisher.wait(self.timeout)
        if isinstance(settled[0], Unroutable):
            raise Unroutable(f"{request.type}: routed to no queue: no worker takes this request (request {request.id})")
        if settled[0] is not None:
            raise settled[0]
        self._settle(excused={request.id}, until=None if timeout is None else self.broker.clock() + timeout)
        return self._reply_of(request, reply_type, timeout)

    def _reply_of(self, request: Event, reply_type: str, timeout: float | None = None) -> Event:
        """The reply that answers ``request``, read as ``eda.publishing.requester`` reads it."""
        for message in list(self._replies):
            properties = message.properties or {}
            headers = properties.get("application_headers") or {}
            if replies.answered(message.body, properties, headers, {request.id}) != request.id:
                continue
            self._replies.remove(message)
            error = replies.failed(message.body, properties, request)
            if error is not None:
                raise error
            try:
                return decode_message(message.body, properties.get("content_type"), headers, frozenset((reply_type,)))
            except ContractError as exc:
                raise ContractError(f"{request.type}: its reply is invalid: {exc}") from None
        if timeout is not None:
            raise RequestTimeout(timeout_message(request, timeout))
        raise RequestTimeout(f"{request.type}: no handler on the bus replied to the request (request {request.id})")

    def _now(self) -> float:
        """Seconds since the epoch on the bus: real time, plus the time its clock was moved on (retries
        and ``advance``), with which the workers tell a request past its ``eda-expires-at``."""
        return time.time() + self.broker.clock() - self._started_at

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass on the bus's clock: retries, circuit pauses and ordered workers' holds
        due meanwhile run, each at its time; then the scheduled events (``ctx.publish(..., delay=)``)
        due by then are published, as the outbox relay would."""
        self._check_started()
        self._advanced += seconds
        self._settle(until=self.broker.clock() + seconds)
        self._release_scheduled()

    def scheduled(self):
        """The scheduled events waiting (handlers' ``ctx.publish(..., delay=)``), earliest due first, as
        ``eda.outbox.Outbox.scheduled`` gives them; ``advance`` past their due time publishes them."""
        outbox = self._outbox()
        return outbox.scheduled() if outbox is not None else []

    def _outbox(self):
        """The outbox the workers' delayed reactions went to, or None while none was written."""
        consumer = next((c for c in self.runner.consumers if c.scheduling is not None), None)
        return consumer.scheduling.outbox if consumer is not None else None

    def _release_scheduled(self, retries: bool = True) -> None:
        """Publish the scheduled events due by the bus's time (real time plus what ``advance`` let pass),
        as ``eda outbox relay`` would, and run what they cause, until none is due."""
        outbox = self._outbox()
        while outbox is not None:
            conn = outbox.open(autocommit=True)
            try:
                rows = outbox.table.claim(conn, 500, time.time() + self._advanced)
                if not rows:
                    return
                self._publisher.publish_encoded([(row_event(row), bytes(row[5])) for row in rows],
                                                self._events_exchange, mandatory=False, middleware=self._publishing)
                outbox.table.mark_sent(conn, [row[0] for row in rows])
            finally:
                conn.close()
            self._settle(retries=retries)

    def worker(self, name: str) -> Worker:
        """The running instance of the named worker (to look at its state)."""
        return next(w for w in self.workers if w.name == name)

    def saga_instance(self, saga: str, key: str):
        """The stored instance of the named saga for ``key`` (``state``, ``version``, ``completed``), or
        None: what ``eda saga show`` reads, from the bus's state."""
        from eda.sagas.table import Instances

        with Instances(self.settings, saga) as instances:
            return instances.get(key)

    def published(self, event_type: registry.EventRef | None = None) -> list[Event]:
        """Every event published on the bus (by ``publish`` and as reactions), or those of one type."""
        wanted = registry.get(event_type).type if event_type else None
        return [e for e in self._published if wanted is None or e.type == wanted]

    def dead_letters(self, worker: str | None = None) -> list[DeadLetter]:
        """The events in the workers' dead-letter queues, by any worker or by the named one."""
        return [d for _, d in self._dlq() if worker is None or d.worker == worker]

    def given_back(self) -> list[tuple[str, Event]]:
        """(worker, event) of events given back unhandled because a circuit breaker was open; the
        worker pauses for its ``circuit_pause`` (``advance`` lets it pass), a real one tries again then."""
        return list(self._given_back)

    def retrying(self) -> list[tuple[str, Event]]:
        """(worker, event) of failed events waiting for their next attempt (``publish(..., retries=False)``)."""
        waiting = []
        for worker in self.workers:
            for delay in sorted(set(self.settings.retry_delays_ms)):
                queue = self.broker.queues.get(names.retry_queue(self.settings.namespace, worker.name, delay))
                waiting += [(m.serial, worker.name, _event(m.body, m.properties)) for m in queue.messages] if queue else []
        waiting += [(0, c.worker.name, p.current.event) for c, p in self._driver.held() if p.scheduled]
        return [(worker, event) for _, worker, event in sorted(waiting, key=lambda w: w[0])]

    @contextlib.contextmanager
    def expect_dead_letters(self):
        """Within the block, dead letters do not fail the test; at its end, at least one must have come."""
        before = {serial for serial, _ in self._dlq()}
        self._allowing += 1
        try:
            yield
        finally:
            self._allowing -= 1
        came = {serial for serial, _ in self._dlq()} - before
        self._reported |= came
        if not came:
            raise AssertionError("expected a dead letter, but no event was dead-lettered")

    def _check_started(self) -> None:
        if self.runner is None or self._connection is None:
            raise RuntimeError("use the TestBus as a context manager: `with TestBus(...) as bus:`")

    def _settle(self, *, retries: bool = True, until: float | None = None, excused=()) -> None:
        """Run everything to its end (``eda.memory.driver``); then note what is held and check dead letters."""
        self._driver.settle(retries=retries, until=until)
        self._note_held()
        self._check_dead_letters(excused)

    def _read_replies(self) -> None:
        """Take what the broker sent the bus's own connection: replies to its requests."""
        while self._connection.connection.frames:
            self._connection.connection.drain_events(timeout=0)

    # What the bus sees

    def _tap(self, published: Published) -> None:
        """Every message the broker took: events on the events exchange, give-backs to a work queue."""
        if published.exchange == self._events_exchange:
            event = _event(published.body, published.properties)
            if event is not None:
                self._published.append(event)
        elif published.exchange == "" and published.routing_key in self._work_queues \
                and published.connection is self.runner.connection.connection:
            self._given_back.append((self._work_queues[published.routing_key],
                                     _event(published.body, published.properties)))

    def _note_held(self) -> None:
        """An ordered worker's event held at its partition's head by an open circuit counts as given back."""
        for c, p in self._driver.held():
            if not p.scheduled and id(p.current) not in self._held:
                self._held.add(id(p.current))
                self._given_back.append((c.worker.name, p.current.event))

    def _dlq(self) -> list[tuple[int, DeadLetter]]:
        found = []
        for worker in self.workers:
            queue = self.broker.queues.get(names.dead_letter_queue(self.settings.namespace, worker.name))
            for message in queue.messages if queue else ():
                properties = message.properties
                found.append((message.serial, DeadLetter(worker.name, _event(message.body, properties), message.body,
                                                         dict(properties.get("application_headers") or {}))))
        return sorted(found, key=lambda item: item[0])

    def _check_dead_letters(self, excused=()) -> None:
        """Fail the test with the dead letters that came since the last check (unless allowed); those of
        ``excused`` event ids are the caller's to report (a request's: RequestFailed)."""
        new = [(serial, dead) for serial, dead in self._dlq() if serial not in self._reported]
        self._reported |= {serial for serial, _ in new}
        new = [(serial, dead) for serial, dead in new if dead.event is None or dead.event.id not in excused]
        if not new or self._dead_letters == ALLOW or self._allowing:
            return
        raise AssertionError("\n".join([d.describe() for _, d in new] + [
            "(a test that expects it: `with bus.expect_dead_letters(): ...`, or TestBus(..., dead_letters=\"allow\"))"]))


def _event(body: bytes, properties: dict) -> Event | None:
    """The event a message carries, or None where it is not a valid one."""
    try:
        return decode_message(body, properties.get("content_type"), properties.get("application_headers"))
    except Exception:  # noqa: BLE001 - a poison message: shown by its body
        return None


def _worker_options(settings: Settings, options: dict) -> dict:
    """``settings.worker_options`` with ``options`` ({worker: {setting: value}}) over it, worker by worker."""
    merged = {worker: dict(values) for worker, values in settings.worker_options.items()}
    for worker, values in options.items():
        if not isinstance(values, dict):
            raise ValueError(f"options: the settings of worker {worker!r} must be a dict of setting name -> value")
        merged[worker] = {**merged.get(worker, {}), **values}
    return merged
