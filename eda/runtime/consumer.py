"""One named worker's consumption: its channel, queue, bounded concurrency and backlog.

Everything here runs on the I/O thread except ``_execute``, which runs the user's handler (in the
pool when concurrency > 1) and hands the outcome back without touching the connection.
"""

import asyncio
import logging
import threading
import time
from collections import deque

from eda import replies
from eda.contracts.binary import claimed_identity, decode_message
from eda.contracts.envelope import clip
from eda.errors import ContractError, StoreUnavailable
from eda.middleware import Chains
from eda.runtime import failures
from eda.runtime.amqp_consumer import AmqpConsumer
from eda.runtime.duplicates import Duplicates
from eda.runtime.aio import HandlerLoop
from eda.runtime.threads import HandlerThreads
from eda.store import open_store
from eda.worker import Worker, dispatch, dispatch_async, is_async

log = logging.getLogger("eda.worker")
ACK_INTERVAL = 0.005  # seconds a busy worker may hold the acks of finished events (see flush_acks)


def mismatch(event_type: str, routed: str) -> str:
    """The reason an event published under another type's routing key is refused."""
    return f"event type {clip(event_type)} does not match the routing key {clip(routed)} it was published with"


class Delivery:
    """A message taken from the broker, with the event decoded from it and where it came from."""

    __slots__ = ("message", "consumer", "event", "session")

    def __init__(self, message, consumer, event, session):
        self.message, self.consumer, self.event, self.session = message, consumer, event, session

    @property
    def worker(self):
        """The worker instance the delivery is for."""
        return self.consumer.worker

    @property
    def queue(self) -> str:
        """The queue it was delivered from."""
        return self.consumer.queue_name

    @property
    def origin(self) -> tuple[str, str]:
        """The exchange and routing key it was first published with (a retried or replayed copy keeps them)."""
        return failures.origin(self.message.headers, self.message.delivery_info)

    @property
    def attempt(self) -> int:
        """Which attempt at the event this delivery is: 1 for the first."""
        return failures.retry_count(self.message.headers) + 1


class Outcome:
    """What handling a delivery gave: reactions to publish and a request's reply, or the error it raised."""

    __slots__ = ("delivery", "reactions", "error", "seconds", "reply")

    def __init__(self, delivery, reactions, error, seconds, reply=None):
        self.delivery, self.reactions, self.error, self.seconds = delivery, reactions, error, seconds
        self.reply = reply  # (event, body) of the reply the handler gave a request, or None


