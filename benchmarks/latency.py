"""End-to-end latency: order.placed published at a steady rate, order.shipped seen on the wire.

The load generator and the probe share one connection in this process, so both timestamps come
from one clock: a publish is timed when it is handed to the socket, a shipment when its delivery is
read. Workers run in processes of their own, one per worker: `eda worker payment` (in-process
simulated gateway), `eda worker inventory` and `eda worker shipping`, or one raw kombu relay process
per hop for the baseline.

The rate is a share (half by default) of the raw relays' three-hop capacity, measured first in the
same run: a fixed rate says nothing on a machine where neither side keeps up with it. A fixed rate
(500/s) is measured as well where it is below that share.
"""

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from benchmarks.bench import Bench, eda_worker, order_event, stop, wait_for
from eda.contracts.envelope import Event
from eda.connection import open_connection
from eda.publishing.publisher import Publisher
from eda import discovery

ROOT = Path(__file__).resolve().parents[1]
HOPS = (("order.placed", "payment.succeeded"), ("payment.succeeded", "inventory.reserved"),
        ("inventory.reserved", "order.shipped"))
WORKERS = ("payment", "inventory", "shipping")
WARMUP_SECONDS = 1.0


def percentile(values, p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class Probe:
    """Publishes orders on schedule and times each order's shipment by its correlation id."""

    def __init__(self, bench: Bench, key: str = "order.shipped"):
        self.bench = bench
        self.conn = open_connection(bench.settings)
        self.publisher = Publisher(self.conn)
        self.channel = self.conn.connection.channel()  # raw py-amqp: no kombu Message per delivery
        queue = f"{bench.namespace}.probe"
        self.channel.queue_declare(queue, exclusive=True, auto_delete=True)
        self.channel.queue_bind(queue, bench.topology.events.name, key)
        self.sent, self.latencies = {}, {}
        self.channel.basic_consume(queue, callback=self._shipped, no_ack=True)

    def _shipped(self, message):
        seen = time.perf_counter()
        key = orjson.loads(message.body)["correlationid"]
        if key in self.sent and key not in self.latencies:
            self.latencies[key] = seen - self.sent[key]

    def send(self, event: Event) -> None:
        self.publisher.send_event(event, self.bench.topology.events.name, mandatory=True)
        self.sent[event.id] = time.perf_counter()

    def pump(self, timeout: float) -> None:
        try:
            self.conn.drain_events(timeout=max(timeout, 0))
        except socket.timeout:
            pass

    def run(self, rate: float, seconds: float, grace: float = 10.0, warmup: float = WARMUP_SECONDS,
            make_event=order_event) -> dict:
        total = max(1, int(rate * seconds))
        started = time.perf_counter()
        for i in range(total):
            due = started + i / rate
            while (now := time.perf_counter()) < due:
                self.pump(due - now)
            self.send(make_event(i))
        deadline = time.perf_counter() + grace
        while len(self.latencies) < total and time.perf_counter() < deadline:
            self.pump(0.05)
        measured = [v * 1000 for k, v in self.latencies.items() if self.sent[k] - started >= warmup]
        if not measured:
            raise RuntimeError(f"no order shipped of {total} sent")
        return {"rate": rate, "seconds": seconds, "sent": total, "shipped": len(self.latencies),
                "p50_ms": percentile(measured, 50), "p99_ms": percentile(measured, 99), "max_ms": max(measured)}

    def warm_up(self, timeout: float = 20.0) -> None:
        """Send single orders until one is shipped: every worker and the stock are ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = order_event(-1)
            self.send(event)
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                self.pump(0.05)
                if event.id in self.latencies:
                    self.sent.clear()
                    self.latencies.clear()
                    return
        raise TimeoutError("no order shipped while warming up")

    def close(self) -> None:
        self.conn.release()


def measure(bench: Bench, rate: float, seconds: float, first=()) -> dict:
    """Publish ``first`` (set-up events), warm up, then time orders at ``rate`` for ``seconds``."""
    probe = Probe(bench)
    try:
        for event in first:
            probe.publisher.send_event(event, bench.topology.events.name, mandatory=True)
        probe.warm_up()
        return probe.run(rate, seconds)
    finally:
        probe.close()


def capacity(bench: Bench, n: int, timeout: float = 120.0) -> dict:
    """``n`` orders sent back to back: orders shipped per second, from the first sent to the last shipped."""
    probe = Probe(bench)
    try:
        probe.warm_up()
        started = time.perf_counter()
        for i in range(n):
            probe.send(order_event(i))
            if i % 100 == 0:
                probe.pump(0)  # read confirms and shipments as they come
        deadline = time.perf_counter() + timeout
        while len(probe.latencies) < n and time.perf_counter() < deadline:
            probe.pump(0.05)
        if len(probe.latencies) < n:
            raise TimeoutError(f"{len(probe.latencies)} of {n} orders shipped in {timeout:g}s")
        last = max(probe.sent[k] + v for k, v in probe.latencies.items())
        return {"orders": n, "rate": n / (last - started)}
    finally:
        probe.close()


@contextlib.contextmanager
def eda_workers(bench: Bench):
    """The three real workers, one `eda worker NAME` process each (as the systemd unit runs them); yields
    the set-up events the first measure publishes (stock)."""
    with tempfile.TemporaryDirectory(prefix="eda-bench-") as state:
        for name in WORKERS:
            bench.worker_queue(name, discovery.get(name).handlers)
        procs = []
        try:
            for name in WORKERS:  # appended one by one inside the try: a failed start stops the others
                procs.append(eda_worker([name], bench.worker_env(state)))
            wait_for(lambda: all(bench.consumers(f"{bench.namespace}.{w}") for w in WORKERS), 30, "the eda workers")
            yield [Event("stock.replenished", {"sku": "SKU-1", "quantity": 10**9}, "eda/bench")]
        finally:
            for proc in procs:
                stop(proc)
            for name in WORKERS:  # their queues would fill up with the baseline's orders
                bench.topology.delete_worker(bench.channel, name)


@contextlib.contextmanager
def raw_relays(bench: Bench):
    """The same flow through three plain kombu relays, one process per hop, a confirm per publish."""
    procs = []
    try:
        for key, next_key in HOPS:
            bench.queue(f"relay.{key}", key)
            procs.append(subprocess.Popen([sys.executable, "-m", "benchmarks.relay", bench.namespace, key, next_key],
                                          cwd=ROOT))
        wait_for(lambda: all(bench.consumers(f"{bench.namespace}.relay.{k}") for k, _ in HOPS), 30,
                 "the relays")
        yield ()
    finally:
        for proc in procs:
            stop(proc)
        for key, _ in HOPS:
            bench.channel.queue_delete(f"{bench.namespace}.relay.{key}")


def compare(bench: Bench, share: float, fixed_rate: float, seconds: float, quick: bool,
            step=lambda what: None) -> dict:
    """eda and the raw relays at ``share`` of the relays' three-hop capacity, measured first in the same
    run, so the rate means the same on any machine; and at ``fixed_rate`` too where it is below that."""
    n = 500 if quick else 3000
    with raw_relays(bench):
        step(f"latency: raw kombu relays, capacity ({n:,} orders back to back)")
        cap = capacity(bench, n)
        rate = share * cap["rate"]
        rates = [rate] + ([fixed_rate] if fixed_rate < rate else [])
        raw = {}
        for r in rates:
            step(f"latency: raw kombu relays, {r:,.0f} orders/s for {seconds:g}s")
            raw[r] = measure(bench, r, seconds)
    eda = {}
    with eda_workers(bench) as first:
        for r in rates:
            step(f"latency: eda workers, {r:,.0f} orders/s for {seconds:g}s")
            eda[r] = measure(bench, r, seconds, first=first)
            first = ()
    out = {"capacity": cap, "share": share, "rate": rate, "eda": eda[rate], "raw": raw[rate]}
    if fixed_rate in eda:
        out["fixed"] = {"rate": fixed_rate, "eda": eda[fixed_rate], "raw": raw[fixed_rate]}
    return out
