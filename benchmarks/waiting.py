"""Workers that wait on the network: `eda worker payment` against `eda gateway --latency 0.02`, beside the
hand-written relay a developer would write instead (benchmarks.payment_relay: aio-pika + aiohttp,
prefetch = concurrency, a task per message, a keep-alive pool, the reaction confirmed, then the ack;
no validation, no state).

For each concurrency (1, 4, 16, 64, 256), one after another so that the three are compared under the
same conditions: the gateway alone, loaded by a plain client with as many keep-alive connections
(benchmarks.load); then the hand-written relay, eda's threaded payment and eda's async payment, each
draining pre-loaded orders (rate from its first ``payment.*`` on the wire to the last, so start-up is
not counted, with the CPU each process used per order meanwhile), then taking orders sent at half what
the gateway alone answered, timed from publish to ``payment.*``. Targets, as ratios to the relay in
the same run: async at least 1.0x at every concurrency, threads at least 0.9x up to 64. Concurrency /
latency (the ideal) and the share of it reached are shown too: on two cores no Python consumer gets
near it past about 64 (the relay's CPU per order sets the ceiling).
Every worker, the relay and the gateway run as the processes a user starts.
"""

import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks.bench import Bench, CpuWindow, broker_pid, eda_worker, order_event, stop, wait_for
from benchmarks.latency import Probe
from eda import discovery

ROOT = Path(__file__).resolve().parents[1]
LATENCY = 0.02
LEVELS = (1, 4, 16, 64, 256)
TARGET = 0.8  # of the ideal: the old target, shown as "share" (withdrawn: see the module docstring)
RELAY = "hand-written"  # the baseline row: benchmarks.payment_relay
TARGETS = {"async": (1.0, None), "threads": (0.9, 64)}  # style -> (ratio to the relay, up to this concurrency)
GATEWAY_TARGET = 2000  # answers/s of `eda gateway` at 20 ms with 256 connections
LOAD_SHARE = 0.5  # the latency run sends orders at this share of the gateway's rate

