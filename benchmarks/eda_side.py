"""eda's side of the throughput benchmarks: its publisher, and its runtime running workers in process.

Workers run in ``eda.runtime.runner.Runner`` on a thread of this process with the logging `eda worker`
sets up (JSON at INFO), written to /dev/null; a middleware counts settled events, so the clock stops
when the last of ``n`` events is acked.
"""

import logging
import os
import threading
import time

from benchmarks.bench import Bench
from eda import logs
from eda.connection import open_connection
from eda.publishing.publisher import Publisher
from eda.worker import Worker, handles
from eda.middleware import Middleware
from eda.runtime.runner import Runner


class NoOp(Worker):
    """A worker whose handler does nothing: what is left is eda's own cost per event."""

    name = "noop"

    @handles("order.placed")
    def ignore(self, event, ctx):
        pass


class InlineNoOp(NoOp):
    """The no-op worker run as a worker that never waits on the network runs: on the I/O thread."""

    inline = True


class Counter(Middleware):
    """Times a runner from consuming to the ``n``-th settled event."""

    def __init__(self, n: int):
        self.n, self.count = n, 0
        self.started = self.ended = None
        self.done = threading.Event()
        self.outcomes = {}

    def on_ready(self, runner):
        if self.started is None:
            self.started = time.perf_counter()

    def on_outcome(self, worker, event_type, outcome, seconds):
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.count += 1
        if self.count == self.n:
            self.ended = time.perf_counter()
            self.done.set()


def worker_logs(settings) -> None:
    """The logging `eda worker` configures, with its lines written to /dev/null instead of stdout."""
    logs.configure(settings.log_format, settings.log_level)
    logging.getLogger().handlers[0].setStream(open(os.devnull, "w"))


def run_worker(settings, worker_class, n: int, timeout: float = 300.0) -> float:
    """Run one worker until it settled ``n`` events; return events per second."""
    counter = Counter(n)
    runner = Runner([worker_class], settings, middleware=[counter])
    thread = threading.Thread(target=runner.run, name="bench-runner", daemon=True)
    thread.start()
    try:
        if not counter.done.wait(timeout):
            raise TimeoutError(f"{worker_class.name} settled {counter.count} of {n} events in {timeout}s")
    finally:
        runner.stop()
        thread.join(30)
    if counter.outcomes.get("ok") != n:
        raise RuntimeError(f"{worker_class.name}: outcomes {counter.outcomes}, expected {n} ok")
    return n / (counter.ended - counter.started)


def consume(bench: Bench, queue_events, n: int, concurrency: int) -> float:
    """The no-op worker consuming ``n`` pre-loaded events at ``concurrency``."""
    settings = bench.settings.with_(concurrency=concurrency)
    worker_logs(settings)
    queue_events(bench.worker_queue(NoOp.name, NoOp.handlers))
    # At concurrency 1 a handler that never waits runs inline (no thread hand-off), as eda's own do.
    return run_worker(settings, InlineNoOp if concurrency == 1 else NoOp, n)


def react(bench: Bench, queue_events, n: int) -> float:
    """The real shipping worker at its default settings, reacting to ``n`` pre-loaded events."""
    from eda_shop.workers.shipping import Shipping

    worker_logs(bench.settings)
    queue_events(bench.worker_queue(Shipping.name, Shipping.handlers))
    return run_worker(bench.settings, Shipping, n)


def publish(bench: Bench, events) -> float:
    """Bulk publishing with pipelined confirms: what `eda publish --file` does once its input is valid."""
    conn = open_connection(bench.settings)
    try:
        publisher = Publisher(conn)
        started = time.perf_counter()
        publisher.publish_events(events, bench.topology.events.name)
        return len(events) / (time.perf_counter() - started)
    finally:
        conn.release()
