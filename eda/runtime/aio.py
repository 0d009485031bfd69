"""Coroutine handlers: each worker with ``async def`` handlers runs them as tasks on an event loop.

Under ``eda worker`` (``Runner.run``) that loop is the I/O thread's own (``DrivenLoop``): the thread that
owns the broker connection runs the loop while it waits for the broker, so a finished task's outcome is
settled and the next delivery started on the same thread, with no hand-over between threads (issue 20).
Elsewhere (eda.testing's bus, which may be driven from inside a test's own running loop) the loop has a
thread of its own, started on first use: the I/O thread hands deliveries to it (``submit``) and the tasks
hand their outcomes back through the runner's queue and wake-up pipe like a handler thread does, both
directions coalescing their wake-ups (one ``call_soon_threadsafe`` for every delivery submitted since the
loop last looked; one wake-up for every task finishing in one turn of the loop, ``after_this_turn``).

Either way a handler never touches the connection, and acks, confirms, retries and the graceful stop
work unchanged; up to the worker's ``--concurrency`` tasks run at once, counted by the I/O thread.
"""

import asyncio
import inspect
import logging
import threading
from collections import deque

log = logging.getLogger("eda.worker")
BLOCKED = 1.0  # seconds a driven loop's wait may outlast its timeout before a handler is said to block it


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop where installed (less CPU per wake-up and per socket operation), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class HandlerLoop:
    """Runs ``run(item)`` (a coroutine function) as one task per submitted item: on a loop of its own
    thread, or on a ``DrivenLoop`` that the I/O thread runs (``drive``, before first use)."""

    def __init__(self, name: str, run):
        self._name = name
        self._run = run
        self._pending = deque()  # submitted by the I/O thread, not yet started on the loop
        self._scheduled = False  # a call to _start_pending is on its way to the loop
        self._tasks = set()  # strong references: the loop keeps only weak ones to running tasks
        self._after = []  # what ``after_this_turn`` was asked to call, until it runs
        self.loop = new_event_loop()
        self._thread = None  # started on first use, unless the I/O thread drives the loop
        self._driver = None

    def drive(self, driver: "DrivenLoop") -> None:
        """Run the tasks on ``driver``'s loop, which the I/O thread runs while it waits for the broker."""
        self.loop.close()
        self._driver, self.loop = driver, driver.loop

    def _started(self) -> asyncio.AbstractEventLoop:
        if self._driver is None and self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
            self._thread.start()
        return self.loop

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, item) -> None:
        """Called on the I/O thread: start ``run(item)`` on the loop."""
        self._pending.append(item)
        if self._driver is not None:
            self._start_pending()  # the loop runs on this thread: the task's first step at its next run
        elif not self._scheduled:  # one wake-up of the loop for everything submitted meanwhile
            self._scheduled = True
            self._started().call_soon_threadsafe(self._start_pending)

    def _start_pending(self) -> None:
        # Cleared before taking the items: one submitted after this schedules another call.
        self._scheduled = False
        while self._pending:
            task = self.loop.create_task(self._guarded(self._pending.popleft()))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def outcome_ready(self, wake) -> None:
        """On the loop: a task handed its outcome back. The I/O thread takes it after this turn of the
        loop, with those of every task finishing in the same turn: a driven loop stops running (its
        thread goes on to settle them), a loop of its own thread calls ``wake`` once."""
        if self._driver is not None:
            self.loop.stop()  # the current turn ends first: what is ready now still runs
        else:
            self.after_this_turn(wake)

    def after_this_turn(self, func) -> None:
        """On the loop's thread: call ``func()`` once the loop has run what is ready now (once, however
        many ask in the meantime): the tasks finishing in this turn are all done by then."""
        if not self._after:
            self.loop.call_soon(self._run_after)
        if func not in self._after:
            self._after.append(func)

    def _run_after(self) -> None:
        funcs, self._after = self._after, []
        for func in funcs:
            func()

    async def _guarded(self, item) -> None:
        try:
            await self._run(item)
        except BaseException:  # noqa: BLE001 - ``run`` settles its item; nothing else may end the loop
            log.exception("event loop task failed outside a handler")

    @property
    def running(self) -> int:
        """Tasks started and not finished (read on any thread: a count, not a synchronisation point)."""
        return len(self._tasks)

    def call(self, func):
        """Run ``func()`` for the caller (a worker's setup or teardown): a coroutine it returns is awaited
        on this loop, so what it opens (an httpx.AsyncClient, an asyncpg pool) belongs to the handlers' loop."""
        result = func()
        if not inspect.isawaitable(result):
            return result
        if self._driver is not None:
            return self._driver.run_until_done(_awaited(result))
        return asyncio.run_coroutine_threadsafe(_awaited(result), self._started()).result()

    def shutdown(self) -> None:
        """End the tasks still running (their deliveries are redelivered, as a handler thread's are when
        the process exits); a loop of its own stops after what it is doing now and closes."""
        if self.loop.is_closed():
            return
        if self._driver is not None:
            self._driver.cancel(self._tasks)
            return
        if self._thread is None:
            self.loop.close()
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()


