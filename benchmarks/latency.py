"""End-to-end latency: order.placed published at a steady rate, order.shipped seen on the wire.

The load generator and the probe share one connection in this process, so both timestamps come
from one clock: a publish is timed when it is handed to the socket, a shipment when its delivery is
read. Workers run in processes of their own, one per worker: `eda worker payment` (in-process
simulated gateway), `eda worker inventory` and `eda worker shipping`, or one raw kombu relay process
per hop for the baseline.

The rates are shares of the raw relays' three-hop capacity, measured first in the same run: a fixed
rate says nothing on a machine where neither side keeps up with it. Issue 20's targets, in each run:
at half the capacity eda's p50 <= 1.2x and p99 <= 1.5x the relays', at 0.8 of it p99 <= 2x. Five runs
(``ROUNDS``), raw and eda alternating (raw first in odd runs, eda first in even ones, so that a drift of
the machine's load falls on both alike); then the same again with a CPU hog beside both sides (one
busy process per core, ``Hog``). A fixed rate (500/s) is measured as well, in the first run, where it
is below half the capacity.
"""

import contextlib
import os
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
ROUNDS = 5
LOADS = (0.5, 0.8)  # shares of the raw relays' capacity
TARGETS = {0.5: {"p50_ms": 1.2, "p99_ms": 1.5}, 0.8: {"p99_ms": 2.0}}  # eda / raw, at most, in each run


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
    with contextlib.ExitStack() as stack:
        state = getattr(bench, "latency_state", None) or stack.enter_context(
            tempfile.TemporaryDirectory(prefix="eda-bench-"))
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


class Hog:
    """One busy process per core (``while True: pass``), beside both sides: the machine as busy as a
    shared host, the same for raw kombu and eda."""

    def __enter__(self):
        count = os.cpu_count() or 1
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
        return self

    def __exit__(self, *exc):
        for proc in self.procs:
            proc.kill()
            proc.wait()


def sides_in_order(round_no: int):
    """raw then eda in odd runs (1, 3, 5), eda then raw in even ones."""
    return (("raw", raw_relays), ("eda", eda_workers)) if round_no % 2 else (("eda", eda_workers), ("raw", raw_relays))


def one_round(bench: Bench, round_no: int, rates: dict, seconds: float, first_eda: list, step, label: str,
              fixed_rate: float | None = None) -> dict:
    """Each side at each load (and the fixed rate, when given), one side's processes started once."""
    out = {"raw": {}, "eda": {}}
    for side, processes in sides_in_order(round_no):
        with processes(bench) as setup:
            first = list(setup) if side == "eda" and not first_eda else []
            if first:
                first_eda.append(True)  # the stock is put in once: the eda workers keep their state folder
            for load, rate in rates.items():
                step(f"latency{label}, run {round_no}: {'eda workers' if side == 'eda' else 'raw kombu relays'}, "
                     f"{rate:,.0f} orders/s ({load:g} × capacity) for {seconds:g}s")
                out[side][str(load)] = measure(bench, rate, seconds, first=first)
                first = []
            if fixed_rate is not None:
                step(f"latency{label}, run {round_no}: {side}, {fixed_rate:,.0f} orders/s (fixed) for {seconds:g}s")
                out[side]["fixed"] = measure(bench, fixed_rate, seconds)
    return out


def compare(bench: Bench, share: float, fixed_rate: float, seconds: float, quick: bool,
            step=lambda what: None, rounds: int | None = None, hog: bool = True) -> dict:
    """eda and the raw relays at ``share`` and 0.8 of the relays' three-hop capacity, measured first in
    the same run, in ``rounds`` runs alternating the sides, then as many with a CPU hog beside both; and
    at ``fixed_rate`` too (first run) where it is below ``share`` of the capacity."""
    n = 500 if quick else 3000
    rounds = rounds or (1 if quick else ROUNDS)
    with raw_relays(bench):
        step(f"latency: raw kombu relays, capacity ({n:,} orders back to back)")
        cap = capacity(bench, n)
    loads = sorted({share, *LOADS})
    rates = {load: load * cap["rate"] for load in loads}
    fixed = fixed_rate if fixed_rate < rates[share] else None
    with tempfile.TemporaryDirectory(prefix="eda-bench-") as state:
        bench.latency_state = state  # one state folder for every start of the eda workers
        try:
            stocked = []
            runs = [one_round(bench, r, rates, seconds, stocked, step, "", fixed if r == 1 else None)
                    for r in range(1, rounds + 1)]
            hog_runs = []
            if hog:
                with Hog():
                    hog_runs = [one_round(bench, r, rates, seconds, stocked, step, " with a CPU hog")
                                for r in range(1, rounds + 1)]
        finally:
            bench.latency_state = None
    out = {"capacity": cap, "share": share, "rate": rates[share], "rates": {str(k): v for k, v in rates.items()},
           "targets": {str(k): v for k, v in TARGETS.items()}, "runs": runs, "hog_runs": hog_runs,
           # the first run at ``share``, as one figure (report rows, older readers)
           "eda": runs[0]["eda"][str(share)], "raw": runs[0]["raw"][str(share)]}
    if fixed is not None:
        out["fixed"] = {"rate": fixed, "eda": runs[0]["eda"]["fixed"], "raw": runs[0]["raw"]["fixed"]}
    out["summary"] = summary(out)
    return out


