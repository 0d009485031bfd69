"""A worker's handler threads: a fixed set of daemon threads taking deliveries from one queue.

Lighter per event than ThreadPoolExecutor (no Future, work item or idle-thread bookkeeping): the
runtime never waits on a result, since each handler hands its outcome to the I/O thread itself.
The queue may hold more items than there are threads: a thread that finishes one takes the next at
once instead of waiting for the I/O thread's next turn; ``recall`` takes back those not started.
"""

import logging
import queue
import threading

log = logging.getLogger("eda.worker")
_STOP = object()


class HandlerThreads:
    """``count`` threads running ``run(item)`` for each submitted item, in submission order."""

    def __init__(self, count: int, name: str, run):
        self._tasks = queue.SimpleQueue()
        self._run = run
        self._threads = [threading.Thread(target=self._serve, name=f"{name}_{i}", daemon=True) for i in range(count)]
        for thread in self._threads:
            thread.start()

    def submit(self, item) -> None:
        self._tasks.put(item)

    def _serve(self) -> None:
        while True:
            item = self._tasks.get()
            if item is _STOP:
                return
            try:
                self._run(item)
            except BaseException:  # keep the thread: its slot would be lost to the worker otherwise
                log.exception("handler thread failed outside a handler")

    def recall(self) -> list:
        """Take back the items no thread has started (each item is either started or returned, never both)."""
        items = []
        while True:
            try:
                item = self._tasks.get_nowait()
            except queue.Empty:
                return items
            if item is _STOP:  # shutting down: leave the thread its stop
                self._tasks.put(item)
                return items
            items.append(item)

    def shutdown(self) -> None:
        """Drop what has not started and let each thread end after its current item (not waited for)."""
        while True:
            try:
                self._tasks.get_nowait()
            except queue.Empty:
                break
        for _ in self._threads:
            self._tasks.put(_STOP)
