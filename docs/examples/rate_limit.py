"""A rate limit shared by every instance of a worker, on every host: at most ``limit`` events handled
per window of ``per`` seconds, all instances together, counted in the worker's store (PostgreSQL with
EDA_DATABASE_URL, else a SQLite file: one host). An event over the limit waits for the next window."""

import asyncio
import threading
import time

from eda import Middleware, open_store

SCHEMA = ("CREATE TABLE IF NOT EXISTS rate_windows (worker TEXT NOT NULL, period BIGINT NOT NULL, "
          "count BIGINT NOT NULL, PRIMARY KEY (worker, period));")


class RateLimit(Middleware):
    def __init__(self, limit: int, per: float = 1.0):
        self.limit, self.per = limit, per
        self._stores, self._lock = {}, threading.Lock()

    def handle(self, event, ctx, call_next):  # a plain-def worker: on its handler thread
        while (wait := self.admit(ctx.worker)) is not None:
            time.sleep(wait)
        return call_next(event, ctx)

    async def handle_async(self, event, ctx, call_next):  # an async-def worker: on its event loop
        while (wait := await asyncio.to_thread(self.admit, ctx.worker)) is not None:
            await asyncio.sleep(wait)
        return await call_next(event, ctx)

    def admit(self, worker) -> float | None:
        """None when one more event may go now, else the seconds to wait before asking again."""
        period = int(time.time() // self.per)  # hosts keep their clocks in step (NTP): one window for all
        count = self.count(worker, period)
        now = time.time()
        if int(now // self.per) != period:  # counted after its window ended (a slow database): ask again
            return 0.0
        return None if count <= self.limit else (period + 1) * self.per - now

    def count(self, worker, period: int) -> int:
        """Count one event in window ``period``; how many it holds now. One statement counts and reads,
        so instances counting at the same moment never both take the last place."""
        with self.store(worker).transaction() as tx:
            count, = tx.execute(
                "INSERT INTO rate_windows (worker, period, count) VALUES (?, ?, 1) ON CONFLICT (worker, period) "
                "DO UPDATE SET count = rate_windows.count + 1 RETURNING count", (worker.name, period)).fetchone()
            if count == 1:  # the first event of its window: forget the windows before
                tx.execute("DELETE FROM rate_windows WHERE worker = ? AND period < ?", (worker.name, period))
        return count

    def store(self, worker):
        """The worker's store, opened on first use (once, whichever handler thread comes first)."""
        with self._lock:
            if worker.name not in self._stores:
                # patience=0: in a handler, a database away fails the event at once (retried later),
                # instead of holding every handler thread while it waits for the database
                self._stores[worker.name] = open_store(worker.settings, worker.name, SCHEMA, patience=0)
            return self._stores[worker.name]
