"""Prometheus metrics of a worker process, served with prometheus_client's WSGI app on ``--metrics-port``
(and ``--metrics-address``) by a bounded single-thread server (``eda.metrics_server``).

The names are a contract with the Grafana dashboard in deploy/grafana: change them together. The
runtime feeds them through the ``Metrics`` middleware on its I/O thread, so each call is a dict lookup
and an increment on a label child bound once.

Under ``eda worker --processes N`` each worker process counts into files of prometheus_client's
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, a fresh folder the parent made) and the parent alone
serves them, summed (``serve_processes``); the gauges say how their processes' values combine.
"""

import errno
import logging
import os
import socket
import threading
import time

import pybreaker
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    gc_collector,
    platform_collector,
    make_wsgi_app,
    multiprocess,
    process_collector,
    values,
)

from eda.errors import ConfigError
from eda.metrics_server import MetricsServer
from eda.middleware import DEAD_LETTERED, OK, REJECTED, REQUEUED, RETRIED, Middleware

log = logging.getLogger("eda.metrics")

OUTCOMES = (OK, RETRIED, DEAD_LETTERED, REJECTED, REQUEUED)
UNKNOWN_TYPE = "unknown"  # no type, or one the worker does not take (eda.runtime.settlement)
BREAKER_STATES = {pybreaker.STATE_CLOSED: 0, pybreaker.STATE_HALF_OPEN: 1, pybreaker.STATE_OPEN: 2}

# Set by the parent of `eda worker --processes N` for its worker processes: it serves their metrics.
SERVED_BY_PARENT = "EDA_METRICS_SERVED_BY_PARENT"
MULTIPROCESS = values.ValueClass is not values.MutexValue  # decided at prometheus_client's import (PROMETHEUS_MULTIPROC_DIR)

disable_created_metrics()  # no *_created series: they double the counters' lines and nothing here reads them
# One registry per process, with the process and Python collectors beside eda's own metrics.
REGISTRY = CollectorRegistry()
for _collector in (process_collector.ProcessCollector, platform_collector.PlatformCollector,
                   gc_collector.GCCollector):
    _collector(registry=REGISTRY)

CONSUMED = Counter("eda_events_consumed", "Events settled by a worker, by outcome.",
                   ["worker", "event_type", "outcome"], registry=REGISTRY)
