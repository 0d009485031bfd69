"""Driving eda's ``Runner`` on the in-memory broker until everything is settled, its clock moved as time would pass.

``Driver.settle`` turns the runner's I/O loop (``Runner.turn``) until nothing is left to do now: no
frame unread on any connection, no handler running or unsettled, no confirm awaited, nothing due on
the clock. Then it moves the broker's clock (which the runner's consumers read too) on to the next
thing due, and goes on: a TTL expiry (a retry coming back from its queue) or an ordered worker's
retry in place, so that retries follow their delays exactly without waiting; a pause (an open
circuit, a move the broker refused) only when told to let time pass up to a moment (``until``),
since a pause's cause (a circuit breaker's own clock) does not move with the broker's.
"""

import time


class Driver:
    """Settles a runner on its in-memory broker; ``before_each`` runs before each look (the caller's reads)."""

    def __init__(self, runner, broker, timeout: float, before_each=None):
        self.runner, self.broker, self.timeout = runner, broker, timeout
        self.before_each = before_each or (lambda: None)

    def settle(self, *, retries: bool = True, until: float | None = None) -> None:
        """Run until nothing is left to do now, moving the clock to what is due next (see the module
        docstring); ``retries=False`` leaves failed events waiting, ``until`` lets time pass to then."""
        deadline = time.monotonic() + self.timeout
        while True:
            self._drain(deadline)
            due = self._next_due(retries, until)
            if due is None:
                break
            self.broker.advance(due)
        if until is not None:
            self.broker.advance(until)
            self._drain(deadline)

    def _drain(self, deadline: float) -> None:
        while True:
            self.before_each()
            if self.quiet():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the bus did not settle within {self.timeout}s: a handler still runs, or "
                                     f"events keep causing events (TestBus(..., timeout=) for a longer wait)")
            # At most a second: the turn returns as soon as the broker or a handler has something.
            self.runner.turn(timeout=0 if self._due_now() else 1.0)

    def quiet(self) -> bool:
        """Nothing delivered unread, no handler running or unsettled, no confirm awaited, nothing due now."""
        return self.broker.idle and self.runner.drained() and not self._due_now()

    def _due_now(self) -> bool:
        """A consumer has something due on the clock: a pause's end, an ordered worker's retry."""
        now = self.broker.clock()
        return any(c.wake_in() == 0 or (c.paused_until is not None and now >= c.paused_until)
                   for c in self.runner.consumers)

    def _next_due(self, retries: bool, until: float | None) -> float | None:
        """The clock reading of the next thing due: TTL expiries and ordered workers' retries when
        running retries; pauses too when letting time pass (``until``)."""
        dues = []
        if retries or until is not None:
            dues.append(self.broker.next_expiry())
            dues += [p.due for _, p in self.held() if p.scheduled or until is not None]
        if until is not None:
            dues += [c.paused_until for c in self.runner.consumers]
        dues = [d for d in dues if d is not None and (until is None or d <= until)]
        return min(dues) if dues else None

    def held(self) -> list:
        """(consumer, partition) of ordered workers' events held at their partition's head for a time:
        a retry in place (``partition.scheduled``) or a pause."""
        return [(c, p) for c in self.runner.consumers for p in getattr(c, "partitions", ())
                if p.current is not None and p.due is not None]
