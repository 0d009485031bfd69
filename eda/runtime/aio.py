"""Coroutine handlers: an asyncio event loop on a thread of its own, one per worker with ``async def`` handlers.

The I/O thread keeps the broker connection, as for every worker: it starts a delivery by handing it
to the loop (``submit``), the loop runs the handler as a task beside the others in flight (up to the
worker's ``--concurrency``, counted by the I/O thread), and the finished task hands its outcome back
through the runner's queue and wake-up pipe like a handler thread does. A handler therefore never
touches the connection, and acks, confirms, retries and the graceful stop work unchanged.

Both directions coalesce their wake-ups: one ``call_soon_threadsafe`` starts every delivery submitted
since the loop last looked, and the outcomes of the tasks that finish in one turn of the loop wake the
I/O thread once, after that turn (``after_this_turn``).
"""

import asyncio
import inspect
import logging
import threading
from collections import deque

log = logging.getLogger("eda.worker")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop where installed (less CPU per wake-up and per socket operation), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class HandlerLoop:
    """An event loop thread running ``run(item)`` (a coroutine function) as one task per submitted item."""

    def __init__(self, name: str, run):
        self._run = run
        self._pending = deque()  # submitted by the I/O thread, not yet started on the loop
        self._scheduled = False  # a call to _start_pending is on its way to the loop
        self._tasks = set()  # strong references: the loop keeps only weak ones to running tasks
        self._after = []  # what ``after_this_turn`` was asked to call, until it runs
        self.loop = new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, item) -> None:
        """Called on the I/O thread: start ``run(item)`` on the loop."""
        self._pending.append(item)
        if not self._scheduled:  # one wake-up of the loop for everything submitted meanwhile
            self._scheduled = True
            self.loop.call_soon_threadsafe(self._start_pending)

    def _start_pending(self) -> None:
        # Cleared before taking the items: one submitted after this schedules another call.
        self._scheduled = False
        while self._pending:
            task = self.loop.create_task(self._guarded(self._pending.popleft()))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

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
        if inspect.isawaitable(result):
            return asyncio.run_coroutine_threadsafe(_awaited(result), self.loop).result()
        return result

    def shutdown(self) -> None:
        """Stop the loop after what it is doing now; tasks still running are dropped (their deliveries are
        redelivered), as a handler thread's are when the process exits."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()


async def _awaited(awaitable):
    return await awaitable
