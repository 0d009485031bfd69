"""The worker process: one thread owns the broker connection, handlers run beside it.

The I/O thread (the main thread) drains the connection, decodes deliveries, publishes reactions and
moves failed events, and acks. Handler threads never touch the connection (py-amqp is not
thread-safe): they put their outcome on a queue and wake the I/O thread through a pipe. An event is
acked only after its reactions, or its copy in a retry or dead-letter queue, are confirmed.
"""

import contextlib
import gc
import logging
import os
import queue
import select
import signal
import threading
import time

from eda import frame_reader, wakeup
from eda.connection import connected_address, describe_connection_error, open_connection
from eda.errors import BrokerUnavailable, ConfigError, EdaError, SetupFailed
from eda.logs import cut
from eda.middleware import checked, from_settings, unique
from eda.topology import Topology
from eda.wakeup import WakeUp, on_stop_signals
from eda.publishing.publisher import Publisher
from eda.runtime.aio import DrivenLoop
from eda.runtime.consumer import Outcome, WorkerConsumer
from eda.runtime.partitions import PartitionedConsumer
from eda.runtime.observing import tell
from eda.runtime.settlement import Settlement
from eda.worker_checks import check as check_workers

log = logging.getLogger("eda.worker")

EXIT_OK, EXIT_FORCED, EXIT_BROKER_LOST = 0, 1, 3


