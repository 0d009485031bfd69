"""The payment gateway's circuit breaker: concurrent calls, opening, the half-open probe, and which error a
caller sees (its own when the call ran, CircuitBreakerError only when it was refused)."""

import threading

import pybreaker
import pytest

from eda.breaker import Breaker


class GatewayError(Exception):
    """A guarded call's technical failure (the shop's gateway client raises one of its own)."""


def failing():
    raise GatewayError("gateway answered 503")


class Recorder(pybreaker.CircuitBreakerListener):
    """Everything the breaker tells its listeners, in order."""

    def __init__(self):
        self.events = []

    def before_call(self, cb, func, *args, **kwargs):
        self.events.append("before_call")

    def failure(self, cb, exc):
        self.events.append(f"failure {type(exc).__name__}")

    def success(self, cb):
        self.events.append("success")

    def state_change(self, cb, old_state, new_state):
        self.events.append(f"{old_state.name if old_state else None} -> {new_state.name}")

    def changes(self):
        return [e for e in self.events if "->" in e]


def opened(fail_max=1, listener=None) -> Breaker:
    """A breaker opened by ``fail_max`` failed calls, with a reset timeout no test waits for."""
    breaker = Breaker(fail_max=fail_max, reset_timeout=30, listeners=[listener] if listener else [])
    for _ in range(fail_max):
        with pytest.raises(GatewayError):
            breaker.call(failing)
    assert breaker.current_state == pybreaker.STATE_OPEN
    return breaker


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


def test_the_call_that_trips_the_breaker_raises_its_own_error():
    # Given a closed breaker that opens after 3 failures in a row
    listener = Recorder()
    breaker = Breaker(fail_max=3, reset_timeout=30, listeners=[listener])
    # When three calls fail, the third of them opening it
    errors = []
    for _ in range(3):
        with pytest.raises(GatewayError) as raised:
            breaker.call(failing)
        errors.append(raised.value)
    # Then each raised the gateway's error, the one that tripped it too
    assert [str(e) for e in errors] == ["gateway answered 503"] * 3
    # and the breaker is open, the listeners told of each failure and of the one state change
    assert breaker.current_state == pybreaker.STATE_OPEN
    assert listener.events == ["before_call", "failure GatewayError"] * 3 + ["closed -> open"]


def test_a_call_refused_while_open_raises_circuit_breaker_error_without_running():
    # Given an open breaker within its reset timeout
    listener = Recorder()
    breaker = opened(listener=listener)
    before = list(listener.events)
    # When a call comes
    called = []
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(lambda: called.append(1))
    # Then it is refused: it did not run, and the breaker and its listeners saw nothing happen
    assert called == []
    assert breaker.current_state == pybreaker.STATE_OPEN
    assert listener.events == before


def test_a_failed_half_open_probe_raises_its_own_error_and_opens_the_breaker_again():
    # Given an open breaker past its reset timeout
    listener = Recorder()
    breaker = opened(listener=listener)
    breaker.reset_timeout = 0
    # When the probe fails
    with pytest.raises(GatewayError, match="503"):
        breaker.call(failing)
    # Then the breaker went half-open for the probe and is open again
    assert breaker.current_state == pybreaker.STATE_OPEN
    assert listener.changes() == ["closed -> open", "open -> half-open", "half-open -> open"]
    # and, within a new reset timeout, refuses calls again
    breaker.reset_timeout = 30
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(lambda: "charged")


def test_a_successful_half_open_probe_closes_the_breaker():
    listener = Recorder()
    breaker = opened(fail_max=2, listener=listener)
    breaker.reset_timeout = 0
    assert breaker.call(lambda: "charged") == "charged"
    assert breaker.current_state == pybreaker.STATE_CLOSED
    assert breaker.fail_counter == 0
    assert listener.changes() == ["closed -> open", "open -> half-open", "half-open -> closed"]


def test_a_call_under_way_when_another_opens_the_breaker_raises_its_own_error():
    # Given a call that has reached the gateway and not yet answered
    breaker = Breaker(fail_max=1, reset_timeout=30)
    inside, answer = threading.Event(), threading.Event()
    outcome = []

    def slow_failure():
        inside.set()
        answer.wait(5)
        raise GatewayError("gateway timed out")

    def call():
        try:
            breaker.call(slow_failure)
        except Exception as exc:
            outcome.append(exc)

    slow = threading.Thread(target=call)
    slow.start()
    assert inside.wait(5)
    # When another call's failure opens the breaker meanwhile, and then the slow call fails
    with pytest.raises(GatewayError):
        breaker.call(failing)
    assert breaker.current_state == pybreaker.STATE_OPEN
    answer.set()
    slow.join(10)
    # Then the slow call, which ran, raised its own error, not "circuit open"
    assert [type(e) for e in outcome] == [GatewayError]
    assert breaker.current_state == pybreaker.STATE_OPEN


def test_the_half_open_probe_runs_alone():
    # Given an open breaker past its reset timeout
    breaker = opened()
    breaker.reset_timeout = 0
    probe_inside = threading.Event()
    both_inside = threading.Barrier(2, timeout=1)  # passes only if another call runs beside the probe
    other_ran, other_outcome = [], []

    def probe():
        breaker.reset_timeout = 30  # once the probe fails, calls are refused again
        probe_inside.set()
        both_inside.wait()  # the probe fails (BrokenBarrierError) when no call joins it

    def other():
        other_ran.append(1)
        both_inside.wait()

    def call_other():
        try:
            breaker.call(other)
        except Exception as exc:
            other_outcome.append(exc)

    # When a call comes while the probe is under way
    thread = threading.Thread(target=lambda: probe_inside.wait(5) and call_other())
    thread.start()
    with pytest.raises(threading.BrokenBarrierError):
        breaker.call(probe)
    thread.join(10)
    # Then it did not run beside the probe: it waited, and was refused once the probe failed
    assert other_ran == []
    assert [type(e) for e in other_outcome] == [pybreaker.CircuitBreakerError]
    assert breaker.current_state == pybreaker.STATE_OPEN
