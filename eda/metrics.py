"""Prometheus metrics of a worker process, served with prometheus_client on ``--metrics-port``.

The names are a contract with the Grafana dashboard in deploy/grafana: change them together. The
runtime feeds them through ``MetricsHooks`` on its I/O thread, so each hook is a dict lookup and an
increment on a label child bound once.
"""

import logging

import pybreaker
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    gc_collector,
    platform_collector,
    process_collector,
    start_http_server,
)

from eda.errors import ConfigError
from eda.runtime.hooks import DEAD_LETTERED, OK, REJECTED, REQUEUED, RETRIED, Hooks

log = logging.getLogger("eda.metrics")

OUTCOMES = (OK, RETRIED, DEAD_LETTERED, REJECTED, REQUEUED)
UNKNOWN_TYPE = "unknown"  # an event that could not be decoded has no type
BREAKER_STATES = {pybreaker.STATE_CLOSED: 0, pybreaker.STATE_HALF_OPEN: 1, pybreaker.STATE_OPEN: 2}

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
BREAKER = Gauge("eda_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open.", ["name"],
                registry=REGISTRY)
IN_FLIGHT = Gauge("eda_handlers_in_flight", "Handlers running now.", ["worker"], registry=REGISTRY)
CONNECTED = Gauge("eda_broker_connected", "1 while connected to the broker and consuming, else 0.", ["worker"],
                  registry=REGISTRY)


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


class MetricsHooks(Hooks):
    """Counts what the runtime reports; label children are bound once and cached."""

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
    def serve(cls, port: int, worker_classes, addr: str = "0.0.0.0") -> "MetricsHooks":
        """Start the HTTP server of ``/metrics`` (a daemon thread) and return the hooks to register."""
        try:
            server, _ = start_http_server(port, addr=addr, registry=REGISTRY)
        except OSError as exc:
            raise ConfigError(f"--metrics-port (EDA_METRICS_PORT): cannot listen on {addr}:{port}: "
                              f"{exc.strerror or exc}") from None
        log.info("serving metrics on http://%s:%s/metrics", addr, server.server_address[1],
                 extra={"metrics_port": server.server_address[1]})
        return cls(worker_classes)

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
            IN_FLIGHT.labels(worker=name).set_function(lambda c=consumer: c.in_flight)
            CONNECTED.labels(worker=name).set(1)

    def on_connection_lost(self, runner, reason):
        for name in self._workers:
            CONNECTED.labels(worker=name).set(0)