DURATION = Histogram("eda_handler_duration_seconds", "Time a handler took for an event it handled.",
                     ["worker", "event_type"], registry=REGISTRY,
                     buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
PUBLISHED = Counter("eda_events_published", "Reactions published by a worker and confirmed by the broker.",
                    ["worker", "event_type"], registry=REGISTRY)
RETRIES = Counter("eda_retries", "Failed events sent to a retry queue.", ["worker"], registry=REGISTRY)
DEAD_LETTERS = Counter("eda_dead_letters", "Events moved to the worker's DLQ (contract failures included).",
                       ["worker"], registry=REGISTRY)


class LiveGauge(Gauge):
    """A gauge whose value a function gives (``set_function``). In multiprocess mode, where only written
    values reach the parent, a thread of the process writes each function's value every second."""

    _functions: dict = {}  # gauge (a label child) -> its function
    _refresher = None

    def set_function(self, f) -> None:
        if not MULTIPROCESS:
            return super().set_function(f)
        LiveGauge._functions[self] = f
        self.set(f())
        if LiveGauge._refresher is None:
            LiveGauge._refresher = threading.Thread(target=LiveGauge._refresh, name="eda-metrics-gauges", daemon=True)
            LiveGauge._refresher.start()

    @staticmethod
    def _refresh() -> None:
        while True:
            time.sleep(1.0)
            for gauge, f in list(LiveGauge._functions.items()):
                try:
                    gauge.set(f())
                except Exception:  # noqa: BLE001 - a gauge is never a reason to stop counting
                    log.debug("metrics: cannot read a gauge's value", exc_info=True)


# How each gauge combines over the processes of `eda worker --processes N` (ignored in one process):
# the worst breaker state, the handlers of all, connected only while every process is.
BREAKER = Gauge("eda_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open.", ["name"],
                registry=REGISTRY, multiprocess_mode="livemax")
IN_FLIGHT = LiveGauge("eda_handlers_in_flight", "Handlers running now.", ["worker"], registry=REGISTRY,
                      multiprocess_mode="livesum")
CONNECTED = Gauge("eda_broker_connected", "1 while connected to the broker and consuming, else 0.", ["worker"],
                  registry=REGISTRY, multiprocess_mode="livemin")
# The outbox relay's (eda.outbox.relay): pending rows and their oldest's age as last counted (every few seconds).
# On the registry only in the relay's process (``serve_outbox``): a worker's endpoint would show them at 0.
OUTBOX_PENDING = Gauge("eda_outbox_pending", "Outbox rows not yet published.", registry=None,
                       multiprocess_mode="livemax")
OUTBOX_OLDEST = LiveGauge("eda_outbox_oldest_pending_seconds", "Age of the oldest pending outbox row (0: none).",
                          registry=None, multiprocess_mode="livemax")
OUTBOX_PUBLISHED = Counter("eda_outbox_published", "Outbox rows this relay published and the broker confirmed.",
                           registry=None)


def serve_outbox(port: int, addr: str) -> "MetricsServer":
    """The relay's metrics endpoint: the outbox's metrics with the process's."""
    for metric in (OUTBOX_PENDING, OUTBOX_OLDEST, OUTBOX_PUBLISHED):
        try:
            REGISTRY.register(metric)
        except ValueError:  # registered already: a second relay in this process (tests)
            pass
    server = start_server(port, addr)
    outbox_pending(0, None)
    return server


def outbox_pending(count: int, age: float | None) -> None:
    """Record a count of pending outbox rows; the oldest one's age keeps growing until the next count."""
    OUTBOX_PENDING.set(count)
    added = time.time() - age if age is not None else None
    OUTBOX_OLDEST.set_function(lambda: max(0.0, time.time() - added) if added is not None else 0.0)


def start_server(port: int, addr: str = "0.0.0.0", registry: CollectorRegistry = REGISTRY) -> "MetricsServer":
    """Serve ``registry`` at http://addr:port/metrics; a port or address that cannot be had is a ConfigError.
    In a worker process of `eda worker --processes N` nothing is served: the parent serves for all."""
    if os.environ.get(SERVED_BY_PARENT) and MULTIPROCESS and registry is REGISTRY:
        return NotServed()
    try:
        server = MetricsServer(make_wsgi_app(registry), addr, port).start()
    except OSError as exc:  # socket.gaierror for a host name that does not resolve is one too
        # The setting to change: the address where it is none of this host's, else the port (taken, privileged).
        wrong = ("--metrics-address (EDA_METRICS_ADDRESS)" if isinstance(exc, socket.gaierror)
                 or exc.errno == errno.EADDRNOTAVAIL else "--metrics-port (EDA_METRICS_PORT)")
        raise ConfigError(f"{wrong}: cannot listen on {addr}:{port}: {exc.strerror or exc}") from None
    host, bound = server.server_address[:2]
    log.info("serving metrics on http://%s:%s/metrics", f"[{host}]" if ":" in host else host, bound,
             extra={"metrics_port": bound, "metrics_address": host})
    return server


def serve_processes(port: int, addr: str, directory) -> "MetricsServer":
    """Serve the metrics that worker processes write under ``directory``, summed over the processes
    (prometheus_client's ``MultiProcessCollector``); the parent of `eda worker --processes N` calls it."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))
    server = start_server(port, addr, registry)
    # The parent's own, beside them (in the parent prometheus_client counts in memory, as usual).
    server.processes = Gauge("eda_worker_processes", "Worker processes running under this parent.",
                             registry=registry)
    server.restarts = Counter("eda_worker_process_restarts", "Worker processes that died and were started again.",
                              registry=registry)
    return server


def process_exited(pid: int, directory) -> None:
    """Forget the live gauges of a worker process that exited (its counters stay in the sums)."""
    multiprocess.mark_process_dead(pid, str(directory))


class NotServed:
    """Stands in for the server in a worker process whose parent serves the metrics."""

    def close(self) -> None:
        pass


class BreakerMetrics(pybreaker.CircuitBreakerListener):
    """Keeps ``eda_breaker_state{name}`` at the breaker's state."""

    def __init__(self, breaker: pybreaker.CircuitBreaker):
        self.gauge = BREAKER.labels(name=breaker.name or "breaker")
        self.state_change(breaker, None, breaker.state)

    def state_change(self, cb, old_state, new_state):
        self.gauge.set(BREAKER_STATES.get(new_state.name, 0))


def watch_breaker(breaker: pybreaker.CircuitBreaker) -> None:
    """Export ``breaker``'s state (costs nothing when no metrics server runs)."""
    breaker.add_listener(BreakerMetrics(breaker))


class Metrics(Middleware):
    """Counts what the runtime reports (a process-wide middleware that only observes); label children
    are bound once and cached."""

    def __init__(self, worker_classes):
        self._outcomes = {}
        self._published = {}
        self._workers = [cls.name for cls in worker_classes]
        for cls in worker_classes:
            # Bind the expected series up front: a dashboard shows 0 rather than no data.
            for event_type in cls.handlers:
                for outcome in OUTCOMES:
                    self._bind_outcome(cls.name, event_type, outcome)
            self._bind_outcome(cls.name, UNKNOWN_TYPE, REJECTED)
            CONNECTED.labels(worker=cls.name).set(0)
            IN_FLIGHT.labels(worker=cls.name).set(0)

    @classmethod
    def serve(cls, port: int, worker_classes, addr: str = "0.0.0.0") -> "Metrics":
        """Start the HTTP server of ``/metrics`` (a daemon thread) and return the middleware to run."""
        server = start_server(port, addr)
        metrics = cls(worker_classes)
        metrics.server = server
        return metrics

    def _bind_outcome(self, worker, event_type, outcome):
        extra = {RETRIED: RETRIES, DEAD_LETTERED: DEAD_LETTERS, REJECTED: DEAD_LETTERS}.get(outcome)
        bound = (CONSUMED.labels(worker=worker, event_type=event_type, outcome=outcome),
                 DURATION.labels(worker=worker, event_type=event_type),
                 extra.labels(worker=worker) if extra is not None else None)
        self._outcomes[(worker, event_type, outcome)] = bound
        return bound

    def on_outcome(self, worker, event_type, outcome, seconds):
        event_type = event_type or UNKNOWN_TYPE
        key = (worker, event_type, outcome)
        consumed, duration, extra = self._outcomes.get(key) or self._bind_outcome(*key)
        consumed.inc()
        if seconds is not None:
            duration.observe(seconds)
        if extra is not None:
            extra.inc()

    def on_published(self, worker, event_type):
        child = self._published.get((worker, event_type))
        if child is None:
            child = self._published[(worker, event_type)] = PUBLISHED.labels(worker=worker, event_type=event_type)
        child.inc()

    def on_ready(self, runner):
        for consumer in runner.consumers:
            name = consumer.worker.name
            # Started deliveries beyond the concurrency wait in the handler threads' queue: not running.
            IN_FLIGHT.labels(worker=name).set_function(lambda c=consumer: min(c.in_flight, c.concurrency))
            CONNECTED.labels(worker=name).set(1)

    def on_connection_lost(self, runner, reason):
        for name in self._workers:
            CONNECTED.labels(worker=name).set(0)
