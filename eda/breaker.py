"""A circuit breaker that lets guarded calls run concurrently and never hides why a call failed.

pybreaker's ``CircuitBreaker.call`` holds the breaker's lock for the whole guarded call, so it
serialises every gateway call of a worker (danielfm/pybreaker#3): a slow gateway would make
``--concurrency`` useless. Here state changes stay under the lock and the call runs outside it; the
half-open probe still runs alone, so one probe at a time tests a recovering gateway.

A call that ran and failed raises its own exception, also when its failure opened the breaker (the
call that trips it, a failed half-open probe): it reached the gateway, so it is a failed attempt. Only
a call refused without running raises ``CircuitBreakerError``: the worker reads that as "circuit open",
gives the event back and counts no attempt.
"""

import pybreaker


class Breaker(pybreaker.CircuitBreaker):
    def __init__(self, *args, **kwargs):
        # pybreaker's default replaces the failure that opens the breaker with a CircuitBreakerError;
        # the state changes and listeners are the same either way.
        super().__init__(*args, throw_new_error_on_trip=False, **kwargs)

    def call(self, func, *args, **kwargs):
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
