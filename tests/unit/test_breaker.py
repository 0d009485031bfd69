"""The payment gateway's circuit breaker: concurrent calls, opening, and the half-open probe."""

import threading
import time

import pybreaker
import pytest

from eda.breaker import Breaker
from eda.errors import GatewayError


def failing():
    raise GatewayError("503")


def test_guarded_calls_run_at_the_same_time():
    breaker = Breaker(fail_max=5, reset_timeout=30)
    both_inside = threading.Barrier(2, timeout=5)  # breaks unless two calls are inside at once
    results = []

    def call():
        results.append(breaker.call(lambda: both_inside.wait() is not None))

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [True, True]


def test_it_opens_after_fail_max_failures_and_then_fails_fast():
    breaker = Breaker(fail_max=3, reset_timeout=30)
    for _ in range(2):
        with pytest.raises(GatewayError):
            breaker.call(failing)
    with pytest.raises(pybreaker.CircuitBreakerError):  # the failure that trips it
        breaker.call(failing)
    assert breaker.current_state == pybreaker.STATE_OPEN
    called = []
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(lambda: called.append(1))
    assert called == []


def test_after_the_reset_timeout_one_successful_probe_closes_it():
    breaker = Breaker(fail_max=1, reset_timeout=0.05)
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(failing)
    time.sleep(0.1)
    assert breaker.call(lambda: "charged") == "charged"
    assert breaker.current_state == pybreaker.STATE_CLOSED


def test_a_failed_probe_opens_it_again():
    breaker = Breaker(fail_max=1, reset_timeout=0.05)
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(failing)
    time.sleep(0.1)
    with pytest.raises((GatewayError, pybreaker.CircuitBreakerError)):
        breaker.call(failing)
    assert breaker.current_state == pybreaker.STATE_OPEN
