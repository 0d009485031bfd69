"""A circuit breaker that lets guarded calls run concurrently.

pybreaker's ``CircuitBreaker.call`` holds the breaker's lock for the whole guarded call, so it
serialises every gateway call of a worker (danielfm/pybreaker#3): a slow gateway would make
``--concurrency`` useless. Here state changes stay under the lock and the call runs outside it; the
half-open probe still runs alone, so one probe at a time tests a recovering gateway.
"""

import pybreaker


class Breaker(pybreaker.CircuitBreaker):
    def call(self, func, *args, **kwargs):
        with self._lock:
            if self.current_state != pybreaker.STATE_CLOSED:
                # Open: fail fast, or past the reset timeout run the half-open probe (under the lock).
                return self.state.call(func, *args, **kwargs)
            self.state.before_call(func, *args, **kwargs)
            for listener in self.listeners:
                listener.before_call(self, func, *args, **kwargs)
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            with self._lock:
                self.state._handle_error(exc)  # counts it, may open the breaker; re-raises
            raise
        with self._lock:
            self.state._handle_success()
        return result
