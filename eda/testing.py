"""``TestBus``: a project's workers on an in-memory bus, for its unit tests (no broker).

    from eda.testing import TestBus

    def test_billing_sends_invoices():
        with TestBus(Billing) as bus:
            bus.publish("invoice.requested", {"invoice_id": "i-1", "amount": "5.00"})
            assert [e.data["invoice_id"] for e in bus.published("invoice.sent")] == ["i-1"]
            assert bus.dead_letters() == []

Events go the real path: encoded and decoded as on the wire and validated, handled, reactions
validated and delivered to the bus's other workers, failures classified, transient ones retried as
``EDA_RETRY_DELAYS`` says (without waiting), and dead letters kept with their ``eda-exception-*``
reasons. ``publish`` returns once everything it caused is settled.
"""

import asyncio
import inspect
import shutil
import tempfile
from collections import deque
from dataclasses import dataclass, field

from eda.contracts import registry
from eda.contracts.envelope import Event, decode, encode, new_event
from eda.errors import RequestFailed, RequestTimeout
from eda.runtime import failures
from eda.settings import Settings
from eda.worker import check, dispatch, dispatch_async, is_async

__test__ = False  # not a pytest test class, despite its name


@dataclass
class DeadLetter:
    """An event a worker dead-lettered, with the headers a DLQ copy carries (``eda-exception-*``)."""

    worker: str
    event: Event | None  # None: the body was not a valid event
    body: bytes
    headers: dict = field(repr=False)

    @property
    def reason(self) -> str:
        return self.headers["eda-exception-message"]

    @property
    def exception_type(self) -> str:
        return self.headers["eda-exception-type"]

    @property
    def attempts(self) -> int:
        return self.headers[failures.RETRY_COUNT] + 1


@dataclass
class _Delivery:
    worker: object
    body: bytes
    headers: dict
    routing_key: str
    requested: bool = False  # published by ``TestBus.request``: a reply goes to the test


