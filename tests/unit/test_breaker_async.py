"""``Breaker.call_async``: the breaker's rules for coroutine calls. Calls run at the same time, a call that ran
raises its own error (the one that trips the breaker too), only a refused call raises CircuitBreakerError,
and the half-open probe runs alone while the other calls wait for its verdict."""

import asyncio

import pybreaker
import pytest

from eda.breaker import Breaker
from tests.unit.test_breaker import GatewayError, Recorder


async def failing():
    await asyncio.sleep(0)
    raise GatewayError("gateway answered 503")


async def answering(value="ok"):
    await asyncio.sleep(0)
    return value


def run(coro):
    return asyncio.run(coro)


async def opened(fail_max=1, listener=None) -> Breaker:
    breaker = Breaker(fail_max=fail_max, reset_timeout=30, listeners=[listener] if listener else [])
    for _ in range(fail_max):
        with pytest.raises(GatewayError):
            await breaker.call_async(failing)
    assert breaker.current_state == pybreaker.STATE_OPEN
    return breaker


def test_guarded_coroutines_run_at_the_same_time():
    async def main():
        breaker = Breaker(fail_max=5, reset_timeout=30)
        inside, release = [], asyncio.Event()

        async def call(i):
            inside.append(i)
            await release.wait()
            return i

        tasks = [asyncio.create_task(breaker.call_async(call, i)) for i in range(100)]
        while len(inside) < 100:  # every call got in before any of them finished
            await asyncio.sleep(0.001)
        release.set()
        return await asyncio.gather(*tasks)

    assert run(asyncio.wait_for(main(), 10)) == list(range(100))


def test_the_call_that_trips_the_breaker_raises_its_own_error_and_the_listeners_hear_what_sync_calls_tell():
    async def main():
        listener = Recorder()
        breaker = Breaker(fail_max=3, reset_timeout=30, listeners=[listener])
        errors = []
        for _ in range(3):
            with pytest.raises(GatewayError) as raised:
                await breaker.call_async(failing)
            errors.append(str(raised.value))
        return breaker, listener, errors

    breaker, listener, errors = run(main())
    assert errors == ["gateway answered 503"] * 3
    assert breaker.current_state == pybreaker.STATE_OPEN
    assert listener.events == ["before_call", "failure GatewayError"] * 3 + ["closed -> open"]


def test_an_open_breaker_refuses_without_calling():
    async def main():
        breaker = await opened()
        called = []

        async def call():
            called.append(1)

        with pytest.raises(pybreaker.CircuitBreakerError):
            await breaker.call_async(call)
        return called

    assert run(main()) == []


def test_a_successful_call_resets_the_count_of_failures():
    async def main():
        breaker = Breaker(fail_max=2, reset_timeout=30)
        with pytest.raises(GatewayError):
            await breaker.call_async(failing)
        assert await breaker.call_async(answering, "x") == "x"
        with pytest.raises(GatewayError):
            await breaker.call_async(failing)
        return breaker.current_state

    assert run(main()) == pybreaker.STATE_CLOSED


def test_the_half_open_probe_runs_alone_and_its_success_lets_the_waiting_calls_run():
    async def main():
        listener = Recorder()
        breaker = await opened(listener=listener)
        breaker.reset_timeout = 0  # the next call probes
        answer, inside = asyncio.Event(), []

        async def probe():
            inside.append("probe")
            await answer.wait()
            return "probe"

        async def other(i):
            inside.append(i)
            return i

        first = asyncio.create_task(breaker.call_async(probe))
        await asyncio.sleep(0.01)
        others = [asyncio.create_task(breaker.call_async(other, i)) for i in range(5)]
        await asyncio.sleep(0.05)
        assert inside == ["probe"]  # the others wait for the probe's verdict
        assert breaker.current_state == pybreaker.STATE_HALF_OPEN
        answer.set()
        results = await asyncio.gather(first, *others)
        return breaker, listener, results

    breaker, listener, results = run(asyncio.wait_for(main(), 10))
    assert results == ["probe", 0, 1, 2, 3, 4]
    assert breaker.current_state == pybreaker.STATE_CLOSED
    assert listener.changes() == ["closed -> open", "open -> half-open", "half-open -> closed"]


def test_a_failed_probe_raises_its_own_error_opens_the_breaker_and_the_waiting_calls_are_refused():
    async def main():
        listener = Recorder()
        breaker = await opened(listener=listener)
        breaker.reset_timeout = 0
        answer = asyncio.Event()

        async def probe():
            await answer.wait()
            raise GatewayError("still down")

        first = asyncio.create_task(breaker.call_async(probe))
        await asyncio.sleep(0.01)
        breaker.reset_timeout = 30  # once the probe fails, the breaker stays open
        waiting = asyncio.create_task(breaker.call_async(answering))
        await asyncio.sleep(0.05)
        answer.set()
        outcomes = await asyncio.gather(first, waiting, return_exceptions=True)
        return breaker, listener, outcomes

    breaker, listener, (probe_error, refused) = run(asyncio.wait_for(main(), 10))
    assert isinstance(probe_error, GatewayError) and str(probe_error) == "still down"
    assert isinstance(refused, pybreaker.CircuitBreakerError)
    assert breaker.current_state == pybreaker.STATE_OPEN
    assert listener.changes() == ["closed -> open", "open -> half-open", "half-open -> open"]


def test_a_cancelled_call_counts_as_a_failure_and_is_not_swallowed():
    async def main():
        breaker = Breaker(fail_max=1, reset_timeout=30)
        task = asyncio.create_task(breaker.call_async(asyncio.sleep, 10))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return breaker.current_state

    assert run(main()) == pybreaker.STATE_OPEN
