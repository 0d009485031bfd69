"""Hooks: no-op callbacks the runtime calls at each step of a worker's life.

Metrics, systemd notification and the like subclass ``Hooks`` and override what they need, instead
of being written into the runtime. Every hook runs on the I/O thread and must be quick.
"""

OK, RETRIED, DEAD_LETTERED, REJECTED, REQUEUED = "ok", "retried", "dead-lettered", "rejected", "requeued"


class Hooks:
    def on_ready(self, runner) -> None:
        """Connected and consuming (again, after a reconnect)."""

    def on_connection_lost(self, runner, reason: str) -> None:
        """The broker connection is gone; the runner is reconnecting."""

    def on_tick(self, runner) -> None:
        """The I/O loop is alive: called at least once a second."""

    def on_stopping(self, runner) -> None:
        """A graceful stop began."""

    def on_outcome(self, worker: str, event_type: str | None, outcome: str, seconds: float | None) -> None:
        """An event was settled: ``ok`` (acked), ``retried``, ``dead-lettered``, ``rejected`` (contract
        failure, dead-lettered) or ``requeued`` (circuit open)."""

    def on_published(self, worker: str, event_type: str) -> None:
        """A reaction was confirmed by the broker."""