class TestBus:
    """The given worker classes on one in-memory bus; use it as a context manager."""

    __test__ = False

    def __init__(self, *worker_classes, settings: Settings | None = None):
        self._state_dir = None
        if settings is None:
            self._state_dir = tempfile.mkdtemp(prefix="eda-testbus-")
            settings = Settings(state_dir=self._state_dir, namespace="testbus")
        self.settings = settings
        self.workers = [cls(settings) for cls in worker_classes]
        self._published: list[Event] = []
        self._dead: list[DeadLetter] = []
        self._given_back: list[tuple[str, Event]] = []
        self._queue: deque[_Delivery] = deque()
        self._answers: dict[str, tuple[Event, bytes]] = {}  # request id -> the first reply given
        self._started = False

    def __enter__(self) -> "TestBus":
        check([type(w) for w in self.workers], self.settings)  # what `eda worker` refuses at start, refused here
        for worker in self.workers:
            worker.handlers  # names resolve now, as when a worker starts: an unknown event fails here
        # Workers with `async def` handlers share one event loop, their async setup and teardown too
        # (a test using the bus therefore does not itself run on an event loop).
        self._loop = asyncio.new_event_loop() if any(is_async(w) for w in self.workers) else None
        for worker in self.workers:
            self._call(worker.setup)
        self._started = True
        return self

    def __exit__(self, *exc) -> None:
        for worker in self.workers:
            self._call(worker.teardown)
        if self._loop is not None:
            self._loop.close()
        if self._state_dir:
            shutil.rmtree(self._state_dir, ignore_errors=True)

    def _call(self, func):
        result = func()
        return self._loop.run_until_complete(result) if inspect.isawaitable(result) else result

    def worker(self, name: str):
        """The running instance of the named worker (to look at its state)."""
        return next(w for w in self.workers if w.name == name)

    def publish(self, event_type: str, data: dict, *, source: str = "eda/testbus",
                correlation_id: str | None = None) -> Event:
        """Publish an event as a client would (Python values, snake_case keys) and run everything it
        causes; a contract failure raises ContractError, as ``Producer.publish`` does."""
        event, body = self._event(event_type, data, source, correlation_id)
        self._send(event, body)
        self._run()
        return event

    def _event(self, event_type, data, source, correlation_id) -> tuple[Event, bytes]:
        if not self._started:
            raise RuntimeError("use the TestBus as a context manager: `with TestBus(...) as bus:`")
        contract = registry.get(event_type)
        loaded, wire = contract.from_python(data)
        event = new_event(contract.type, loaded, source,
                          **({"correlation_id": correlation_id} if correlation_id else {}))
        return event, encode(event, wire)

    def request(self, event_type: str, data: dict, *, source: str = "eda/testbus",
                correlation_id: str | None = None) -> Event:
        """Publish a request as ``Producer.request`` does, run everything it causes, and return the
        reply a handler gave, decoded and validated as a requester reads it. ``RequestFailed`` when a
        worker dead-lettered the request, ``RequestTimeout`` when no handler replied."""
        reply_type = registry.get(event_type).reply_contract().type  # ConfigError: not a request
        event, body = self._event(event_type, data, source, correlation_id)
        self._send(event, body, requested=True)
        self._run()
        answer = self._answers.pop(event.id, None)
        if answer is not None:
            return decode(answer[1], frozenset((reply_type,)))
        dead = [d for d in self._dead if d.event is not None and d.event.id == event.id]
        if dead:
            raise RequestFailed(f"{event.type}: worker {dead[0].worker} failed the request: "
                                f"{dead[0].exception_type}: {dead[0].reason}")
        raise RequestTimeout(f"{event.type}: no handler on the bus replied to the request")

    def published(self, event_type: str | None = None) -> list[Event]:
        """Every event published on the bus (by ``publish`` and as reactions), or those of one type."""
        wanted = registry.get(event_type).type if event_type else None
        return [e for e in self._published if wanted is None or e.type == wanted]

    def dead_letters(self, worker: str | None = None) -> list[DeadLetter]:
        """The events dead-lettered so far, by any worker or by the named one."""
        return [d for d in self._dead if worker is None or d.worker == worker]

    def given_back(self) -> list[tuple[str, Event]]:
        """(worker, event) of events given back unhandled because a circuit breaker was open; a real
        worker pauses and retries them later, the bus leaves them for the test to look at."""
        return list(self._given_back)

    def _send(self, event: Event, body: bytes, requested: bool = False) -> None:
        self._published.append(event)
        for worker in self.workers:
            if event.type in worker.handlers:
                self._queue.append(_Delivery(worker, body, {}, event.type, requested))

    def _run(self) -> None:
        while self._queue:
            self._handle(self._queue.popleft())

    def _handle(self, d: _Delivery) -> None:
        event = None
        try:
            event = decode(d.body, frozenset(d.worker.handlers))
            ctx = self._loop.run_until_complete(dispatch_async(d.worker, event)) if is_async(d.worker) \
                else dispatch(d.worker, event)
        except Exception as exc:  # what the runtime does with any handler error
            self._fail(d, event, exc)
            return
        for reaction, body in ctx.reactions:
            self._send(reaction, body)
        if ctx.answer is not None and d.requested:  # the first reply answers, as with a requester
            self._answers.setdefault(event.id, ctx.answer)

    def _fail(self, d: _Delivery, event: Event | None, error: Exception) -> None:
        kind = failures.classify(error)
        if kind == failures.CIRCUIT_OPEN:
            self._given_back.append((d.worker.name, event))
            return
        info = {"exchange": f"{self.settings.namespace}.events", "routing_key": d.routing_key}
        attempts = failures.retry_count(d.headers)
        if failures.next_delay(kind, attempts, self.settings.retry_delays_ms) is not None:
            self._queue.append(_Delivery(d.worker, d.body, failures.retry_headers(d.headers, info, attempts),
                                         d.routing_key, d.requested))  # retried at once: the bus does not wait
            return
        queue = f"{self.settings.namespace}.{d.worker.name}"
        headers = failures.dead_letter_headers(d.headers, info, error, worker=d.worker.name, queue=queue,
                                               attempts=attempts)
        self._dead.append(DeadLetter(d.worker.name, event, d.body, headers))