class WorkerConsumer:
    """Feeds one worker's handlers from its queue, never more than ``concurrency`` at once."""

    ordered = False  # a worker with ordered_by is consumed by eda.runtime.partitions.PartitionedConsumer

    def __init__(self, worker: Worker, runner):
        self.worker = worker
        self.runner = runner
        self.clock = runner.clock  # monotonic seconds of pauses (and of an ordered worker's retries)
        self.asynchronous = is_async(worker)
        self.concurrency = 1 if worker.inline and not self.asynchronous else worker.settings.concurrency
        self.accepted = frozenset(worker.handlers)
        # Its middleware, composed once: process-wide (the runner's) outside, the worker's own inside.
        self.chains = Chains(worker, runner.middleware, self.asynchronous)
        self.handling = self.chains.handle  # None: the handler is called directly
        # Only an inline worker runs handlers on the I/O thread: any other handler may wait on the
        # network, and the I/O thread must keep serving heartbeats, confirms and acks meanwhile.
        # Coroutine handlers run as tasks on the worker's own event loop (eda.runtime.aio).
        self.style = "async" if self.asynchronous else "inline" if worker.inline else "threads"
        if self.asynchronous:
            self.pool = HandlerLoop(f"eda-{worker.name}-loop", self._run_on_loop)
        else:
            self.pool = None if worker.inline else \
                HandlerThreads(self.concurrency, f"eda-{worker.name}", self._run_in_pool)
        # Deliveries handed to the handlers at once: for threads, three times as many again as there are
        # threads wait in their queue, so a thread goes on to the next without waiting for the I/O
        # thread's turn, and each turn hands over more (measured: 2x the concurrency 0.80-0.88x raw
        # kombu for the no-op worker at 4, 4x 1.08-1.16x, 8x no better; benchmarks/PROFILE.md). Still
        # ``concurrency`` handlers run at once; those waiting are given back on pause or stop.
        self.window = 4 * self.concurrency if isinstance(self.pool, HandlerThreads) else self.concurrency
        self.in_flight = 0
        self.backlog = deque()  # delivered but not started: given back to the broker on pause or stop
        self.starting = []  # started this turn, handed to the handlers at its end (hand_over)
        self.consumer = None
        self.session = None
        self.queue_name = ""
        self.paused_until = None
        self.stopped = False
        self.next_ack_flush = 0.0
        settings = worker.settings
        # Workers without idempotency of their own get a record of the events they processed (in
        # SQLite under EDA_STATE_DIR, or in EDA_DATABASE_URL's PostgreSQL, shared by every instance).
        self.processed = open_store(settings, worker.name) if worker.record_processed else None
        self.unrecorded = set()  # processed this turn of the I/O loop; committed at its end, in one go
        self.duplicates = Duplicates() if self.processed is not None else None
        self.scheduling = None  # eda.outbox.scheduling.Scheduling, made when a handler first delays a reaction
        self._scheduling_lock = threading.Lock()

    def start(self, connection, topology, session) -> None:
        """Declare the worker's topology on a fresh channel and start consuming."""
        self.session = session
        self.in_flight = 0  # handlers of a lost session still run, but their deliveries are gone
        self.starting = []  # admitted in the lost session's last turn: the broker redelivers them
        channel = connection.channel()
        queue = topology.declare_worker(channel, self.worker.name, self.accepted)
        self.queue_name = queue.name
        prefetch, tag_prefix = self.worker.settings.effective_prefetch, f"eda-{self.worker.name}-"
        # py-amqp directly: no kombu Message per delivery, acks batched
        self.consumer = AmqpConsumer(channel, queue.name, prefetch, tag_prefix, self.on_message,
                                     before_ack=self.flush_records)
        self.consumer.consume()
        self.backlog.clear()
        if self.duplicates is not None:
            self.duplicates.clear()
        self.paused_until = None

    def on_message(self, message) -> None:
        """Called on the I/O thread for each delivery. Whatever the message holds, it is handled or
        failed: an error here fails this delivery (dead-lettered with the reason), never the worker."""
        try:
            event = self._event_of(message)
        except Exception as exc:  # noqa: BLE001 - a poison message: dead-letter it at once, go on
            self.runner.settlement.fail(Delivery(message, self, None, self.session), exc)
            return
        self.check_and_admit(Delivery(message, self, event, self.session))

    def check_and_admit(self, delivery: Delivery) -> None:
        """Admit a delivery, unless the record says its event was processed (or a copy is in flight).
        A record that cannot be read fails the delivery: a transient failure, retried."""
        try:
            if self.duplicates is not None and self._seen(delivery):
                return
        except Exception as exc:  # noqa: BLE001 - the record could not be read: a transient failure
            self.runner.settlement.fail(delivery, exc)
            return
        self.admit(delivery)

    def _event_of(self, message):
        """The event a delivery holds, checked against the contract and the route it took."""
        undecodable = getattr(message, "undecodable", None)
        if undecodable:
            raise ContractError(f"message refused: {undecodable}")
        routed = failures.routed_as(message.headers, message.delivery_info)
        try:
            event = decode_message(message.body, message.content_type, message.headers, self.accepted)
        except ContractError:
            # A type this worker does not take, under another type's routing key: the mismatch is the reason,
            # as every worker it reached says (not "not handled here" from some and a mismatch from others).
            _, claimed = claimed_identity(message.body, message.properties, message.headers)
            if routed is not None and isinstance(claimed, str) and claimed != routed:
                raise ContractError(mismatch(claimed, routed)) from None
            raise
        except Exception as exc:  # noqa: BLE001 - decoding is deterministic: retrying cannot help
            raise ContractError(f"body cannot be decoded: {type(exc).__name__}: {clip(str(exc), 200)}") from exc
        if routed is not None and routed != event.type:
            # A publisher allowed to send only one routing key must not pass for another event type.
            raise ContractError(mismatch(event.type, routed))
        return event

    def _seen(self, delivery: Delivery) -> bool:
        """True when the delivery is a copy of an event processed or in flight (then it is dealt with)."""
        event_id = delivery.event.id
        if event_id in self.duplicates:
            return self.duplicates.arrived(delivery)  # waits for the copy in flight
        if event_id in self.unrecorded or self.processed.was_processed(event_id):
            self.runner.settlement.skip_processed(delivery)
            return True
        return self.duplicates.arrived(delivery)

    def admit(self, delivery: Delivery) -> None:
        """Start a delivery now, or keep it in the backlog; while stopping, give it back."""
        if self.stopped:
            self.runner.settlement.give_back(delivery)  # arrived while stopping: not started, so given back
        elif self.in_flight < self.window and self.paused_until is None:
            self._start(delivery)
        else:
            self.backlog.append(delivery)

    def resolved(self, delivery: Delivery, processed: bool) -> None:
        """A delivery reached its end (acked when ``processed``, else moved or given back): copies of
        its event that waited are acked without handling, or the next one goes on."""
        if self.duplicates is None or delivery.event is None:
            return
        skipped, successor = self.duplicates.resolved(delivery, processed)
        for copy in skipped:
            self.runner.settlement.skip_processed(copy)
        if successor is not None:
            self.admit(successor)

    def _start(self, delivery: Delivery) -> None:
        self.in_flight += 1
        if self.pool is None:
            self.runner.settlement.complete(self._execute(delivery))  # concurrency 1: no thread hand-off
        else:
            self.starting.append(delivery)  # handed over at the end of the I/O loop's turn (hand_over)

    def hand_over(self) -> None:
        """Give the turn's started deliveries to the handler threads or the event loop, once the turn's
        I/O is done: a handler woken earlier would take the GIL at each of the I/O thread's socket reads
        (benchmarks/PROFILE.md)."""
        if self.starting:
            starting, self.starting = self.starting, []
            for delivery in starting:
                self.pool.submit(delivery)

    def _run_in_pool(self, delivery: Delivery) -> None:
        if delivery.session is not self.runner.session:
            return  # queued before its connection was lost: the broker redelivers it, do not run it
        self.runner.hand_back(self._execute(delivery))

    def _execute(self, delivery: Delivery) -> Outcome:
        started = time.perf_counter()
        try:
            replies.check_expiry(delivery.message.headers, self.runner.wall_clock())  # checked when it starts
            ctx = dispatch(self.worker, delivery.event, self.handling)
            if ctx.scheduled:  # delayed reactions: in the outbox before the ack, once whatever the redeliveries
                self.scheduled_reactions().write(ctx.scheduled)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - any handler error (sys.exit too) is the event's failure
            return Outcome(delivery, (), exc, time.perf_counter() - started)
        return Outcome(delivery, ctx.reactions, None, time.perf_counter() - started, ctx.answer)

    async def _run_on_loop(self, delivery: Delivery) -> None:
        """``_execute`` of a coroutine handler, on the worker's event loop."""
        if delivery.session is not self.runner.session:
            return  # started before its connection was lost: the broker redelivers it, do not run it
        started = time.perf_counter()
        try:
            replies.check_expiry(delivery.message.headers, self.runner.wall_clock())
            ctx = await dispatch_async(self.worker, delivery.event, self.handling)
            if ctx.scheduled:  # the outbox opened (its table made, on first use) and written off the loop
                await asyncio.get_running_loop().run_in_executor(None, self._write_scheduled, ctx.scheduled)
        except BaseException as exc:  # noqa: BLE001 - any handler error (CancelledError too) is the event's failure
            outcome = Outcome(delivery, (), exc, time.perf_counter() - started)
        else:
            outcome = Outcome(delivery, ctx.reactions, None, time.perf_counter() - started, ctx.answer)
        # The I/O thread takes the outcomes of every task finishing in this turn of the event loop at
        # once: a wake-up per outcome woke it at once (the pipe write lets go of the GIL), so that the
        # two threads took turns at the GIL for each outcome (issue 20).
        self.runner.hand_back(outcome, wake=False)
        self.pool.outcome_ready(self.runner.wake_for_outcomes)

    def _write_scheduled(self, scheduled) -> None:
        self.scheduled_reactions().write(scheduled)

    def scheduled_reactions(self):
        """The worker's outbox (its database's: EDA_DATABASE_URL, else SQLite under EDA_STATE_DIR) that
        delayed reactions wait in until ``eda outbox relay`` publishes them; opened on first use."""
        with self._scheduling_lock:
            if self.scheduling is None:
                from eda.outbox.scheduling import Scheduling

                self.scheduling = Scheduling(self.worker.settings, self.worker.source)
            return self.scheduling

    def setup(self) -> None:
        """The worker's ``setup``; an async one runs on the worker's event loop."""
        self.pool.call(self.worker.setup) if self.asynchronous else self.worker.setup()

    def teardown(self) -> None:
        """The worker's ``teardown`` (on its loop for an async one), then the loop ends."""
        if self.asynchronous:
            try:
                self.pool.call(self.worker.teardown)
            finally:
                self.pool.shutdown()
        else:
            self.worker.teardown()

    def record(self, delivery: Delivery) -> None:
        """The event's work is done and its reactions confirmed: remember it, so that a redelivery is
        recognised. A crash before the record is committed gives a duplicate, never a lost reaction."""
        if self.processed is not None:
            self.unrecorded.add(delivery.event.id)

    def flush_records(self) -> None:
        """Commit the turn's processed event ids in one transaction (one commit, not one per event),
        before the turn's acks go out."""
        if self.unrecorded:
            try:
                self.processed.record_processed(*self.unrecorded)
            except StoreUnavailable as exc:  # the database is away: keep the ids for the next turn
                log.warning("processed-event record not written yet: %s", exc, extra={"worker": self.worker.name})
                return  # the acks still go: the work is done; the ids are remembered in this process
            self.unrecorded = set()

    def finished(self, delivery: Delivery) -> None:
        """A handler finished: its slot is free (``pump`` fills it)."""
        if delivery.session is self.session:
            self.in_flight -= 1

    def pump(self) -> None:
        """Start waiting deliveries while slots are free; the I/O loop calls it after settling outcomes."""
        while self.backlog and self.in_flight < self.window and self.paused_until is None:
            self._start(self.backlog.popleft())

    def pause(self, seconds: float) -> None:
        """Stop taking deliveries for a while (circuit open) and give back what has not started."""
        first = self.paused_until is None
        # Paused before the cancel: deliveries that arrive while it completes wait in the backlog.
        self.paused_until = self.clock() + seconds
        if first:
            self.consumer.cancel()
            self.give_back()

    def resume_if_due(self) -> bool:
        if self.paused_until is not None and self.clock() >= self.paused_until:
            self.paused_until = None
            self.consumer.consume()
            return True
        return False

    def stop(self) -> None:
        """Stop taking deliveries and give back the unstarted ones; running handlers go on."""
        self.stopped = True
        if self.consumer is not None and self.paused_until is None:
            try:
                self.consumer.cancel()
            except Exception:  # a dead channel has no consumer to cancel
                pass
        self.paused_until = None
        self.give_back()

    def give_back(self) -> None:
        """Give back what has not started: the backlog, and what waits in the handler threads' queue."""
        while self.backlog:
            self.runner.settlement.give_back(self.backlog.popleft())
        for delivery in self.take_back():
            self.runner.settlement.give_back(delivery)

    def take_back(self) -> list:
        """The deliveries handed over but not started (this turn's, and those waiting in the handler
        threads' queue), their slots freed: each is either started or taken back, never both."""
        starting, self.starting = self.starting, []
        unstarted = starting + (self.pool.recall() if isinstance(self.pool, HandlerThreads) else [])
        for delivery in unstarted:
            self.finished(delivery)
        return unstarted

    def flush_acks(self, final: bool = False) -> None:
        """Send the acks held since the last turn of the I/O loop (amqp transport only). A worker with
        every slot taken turns its loop for every few outcomes: its acks go out at most every
        ACK_INTERVAL seconds (or every ``flush_at`` acks), not with a socket write per turn. ``final``:
        every held ack now (the worker stops)."""
        acks = getattr(self.consumer, "acks", None)
        if acks is not None and acks.done:
            now = time.monotonic()
            if final or self.in_flight < self.window or now >= self.next_ack_flush:
                self.next_ack_flush = now + ACK_INTERVAL
                acks.flush(force=final)

    @property
    def consumed_from(self) -> str:
        """The queue the "consuming" line names."""
        return self.queue_name

    @property
    def idle(self) -> bool:
        return self.in_flight == 0

    def retried(self, delivery: Delivery) -> int:
        """Attempts retried in place (an ordered worker's); here retries are copies counted in a header."""
        return 0

    def wake_in(self) -> float | None:
        """Seconds until this consumer has something due (an ordered worker's retry), or None."""
        return None

    def close(self) -> None:
        if self.pool is not None and not self.asynchronous:  # the loop ends after the async teardown
            self.pool.shutdown()
        if self.processed is not None:
            self.flush_records()
            self.processed.close()
        if self.scheduling is not None:
            self.scheduling.close()