# How each style of handler is run: style -> (worker name, extra environment of `eda worker`).
# A worker with async handlers gets its row by an entry here (its name as registered, its settings).
STYLES = {"threads": ("payment", {}),
          "async": ("payment", {"EDA_APP": "eda_shop.workers.payment_async"})}  # the same worker, `async def` handlers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gateway(latency: float) -> tuple[subprocess.Popen, str]:
    """`eda gateway --latency L` on a free port, as a user starts it; returns it and its URL."""
    port = free_port()
    script = Path(sys.executable).parent / "eda"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "cli"]
    proc = subprocess.Popen([*command, "gateway", "--port", str(port), "--latency", str(latency)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def answering():  # its socket listens before its loop serves (imports take a while): ask it
        if proc.poll() is not None:
            raise RuntimeError(f"eda gateway exited {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=30) as resp:
                return resp.status == 200
        except OSError:
            return False
    wait_for(answering, 60, "eda gateway answering", interval=0.1)
    return proc, f"http://127.0.0.1:{port}"


def gateway_alone(url: str, connections: int, seconds: float) -> dict:
    """The plain load client in a process of its own (benchmarks.load)."""
    out = subprocess.run([sys.executable, "-m", "benchmarks.load", url, "--connections", str(connections),
                          "--seconds", str(seconds)], cwd=ROOT, capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(f"load client failed: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout)


def orders_for(concurrency: int, quick: bool) -> int:
    """Enough orders for a few seconds at the ideal rate, within bounds."""
    ideal = concurrency / LATENCY
    return int(min(max(ideal * (1 if quick else 4), 40 if quick else 300), 600 if quick else 6000))


class PaymentRun:
    """One `eda worker` of a style at one concurrency, on a state folder of its own."""

    def __init__(self, bench: Bench, style: str, concurrency: int, url: str):
        self.bench, self.concurrency, self.url = bench, concurrency, url
        self.name, extra = STYLES[style]
        self.env = {**extra, "EDA_CONCURRENCY": str(concurrency), "EDA_PAYMENT_GATEWAY_URL": url,
                    "EDA_LOG_LEVEL": "WARNING"}
        self.queue = bench.worker_queue(self.name, discovery.get(self.name).handlers)
        self.proc = None

    def __enter__(self):
        self.state = tempfile.TemporaryDirectory(prefix="eda-bench-")
        return self

    def start(self) -> None:
        self.proc = eda_worker([self.name], {**self.bench.worker_env(self.state.name), **self.env})
        wait_for(lambda: self.proc.poll() is not None or self.bench.consumers(self.queue), 60, f"{self.name} consuming")
        if self.proc.poll() is not None:
            raise RuntimeError(f"eda worker {self.name} exited {self.proc.returncode}")

    def dead_lettered(self) -> int:
        return self.bench.depth(f"{self.queue}.dlq")

    def __exit__(self, *exc):
        if self.proc is not None:
            stop(self.proc)
        self.bench.topology.delete_worker(self.bench.channel, self.name)
        self.state.cleanup()


class RelayRun:
    """The hand-written relay (benchmarks.payment_relay) at one concurrency, on a queue of its own bound
    to ``order.placed`` as payment's is."""

    def __init__(self, bench: Bench, concurrency: int, url: str):
        self.bench, self.concurrency, self.url = bench, concurrency, url
        self.name = RELAY
        self.queue = bench.queue(f"relay-payment-{concurrency}", "order.placed").name
        self.proc = None

    def __enter__(self):
        return self

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.payment_relay", self.queue,
                                      self.bench.topology.events.name, self.url, "--concurrency",
                                      str(self.concurrency)], cwd=ROOT, stdout=subprocess.DEVNULL)
        wait_for(lambda: self.proc.poll() is not None or self.bench.consumers(self.queue), 60, "the relay consuming")
        if self.proc.poll() is not None:
            raise RuntimeError(f"the hand-written relay exited {self.proc.returncode}")

    def dead_lettered(self) -> int:
        return 0  # no dead letters: a failure is not handled at all

    def __exit__(self, *exc):
        if self.proc is not None:
            stop(self.proc)
        self.bench.channel.queue_delete(self.queue)


def drain(bench: Bench, run, sink: str, n: int, gateway_pid: int) -> dict:
    """Pre-load ``n`` orders, start the worker, time its first to its last ``payment.*``, with the CPU
    the worker, the gateway and the broker used meanwhile (what limits the rate)."""
    bench.channel.queue_purge(sink)
    bench.preload(run.queue, order_event, n)
    run.start()
    first = wait_for(lambda: bench.depth(sink) and time.perf_counter(), 120, "the first payment")
    done_first = bench.depth(sink)
    pids = {"worker": run.proc.pid, "gateway": gateway_pid}
    if (broker := broker_pid()) is not None:
        pids["broker"] = broker
    timeout = 60 + n / max(1.0, 0.05 * run.concurrency / LATENCY)  # generous: 5 % of the ideal rate
    with CpuWindow(pids) as cpu:
        last = wait_for(lambda: bench.depth(sink) >= n and time.perf_counter(), timeout, f"{n} payments",
                        interval=0.005)
    dead = run.dead_lettered()
    return {"orders": n, "rate": (n - 1) / (last - first), "dead_lettered": dead,
            "cpu": cpu.summary(n - done_first)}


def timed(bench: Bench, run, rate: float, seconds: float) -> dict:
    """Orders at ``rate`` for ``seconds`` to the running worker: publish to ``payment.*`` per order."""
    probe = Probe(bench, "payment.*")
    try:
        probe.warm_up()
        return probe.run(rate, seconds, warmup=min(1.0, seconds / 4), make_event=lambda i: order_event(10**7 + i))
    finally:
        probe.close()


def relay_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("aio_pika") is not None


def run_of(bench: Bench, style: str, c: int, url: str):
    return RelayRun(bench, c, url) if style == RELAY else PaymentRun(bench, style, c, url)


def measure(bench: Bench, quick: bool, levels=LEVELS, styles=None, step=lambda what: None) -> dict:
    seconds = 1.0 if quick else 3.0
    gateway, url = start_gateway(LATENCY)
    results = {"latency_ms": LATENCY * 1000, "target": TARGET, "load_share": LOAD_SHARE, "gateway": {}, "styles": {},
               "baseline": RELAY, "targets": {k: list(v) for k, v in TARGETS.items()}}
    styles = list(styles or STYLES)
    if relay_available():
        styles.insert(0, RELAY)
    else:
        step("waiting: aio-pika is not installed (pip install -e '.[bench]'): no hand-written relay to compare with")
    sink = bench.queue("sink-payment", "payment.*").name
    try:
        for c in levels:  # every style at one concurrency, then the next: compared under the same conditions
            step(f"waiting: eda gateway alone, plain client, {c} connections")
            results["gateway"][str(c)] = gateway_alone(url, c, seconds)
            for style in styles:
                n = orders_for(c, quick)
                who = "the hand-written relay" if style == RELAY else f"eda worker {STYLES[style][0]} ({style})"
                step(f"waiting: {who}, concurrency {c}, {n} orders")
                with run_of(bench, style, c, url) as run:
                    row = drain(bench, run, sink, n, gateway.pid)
                    rate = max(1.0, LOAD_SHARE * min(c / LATENCY, results["gateway"][str(c)]["rate"]))
                    step(f"waiting: latency at {rate:,.0f} orders/s")
                    row["timed"] = timed(bench, run, rate, seconds * 2)
                results["styles"].setdefault(style, {})[str(c)] = row
        results["capacity"] = max(g["rate"] for g in results["gateway"].values())
    finally:
        stop(gateway)
        bench.channel.queue_delete(sink)
    return results


def ratio_to_relay(w: dict, style: str, c: str) -> float | None:
    relay = w["styles"].get(w.get("baseline", RELAY), {}).get(c)
    return w["styles"][style][c]["rate"] / relay["rate"] if relay and style != w.get("baseline", RELAY) else None


def met(w: dict, style: str, c: str) -> str:
    """'yes'/'NO' against the style's target ratio to the relay where it has one at ``c``, else ''."""
    target, up_to = w.get("targets", TARGETS).get(style, (None, None))
    ratio = ratio_to_relay(w, style, c)
    if target is None or ratio is None or (up_to is not None and int(c) > up_to):
        return ""
    return "yes" if ratio >= target and not w["styles"][style][c]["dead_lettered"] else "NO"


def table(w: dict) -> list[list[str]]:
    header = ["style", "concurrency", "ideal (c / latency)", "gateway alone (c connections)", "orders/s",
              "× hand-written", "target", "met", "share of ideal", "p50 ms", "p99 ms", "at orders/s", "process cores",
              "process CPU ms/order", "gateway cores", "broker cores", "machine busy"]
    body = []
    levels = sorted({c for rows in w["styles"].values() for c in rows}, key=int)
    for c in levels:  # grouped by concurrency: the rows compared stand together
        for style, rows in w["styles"].items():
            if c not in rows:
                continue
            row = rows[c]
            ideal = int(c) / (w["latency_ms"] / 1000)
            alone = w["gateway"][c]["rate"]
            ratio = ratio_to_relay(w, style, c)
            target, up_to = w.get("targets", TARGETS).get(style, (None, None))
            target_text = f"≥ {target:g}×" if target is not None and (up_to is None or int(c) <= up_to) else ""
            t = row["timed"]
            body.append([style, c, f"{ideal:,.0f}", f"{alone:,.0f}", f"{row['rate']:,.0f}",
                         f"{ratio:.2f}" if ratio is not None else ("baseline" if style == RELAY else "–"),
                         target_text, met(w, style, c), f"{row['rate'] / ideal:.2f}",
                         f"{t['p50_ms']:.1f}", f"{t['p99_ms']:.1f}", f"{t['rate']:,.0f}", *cpu_cells(row.get("cpu"))])
    return [header, *body]


def cpu_cells(cpu: dict | None) -> list[str]:
    """Cores used by the worker, its CPU per order, the gateway's and broker's cores, the machine's busy share."""
    if not cpu:
        return ["–"] * 5
    procs = cpu["processes"]

    def cores(name):
        return f"{procs[name]['cores']:.2f}" if name in procs else "–"
    return [cores("worker"), f"{procs['worker']['cpu_ms_per_unit']:.2f}", cores("gateway"), cores("broker"),
            f"{cpu['machine_busy']:.0%}"]


def about(w: dict) -> str:
    at_256 = w["gateway"].get("256")
    target = (f", {at_256['rate']:,.0f} at 256 connections (target ≥ {GATEWAY_TARGET:,}: "
              f"{'yes' if at_256['rate'] >= GATEWAY_TARGET and not at_256['errors'] else 'NO'}, "
              f"{at_256['errors']} errors)" if at_256 else "")
    return (f"Payment worker against `eda gateway --latency {w['latency_ms'] / 1000:g}`, beside the hand-written "
            f"aio-pika + aiohttp relay in the same run: gateway capacity "
            f"{w['capacity']:,.0f} answers/s{target} (plain load client, best of {', '.join(w['gateway'])} "
            "connections); × hand-written = orders/s / the relay's at that concurrency (targets: async ≥ 1.0× at "
            "every concurrency, threads ≥ 0.9× up to 64); share of ideal = orders/s / (concurrency / latency); "
            f"latency per order (publish to payment.*) at "
            f"{w['load_share']:g} × min(ideal, gateway alone at that concurrency); process CPU ms/order: the "
            "worker's or the relay's own process.")


def text(w: dict) -> str:
    cells = table(w)
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.rjust(wd) for c, wd in zip(row, widths)) for row in cells]
    return "\n".join([about(w), lines[0], "-" * len(lines[0]), *lines[1:]])


def markdown(w: dict) -> str:
    cells = table(w)
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(cells[0])]
    lines += ["| " + " | ".join(row) + " |" for row in cells[1:]]
    return "\n" + about(w) + "\n\n" + "\n".join(lines) + "\n"
