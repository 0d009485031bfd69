"""A circuit breaker that lets guarded calls run concurrently and never hides why a call failed.

pybreaker's ``CircuitBreaker.call`` holds the breaker's lock for the whole guarded call, so it
serialises every gateway call of a worker (danielfm/pybreaker#3): a slow gateway would make
``--concurrency`` useless. Here state changes stay under the lock and the call runs outside it; the
half-open probe still runs alone, so one probe at a time tests a recovering gateway.

A call that ran and failed raises its own exception, also when its failure opened the breaker (the
call that trips it, a failed half-open probe): it reached the gateway, so it is a failed attempt. Only
a call refused without running raises ``CircuitBreakerError``: the worker reads that as "circuit open",
gives the event back and counts no attempt. ``call_async`` keeps these rules for coroutine functions
(``async def`` handlers), without holding the lock across an ``await``.

A named breaker exports its state as the metric ``eda_breaker_state{name="..."}`` (0 closed, 1 half-open,
2 open), served with the worker's other metrics (``--metrics-port``).
"""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pybreaker

T = TypeVar("T")

class Breaker(pybreaker.CircuitBreaker):
    """pybreaker's ``CircuitBreaker`` (same arguments: ``fail_max``, ``reset_timeout``, ``exclude``,
    ``listeners``, ``name``) whose guarded calls run concurrently; see the module's docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # pybreaker's default replaces the failure that opens the breaker with a CircuitBreakerError;
        # the state changes and listeners are the same either way.
        super().__init__(*args, throw_new_error_on_trip=False, **kwargs)
        self._probe = None  # (loop, future) of the half-open probe an async call is making
        if self.name:
            # Imported here, where a breaker is made: prometheus_client costs ~45 ms, needed only to run.
            from eda.metrics import watch_breaker

            watch_breaker(self)

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._lock:
            if self.current_state != pybreaker.STATE_CLOSED:
                # Open: refuse (CircuitBreakerError), or past the reset timeout run the half-open probe
                # (under the lock; a failed probe opens the breaker again and raises its own error).
                return self.state.call(func, *args, **kwargs)
            self.state.before_call(func, *args, **kwargs)
            for listener in self.listeners:
                listener.before_call(self, func, *args, **kwargs)
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            with self._lock:
                self.state._handle_error(exc)  # counts it, may open the breaker; re-raises exc
            raise  # not reached: _handle_error re-raises
        with self._lock:
            self.state._handle_success()
        return result

    async def call_async(self, func: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """``call`` for a coroutine function, on an event loop: the same states, listeners and errors.

        The lock is never held across an ``await`` (it would stop the loop): the state is decided under
        it, the call awaited outside it, and its result counted under it again. The half-open probe is
        one call; other calls on the same loop wait for its end and then run (it closed the breaker) or
        are refused (it opened it again), as threads waiting on ``call``'s lock do."""
        while True:
            with self._lock:
                waiting = self._waiting_probe()
                if waiting is None:
                    probe = self._begin_call(func, *args, **kwargs)
                    break
            await asyncio.shield(waiting)  # then decide again
        try:
            result = await func(*args, **kwargs)
        except BaseException as exc:
            with self._lock:
                self.state._handle_error(exc)  # counts it, may open the breaker; re-raises exc
            raise  # not reached: _handle_error re-raises
        else:
            with self._lock:
                self.state._handle_success()
            return result
        finally:
            if probe is not None:
                with self._lock:
                    self._probe = None
                if not probe.done():
                    probe.set_result(None)

    def _waiting_probe(self):
        """The future of a probe under way that this loop's call must wait for, else None."""
        if self._probe is None or self.current_state != pybreaker.STATE_HALF_OPEN:
            return None
        loop, future = self._probe
        if loop is not asyncio.get_running_loop():
            raise pybreaker.CircuitBreakerError("circuit breaker half-open: a probe is under way")
        return future

    def _begin_call(self, func, *args, **kwargs):
        """Under the lock: refuse (open, reset timeout not elapsed), or let the call run; returns the
        probe's future when this call is the half-open probe."""
        probe = None
        if self.current_state == pybreaker.STATE_OPEN:
            opened_at = self._state_storage.opened_at
            if opened_at and datetime.now(UTC) < opened_at + timedelta(seconds=self.reset_timeout):
                raise pybreaker.CircuitBreakerError("Timeout not elapsed yet, circuit breaker still open")
            self.half_open()  # tells the listeners: open -> half-open
        if self.current_state == pybreaker.STATE_HALF_OPEN:
            probe = asyncio.get_running_loop().create_future()
            self._probe = (asyncio.get_running_loop(), probe)
        self.state.before_call(func, *args, **kwargs)
        for listener in self.listeners:
            listener.before_call(self, func, *args, **kwargs)
        return probe
