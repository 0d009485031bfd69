"""The event loop an ``eda worker`` process's I/O thread runs itself while it waits (eda.runtime.aio.DrivenLoop):
what ends a wait, coroutine handlers started and finished on the same thread, an async setup on it."""

import asyncio
import os
import socket
import threading
import time

import pytest

from eda.runtime.aio import DrivenLoop, HandlerLoop


@pytest.fixture
def driven():
    driver = DrivenLoop()
    sock, peer = socket.socketpair()
    wake_r, wake_w = os.pipe()
    yield driver, sock, peer, wake_r, wake_w
    driver.close()
    sock.close()
    peer.close()
    os.close(wake_r)
    os.close(wake_w)


def test_a_wait_with_nothing_to_do_lasts_its_timeout(driven):
    driver, sock, _, wake_r, _ = driven
    started = time.monotonic()
    assert driver.wait(sock.fileno(), wake_r, 0.2) == (False, False)
    assert 0.19 <= time.monotonic() - started < 1.0


def test_a_wait_ends_when_the_socket_or_the_wake_up_pipe_is_readable(driven):
    driver, sock, peer, wake_r, wake_w = driven
    # When the peer writes: the wait ends at once, naming the socket
    peer.send(b"frame")
    started = time.monotonic()
    assert driver.wait(sock.fileno(), wake_r, 5) == (True, False)
    sock.recv(100)
    # When another thread writes the wake-up byte (a signal, a stop): the wait ends, naming the pipe
    threading.Timer(0.05, os.write, (wake_w, b"\0")).start()
    assert driver.wait(sock.fileno(), wake_r, 5) == (False, True)
    assert time.monotonic() - started < 2


def test_tasks_run_during_the_waits_and_a_finished_one_ends_the_wait_on_the_same_thread(driven):
    # Given a handler loop driven by this thread, whose tasks each sleep a little and report back
    driver, sock, _, wake_r, _ = driven
    outcomes = []
    threads = set()

    async def run(item):
        await asyncio.sleep(0.05)
        threads.add(threading.get_ident())
        outcomes.append(item)
        handlers.outcome_ready(wake=lambda: pytest.fail("a driven loop wakes nobody: its thread is here"))

    handlers = HandlerLoop("test-loop", run)
    handlers.drive(driver)
    # When ten items are submitted and this thread waits (up to 5 s)
    for i in range(10):
        handlers.submit(i)
    assert handlers.running == 10 and outcomes == []  # nothing runs before the thread waits
    started = time.monotonic()
    driver.wait(sock.fileno(), wake_r, 5)
    # Then the wait ends as tasks finish, well before its timeout (those finishing in one turn together)
    assert time.monotonic() - started < 1 and outcomes
    while len(outcomes) < 10 and time.monotonic() - started < 1:
        driver.wait(sock.fileno(), wake_r, 5)
    # and every task ran on this thread
    assert sorted(outcomes) == list(range(10))
    assert threads == {threading.get_ident()}


def test_an_async_setup_runs_on_the_driven_loop_and_a_shutdown_ends_running_tasks(driven):
    driver = driven[0]
    never = []

    async def run(item):
        never.append(item)
        await asyncio.sleep(60)

    handlers = HandlerLoop("test-loop", run)
    handlers.drive(driver)

    async def setup():
        return asyncio.get_running_loop()

    assert handlers.call(setup) is driver.loop
    handlers.submit("stuck")
    driver.wait(driven[1].fileno(), driven[3], 0)  # one turn: the task starts and waits
    assert never == ["stuck"] and handlers.running == 1
    # When the loop shuts down: the task still running is cancelled, not left pending
    handlers.shutdown()
    assert handlers.running == 0


def test_a_coroutine_that_blocks_the_loop_is_named_in_a_warning(driven, caplog):
    # Given a handler that calls time.sleep (a blocking call) in a coroutine
    driver, sock, _, wake_r, _ = driven

    async def run(item):
        time.sleep(1.3)

    handlers = HandlerLoop("test-loop", run)
    handlers.drive(driver)
    handlers.submit("blocking")
    # When the I/O thread waits (0.1 s) and the coroutine holds the loop meanwhile
    with caplog.at_level("WARNING", logger="eda.worker"):
        driver.wait(sock.fileno(), wake_r, 0.1)
    # Then a warning says the loop was held, and what to do
    [record] = [r for r in caplog.records if "held the event loop" in r.getMessage()]
    assert "asyncio.to_thread" in record.getMessage()


def test_a_wait_of_a_loop_that_was_not_blocked_warns_of_nothing(driven, caplog):
    driver, sock, _, wake_r, _ = driven
    with caplog.at_level("WARNING", logger="eda.worker"):
        driver.wait(sock.fileno(), wake_r, 0.3)
    assert not caplog.records