def summary(lat: dict) -> dict:
    """Per condition (quiet, hog) and load: each run's ratios, the spread of each side's p99, and whether
    every run met the targets."""
    out = {}
    for condition, runs in (("quiet", lat["runs"]), ("hog", lat["hog_runs"])):
        for load, targets in lat["targets"].items():
            rows = [(r["raw"][load], r["eda"][load]) for r in runs if load in r["raw"] and load in r["eda"]]
            if not rows:
                continue
            ratios = {key: [e[key] / r[key] if r[key] else float("inf") for r, e in rows]
                      for key in ("p50_ms", "p99_ms", "max_ms")}
            out[f"{condition} {load}"] = {
                "ratios": ratios,
                "raw_p99_spread": [min(r["p99_ms"] for r, _ in rows), max(r["p99_ms"] for r, _ in rows)],
                "eda_p99_spread": [min(e["p99_ms"] for _, e in rows), max(e["p99_ms"] for _, e in rows)],
                "met": all(ratio <= bound for key, bound in targets.items() for ratio in ratios[key])
                and all(e["shipped"] == e["sent"] for _, e in rows)}
    return out


def table(lat: dict) -> list[list[str]]:
    header = ["condition", "load", "run", "orders/s", "raw p50", "raw p99", "raw max", "eda p50", "eda p99",
              "eda max", "p50 ×", "p99 ×", "target", "met"]
    body = []
    for condition, runs in (("quiet", lat["runs"]), ("CPU hog", lat["hog_runs"])):
        for load, targets in lat["targets"].items():
            for i, r in enumerate(runs, 1):
                raw, eda = r["raw"].get(load), r["eda"].get(load)
                if raw is None or eda is None:
                    continue
                ratio = {k: eda[k] / raw[k] if raw[k] else float("inf") for k in ("p50_ms", "p99_ms")}
                met = all(ratio[k] <= bound for k, bound in targets.items()) and eda["shipped"] == eda["sent"]
                body.append([condition, f"{float(load):g} ×", str(i), f"{eda['rate']:,.0f}",
                             *(f"{raw[k]:.1f}" for k in ("p50_ms", "p99_ms", "max_ms")),
                             *(f"{eda[k]:.1f}" for k in ("p50_ms", "p99_ms", "max_ms")),
                             f"{ratio['p50_ms']:.2f}", f"{ratio['p99_ms']:.2f}",
                             ", ".join(f"{k[:3]} ≤ {v:g}×" for k, v in targets.items()), "yes" if met else "NO"])
            s = lat["summary"].get(f"{'hog' if condition == 'CPU hog' else 'quiet'} {load}")
            if s:
                body.append([condition, f"{float(load):g} ×", "spread", "",
                             "", f"{s['raw_p99_spread'][0]:.1f}–{s['raw_p99_spread'][1]:.1f}", "",
                             "", f"{s['eda_p99_spread'][0]:.1f}–{s['eda_p99_spread'][1]:.1f}", "",
                             f"{min(s['ratios']['p50_ms']):.2f}–{max(s['ratios']['p50_ms']):.2f}",
                             f"{min(s['ratios']['p99_ms']):.2f}–{max(s['ratios']['p99_ms']):.2f}",
                             "every run", "yes" if s["met"] else "NO"])
    return [header, *body]


def about(lat: dict) -> str:
    rates = ", ".join(f"{float(k):g} × = {v:,.0f}/s" for k, v in lat["rates"].items())
    return (f"Latency order.placed -> order.shipped (ms), three `eda worker` processes beside three raw kombu relays "
            f"(a confirm per publish), alternating in each run: relays' three-hop capacity {lat['capacity']['rate']:,.0f} "
            f"orders/s, loads {rates}; {len(lat['runs'])} runs, then {len(lat['hog_runs'])} with a CPU hog (one busy "
            "process per core) beside both; × = eda / raw in the same run; spread = the lowest and highest p99 "
            "(and ratio) over the runs.")


def text(lat: dict) -> str:
    cells = table(lat)
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.rjust(wd) for c, wd in zip(row, widths)) for row in cells]
    return "\n".join([about(lat), lines[0], "-" * len(lines[0]), *lines[1:]])


def markdown(lat: dict) -> str:
    cells = table(lat)
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(cells[0])]
    lines += ["| " + " | ".join(row) + " |" for row in cells[1:]]
    return "\n" + about(lat) + "\n\n" + "\n".join(lines) + "\n"
