"""A worker draining pre-loaded events in the main thread, to run under a sampling profiler.

    py-spy record -r 250 -f raw -o noop.txt -- python -m benchmarks.profile noop 30000 1
    py-spy record -r 250 -f raw -o shipping.txt -- python -m benchmarks.profile shipping 20000 4

WORKER is ``noop`` (the benchmark's no-op worker: eda's own cost) or ``shipping``; then the number of
events and the concurrency. Prints the rate; everything declared is deleted afterwards.
"""

import sys

from benchmarks import eda_side
from benchmarks.bench import Bench, order_event, reserved_event
from eda.middleware import Middleware
from eda.runtime.runner import Runner
from eda_shop.workers.shipping import Shipping


class StopWhenDone(Middleware):
    def __init__(self, counter):
        self.counter = counter
        self.runner = None

    def on_ready(self, runner):
        self.runner = runner

    def on_outcome(self, *args):
        if self.counter.done.is_set():
            self.runner.stop()


def main(name: str, n: int, concurrency: int) -> None:
    worker, make_event = (eda_side.NoOp, order_event) if name == "noop" else (Shipping, reserved_event)
    bench = Bench()
    try:
        settings = bench.settings.with_(concurrency=concurrency)
        eda_side.worker_logs(settings)
        bench.queue("sink-profile", "order.shipped")
        bench.preload(bench.worker_queue(worker.name, worker.handlers), make_event, n)
        counter = eda_side.Counter(n)
        runner = Runner([worker], settings, middleware=[counter, StopWhenDone(counter)])
        runner.run()
        print(f"{name} at concurrency {concurrency}: {n / (counter.ended - counter.started):,.0f} events/s")
    finally:
        bench.cleanup()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