class Runner:
    """Runs one or more named workers on one connection until stopped. ``middleware`` (eda.Middleware
    instances, the first outermost) is process-wide: it wraps every worker's own, after that of
    ``EDA_MIDDLEWARE``."""

    def __init__(self, worker_classes, settings, *, connect=open_connection, middleware=(), clock=time.monotonic,
                 wall_clock=time.time):
        self.settings = settings
        self.middleware = [*checked(middleware, "Runner"), *from_settings(settings)]
        self.connect = connect
        # Seconds of circuit pauses and of ordered workers' retries in place (eda.testing's bus runs a
        # clock of its own, which it moves on instead of waiting).
        self.clock = clock
        self.wall_clock = wall_clock  # seconds since the epoch: what an event's eda-expires-at is compared with
        self.topology = Topology.from_settings(settings)
        worker_classes = list(worker_classes)
        check_workers(worker_classes, settings)  # a definition error is a start error, before anything consumes
        self.workers = [cls(settings) for cls in worker_classes]
        # Told of the runner's life (on_ready, on_tick...): every middleware, process-wide and the workers' own.
        self.observers = unique([*self.middleware, *(m for w in self.workers for m in checked(
            w.middleware, f"worker {w.name!r}"))])
        self.settlement = Settlement(self)
        self.consumers = [(PartitionedConsumer if w.ordered_by else WorkerConsumer)(w, self) for w in self.workers]
        self.connection = None
        self.publisher = None
        self.session = None  # a new object per connection: outcomes of a lost one are dropped
        self.session_errors = ()  # errors that end the session (connection and channel errors), not an event
        self._outcomes = queue.SimpleQueue()
        # Handler threads and signals wake the I/O thread; closed when the Runner is collected, or by ``release``.
        self._wakeup = WakeUp()
        self._stopping = False
        self._deadline = None
        self._signals = 0
        self._owns_process = False  # run on the main thread: the process is the Runner's (signals, exit)
        self._next_heartbeat = 0.0
        self._driver = None  # the coroutine handlers' event loop, when this thread runs it (``run``)
        self.ready = threading.Event()  # set once consuming; for systemd notify and in-process use

    # Lifecycle

    def run(self) -> int:
        """Consume until SIGTERM, SIGINT or SIGHUP (or ``stop``); return the process exit code."""
        self._owns_process = owns_process = threading.current_thread() is threading.main_thread()
        if owns_process:
            on_stop_signals(self._on_signal)
            signal.set_wakeup_fd(self._wakeup.write_fd, warn_on_full_buffer=False)
        self._drive_handler_loops()
        self.setup()
        if owns_process:
            # What start-up made (modules, contracts, compiled plans, the workers) lives as long as the
            # process: out of the collector's sight, a full collection no longer walks those ~30,000
            # objects (10-15 ms of CPU here, every event in flight waiting meanwhile; issue 20). Not
            # for a Runner on a thread of a program of its own (eda.running): those objects are its.
            gc.freeze()
        try:
            return self._run_sessions()
        finally:
            self.close()

    def _drive_handler_loops(self) -> None:
        """Coroutine handlers run on an event loop that this thread runs while it waits for the broker:
        a finished handler's outcome is settled, and the next delivery started, without waking another
        thread (measured: a slot stayed empty 1.6 ms between two orders with the loop on a thread of its
        own; benchmarks/PROFILE.md). Not for a caller driving ``turn`` itself (eda.testing's bus may be
        inside a test's own running loop): there each async worker's loop keeps a thread."""
        asynchronous = [c for c in self.consumers if c.asynchronous]
        if asynchronous and self._driver is None:
            self._driver = DrivenLoop()
            for c in asynchronous:
                c.pool.drive(self._driver)

    def setup(self) -> None:
        """Each worker's setup (on its event loop when async), once before the first session. What it
        raises stops the start: a ConfigError as it is (a worker refusing a bad setting), anything else
        as SetupFailed naming the worker, logged at ERROR (with its traceback, unless an eda error)."""
        for c in self.consumers:
            try:
                c.setup()
            except ConfigError:
                raise
            except Exception as exc:
                name = c.worker.name
                # An eda error (a database or broker away) says what is wrong in its message: its
                # traceback would only show eda's frames. Anything else is the worker's bug: its traceback.
                expected = isinstance(exc, EdaError)
                log.error("worker %r could not start: setup raised", name, exc_info=not expected,
                          extra={"worker": name, **({"error": f"{type(exc).__name__}: {exc}"} if expected else {})})
                failed = SetupFailed(f"worker {name!r} could not start: setup raised {type(exc).__name__}: "
                                     f"{cut(' '.join(str(exc).split()))}")
                if isinstance(exc, EdaError):  # StoreUnavailable, BrokerUnavailable...: its own exit code
                    failed.exit_code = exc.exit_code
                raise failed from exc

    def start_session(self) -> None:
        """Connect, declare and consume: one session, without ``run``'s reconnecting (for callers that
        drive the I/O loop themselves with ``turn``, like eda.testing's bus)."""
        self._open_session()

    def release(self) -> None:
        """Close the wake-up pipe now, for a caller that knows no handler thread can hand an outcome back
        any more (eda.testing's bus, after ``close``); else it closes when the Runner is collected."""
        self._wakeup.close()

    def close(self) -> None:
        """End consuming, run each worker's teardown, close the connection."""
        for c in self.consumers:
            c.close()
        for c in self.consumers:
            c.teardown()
        self._close_connection()
        if self._driver is not None:
            self._driver.close()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        """Begin a graceful stop: no new deliveries, running handlers finish within the timeout."""
        if not self._stopping:
            self._stopping = True
            self._deadline = time.monotonic() + self.settings.shutdown_timeout
            tell([m.on_stopping for m in self.observers], self)
        self._wakeup.wake()

    def _on_signal(self, signum, frame):
        self._signals += 1
        if self._signals > 1:
            log.warning("second signal: exiting now; unfinished events will be redelivered")
            logging.shutdown()
            os._exit(EXIT_FORCED)
        log.info("%s received: finishing running handlers (up to %ss)", signal.Signals(signum).name,
                 self.settings.shutdown_timeout)
        self.stop()

    def _run_sessions(self) -> int:
        lost_since = None
        backoff = 0.5
        connected_once = False
        while True:
            try:
                self._open_session()
                connected_once = True
                lost_since, backoff = None, 0.5
                return self._loop()
            except ConfigError:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever ends a session, the worker goes on
                # A channel error (say an exchange deleted under the worker) is survived the same way:
                # a new connection redeclares the topology, and unacked events come back. Anything
                # else escaping the I/O loop is a defect of eda's, logged with its traceback; no
                # message can cause one (each delivery's errors fail that delivery alone).
                if not isinstance(exc, (BrokerUnavailable, *self._connection_errors(), *self._channel_errors())):
                    log.exception("unexpected error in the I/O loop; reconnecting")
                unfinished = not self.drained()
                self._drop_session()
                if self._stopping:  # no reconnecting to finish a stop: what was not acked comes back
                    if unfinished:
                        log.warning("stopping without the broker's connection (%s), with handlers unfinished: "
                                    "their events will be redelivered", self._reason(exc))
                        return EXIT_FORCED
                    return EXIT_OK
                lost_since = lost_since or time.monotonic()
                if time.monotonic() - lost_since > self.settings.reconnect_window:
                    raise BrokerUnavailable(f"the broker stayed unreachable for over "
                                            f"{self.settings.reconnect_window:.0f}s: {self._reason(exc)}") from None
                if connected_once:
                    log.warning("broker connection lost (%s); reconnecting in %.1fs", self._reason(exc), backoff)
                else:  # at start: nothing was lost, the broker is not there (yet)
                    log.warning("%s; trying again in %.1fs", self._reason(exc), backoff)
                tell([m.on_connection_lost for m in self.observers], self, self._reason(exc))
                self._sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _open_session(self) -> None:
        self.connection = self.connect(self.settings)
        self.session = object()
        self.session_errors = (*self.connection.connection_errors, *self.connection.channel_errors)
        self.publisher = Publisher(self.connection)
        for c in self.consumers:
            try:
                c.start(self.connection, self.topology, self.session)
            except self.connection.channel_errors as exc:
                if getattr(exc, "code", None) == 404:  # a cluster node of the queue down: retried, not fatal
                    raise
                raise ConfigError(f"cannot declare the queues of worker {c.worker.name!r}: {exc}") from None
        for c in self.consumers:
            log.info("consuming", extra={"worker": c.worker.name, "queue": c.consumed_from,
                                         "broker": connected_address(self.connection),
                                         "event_types": sorted(c.accepted), "concurrency": c.concurrency,
                                         "inline": c.worker.inline and not c.asynchronous,
                                         "handlers": c.style})
        self.ready.set()
        tell([m.on_ready for m in self.observers], self)

    def _drop_session(self) -> None:
        self.ready.clear()
        self.session = None
        if self.publisher is not None:
            self.publisher.fail_all(BrokerUnavailable("connection lost"))
        self._close_connection(graceful=False)

    def _close_connection(self, graceful: bool = True) -> None:
        if self._driver is not None:
            self._driver.forget("socket")  # before it closes: its number may be reused by the next one
        if self.connection is not None:
            try:
                if graceful:
                    self.connection.release()
                else:
                    # A lost connection: close the socket without the close handshake, which waits for
                    # an answer that a silent peer (found by heartbeats) never sends.
                    self.connection.collect()
            except Exception:  # the connection may already be dead; nothing to clean up then
                pass
            self.connection = None

    def _channel_errors(self) -> tuple:
        return self.connection.channel_errors if self.connection is not None else ()

    def _connection_errors(self) -> tuple:
        return self.connection.connection_errors if self.connection is not None else (OSError,)

    @staticmethod
    def _reason(exc) -> str:
        return str(exc) if isinstance(exc, EdaError) else describe_connection_error(exc)

    # The I/O loop

    def _loop(self) -> int:
        stop_begun = False
        while True:
            if self._stopping:
                if not stop_begun:
                    stop_begun = True
                    for c in self.consumers:
                        c.stop()
                if self.drained():
                    self._flush_held()
                    log.info("stopped: every running handler finished and was acked")
                    return EXIT_OK
                if time.monotonic() > self._deadline:
                    if not self._owns_process:  # on a thread of another program (eda.running): not ours to end
                        log.warning("shutdown timeout: stopping with handlers unfinished; their events return "
                                    "to the broker")
                        return EXIT_FORCED
                    log.warning("shutdown timeout: exiting with handlers unfinished; they will be redelivered")
                    self._flush_held_if_possible()  # the events finished behind a stuck one: not again
                    logging.shutdown()
                    os._exit(EXIT_FORCED)  # pool threads still run user code: do not wait for them
            self.turn()

    def _flush_held(self) -> None:
        """Send every ack still held, before the connection closes. An event can be settled outside a
        turn's flush: the confirm of its reaction read while ``basic.cancel`` waited for its answer at
        the stop. Its held ack would not go out, and the broker would deliver the event again."""
        with self._batched_writes():
            for c in self.consumers:
                c.flush_records()
                c.flush_acks(final=True)

    def _flush_held_if_possible(self) -> None:
        """``_flush_held`` on the way out, where the connection may be gone already."""
        try:
            self._flush_held()
        except Exception as exc:  # noqa: BLE001 - exiting anyway: those events are redelivered
            log.warning("could not send the acks held at the exit (%s); those events will be redelivered",
                        self._reason(exc))

    def turn(self, timeout: float | None = None) -> None:
        """One turn of the I/O loop: wait until the broker or a handler has something (at most a
        second, less when a consumer has something due sooner, or ``timeout``), settle it, start what
        may start, keep the heartbeat."""
        wait = self._wait_timeout()
        self._wait(timeout=wait if timeout is None else min(wait, timeout))
        with self._batched_writes():  # the reactions and acks of the outcomes settled here: one write
            self._settle_outcomes()
            for c in self.consumers:
                if not self._stopping:
                    c.resume_if_due()
                c.pump()
                c.flush_records()
                # This turn's acks, batched: each covers only events whose work is done. While stopping,
                # every one at once, those above a delivery still running too: a stop may end in a
                # forced exit, and an event finished but not acked would be handled again.
                c.flush_acks(final=self._stopping)
        for c in self.consumers:
            c.hand_over()  # last: the handlers run while this thread waits for the next turn
        now = time.monotonic()
        if now >= self._next_heartbeat:
            self.connection.heartbeat_check()
            self._next_heartbeat = now + 1.0
            tell([m.on_tick for m in self.observers], self)

    def _batched_writes(self):
        """Writes held until the block ends, on a plain TCP connection (eda.frame_reader)."""
        reader = frame_reader.reader_of(self.connection.connection)
        return reader.batched_writes() if reader is not None else contextlib.nullcontext()

    def _wait_timeout(self) -> float:
        """At most a second, less when a consumer has something due sooner (an ordered worker's retry)."""
        due = [t for c in self.consumers if (t := c.wake_in()) is not None]
        return min(1.0, *due) if due else 1.0

    def _wait(self, timeout: float) -> None:
        """Block until the broker or a handler thread has something, then take all of it."""
        wakeup.wait(self.connection.connection, self._wakeup, timeout, self._driver)

    def drained(self) -> bool:
        """Nothing running, nothing handed back unsettled, no publish awaiting its confirm."""
        return (all(c.idle for c in self.consumers) and self._outcomes.empty()
                and (self.publisher is None or self.publisher.in_flight == 0))

    def _sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a reconnect backoff), or less when a signal asks the worker to stop. The
        worker is alive meanwhile: observers are ticked each second as by the I/O loop (systemd's
        watchdog must not take a worker waiting to reconnect for a hung one)."""
        deadline = time.monotonic() + seconds
        while not self._stopping and (left := deadline - time.monotonic()) > 0:
            select.select([self._wakeup.read_fd], [], [], min(left, 1.0))
            self._wakeup.clear()  # handler threads finishing: keep waiting
            tell([m.on_tick for m in self.observers], self)

    # Outcomes: ack, publish reactions, or move the event

    def hand_back(self, outcome: Outcome, wake: bool = True) -> None:
        """Called on a handler thread: queue the outcome for the I/O thread. ``wake=False`` leaves the
        wake-up to a later ``wake_for_outcomes`` (an event loop hands back what its tasks finished
        together, then wakes the I/O thread once)."""
        self._outcomes.put(outcome)
        if wake:
            self._wakeup.wake_once()  # one wake-up byte per turn of the I/O loop is enough

    def wake_for_outcomes(self) -> None:
        """Wake the I/O thread for the outcomes handed back without a wake-up (any thread)."""
        self._wakeup.wake_once()

    def _settle_outcomes(self) -> None:
        while True:
            try:
                outcome = self._outcomes.get_nowait()
            except queue.Empty:
                return
            self.settlement.complete(outcome)