class DrivenLoop:
    """The event loop that the I/O thread itself runs while it waits for the broker's socket or its
    wake-up pipe (``wait``): coroutine handlers run in those waits, and the wait ends when either is
    readable, a task has handed back an outcome, or the timeout passes.

    asyncio's own loop, not uvloop: on the main thread uvloop installs a signal wake-up socket pair of
    its own at every ``run_forever`` and takes it down again at the end, several system calls for each
    wait, and the worker's wait-per-turn would pay them each turn."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self._fds = {}  # what the loop watches: "socket" and "wake-up" -> file descriptor
        self._ready = set()  # which of them was readable in the last wait

    def _watch(self, what: str, fd: int) -> None:
        if self._fds.get(what) != fd:
            self.forget(what)
            self.loop.add_reader(fd, self._readable, what)
            self._fds[what] = fd

    def forget(self, what: str) -> None:
        """Stop watching a file descriptor (the socket of a connection about to close: a number closed
        while still watched could come back as another file's)."""
        fd = self._fds.pop(what, None)
        if fd is not None and not self.loop.is_closed():
            self.loop.remove_reader(fd)

    def _readable(self, what: str) -> None:
        self._ready.add(what)
        self.loop.stop()

    def wait(self, sock_fd: int, wake_fd: int, timeout: float) -> tuple[bool, bool]:
        """Run the loop until the socket or the wake-up pipe is readable, a task hands an outcome back,
        or ``timeout`` seconds pass (0: one turn of the loop); return (socket readable, woken)."""
        self._watch("socket", sock_fd)
        self._watch("wake-up", wake_fd)
        self._ready.clear()
        loop = self.loop
        started = loop.time()
        timer = loop.call_later(timeout, loop.stop) if timeout > 0 else loop.call_soon(loop.stop)
        try:
            loop.run_forever()
        finally:
            timer.cancel()
        if (late := loop.time() - started - timeout) > BLOCKED:
            # A coroutine ran that long without awaiting (a blocking call): every other handler, the
            # acks and the heartbeats waited for it.
            log.warning("an async handler held the event loop for %.1fs without awaiting: other handlers, acks "
                        "and heartbeats waited; run blocking calls in a thread (await asyncio.to_thread(...))",
                        late)
        return "socket" in self._ready, "wake-up" in self._ready

    def run_until_done(self, awaitable):
        """Run the loop until ``awaitable`` is done (a worker's async setup or teardown), whatever stops it
        on the way (a task handing back an outcome), and return its result."""
        future = asyncio.ensure_future(awaitable, loop=self.loop)
        future.add_done_callback(lambda _: self.loop.stop())
        while not future.done():
            self.loop.run_forever()
        return future.result()

    def cancel(self, tasks, timeout: float = 5.0) -> None:
        """Cancel ``tasks`` and run the loop until they end (at most ``timeout`` seconds)."""
        tasks = [t for t in tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            self.run_until_done(asyncio.wait(tasks, timeout=timeout))

    def close(self) -> None:
        """Stop watching, let the default executor's threads end, close the loop."""
        if self.loop.is_closed():
            return
        for what in list(self._fds):
            self.forget(what)
        try:
            self.run_until_done(self.loop.shutdown_default_executor())
        finally:
            self.loop.close()


async def _awaited(awaitable):
    return await awaitable
