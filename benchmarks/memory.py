"""A worker's memory: the RSS of a real `eda worker shipping` process, idle and after many events.

Events are distinct (their own ids and order ids), so anything kept per event would show as growth.
The worker is done with an event once its reaction reached the sink queue (reactions are confirmed
before the ack).
"""

import tempfile
import time

from benchmarks.bench import Bench, eda_worker, reserved_event, rss_mb, stop, wait_for
from eda_shop.workers.shipping import Shipping

WARM_FRACTION = 0.1


def worker_memory(bench: Bench, n: int) -> dict:
    sink = bench.queue("sink-memory", "order.shipped").name
    queue = bench.worker_queue(Shipping.name, Shipping.handlers)
    with tempfile.TemporaryDirectory(prefix="eda-bench-") as state:
        proc = eda_worker([Shipping.name], bench.worker_env(state))
        try:
            wait_for(lambda: bench.consumers(queue), 30, "the shipping worker")
            time.sleep(1.0)
            idle = rss_mb(proc.pid)
            warm_n = max(1, int(n * WARM_FRACTION))
            bench.preload(queue, reserved_event, warm_n, wait=False)
            wait_for(lambda: bench.depth(sink) >= warm_n, 120, f"{warm_n} reactions", interval=0.2)
            warm = rss_mb(proc.pid)
            bench.preload(queue, lambda i: reserved_event(warm_n + i), n - warm_n, wait=False)
            wait_for(lambda: bench.depth(sink) >= n, 600, f"{n} reactions", interval=0.2)
            time.sleep(0.5)
            after = rss_mb(proc.pid)
        finally:
            stop(proc)
    bench.channel.queue_purge(sink)
    return {"events": n, "warm_events": warm_n, "idle_mb": round(idle, 1), "after_warmup_mb": round(warm, 1),
            "after_mb": round(after, 1), "growth_mb": round(after - idle, 1),
            "growth_after_warmup_mb": round(after - warm, 1)}
