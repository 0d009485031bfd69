"""Worker processes (issue 20, point 3): the async payment worker at concurrency 256 against `eda gateway
--latency 0.02`, as one process and as `eda worker payment --processes 2`, in the same run.

One worker process stops near one core (the GIL): the async payment at 256 spends about 0.6 ms of CPU
an order, so one process drains about 1,500 orders/s however many orders wait. Two processes, each with
concurrency 256 and its own connection, should drain ≥ 1.5× that where the machine has the cores
(target). Each row pre-loads the orders, starts the worker, waits until every process consumes, and
times its first ``payment.*`` on the wire to the last, with the CPU of the worker processes (the parent's
included), the gateway and the broker meanwhile: what limited the rate, measured.
"""

import tempfile
import time
from pathlib import Path

from benchmarks.bench import Bench, CpuWindow, broker_pid, eda_worker, order_event, stop, wait_for
from benchmarks.waiting import LATENCY, STYLES, orders_for, start_gateway
from eda import discovery

STYLE = "async"
CONCURRENCY = 256
PROCESSES = (1, 2)
TARGET = 1.5  # orders/s of --processes 2 over one process's


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc, as ps reads it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def drain(bench: Bench, processes: int, n: int, url: str, gateway_pid: int, sink: str) -> dict:
    """``n`` pre-loaded orders through `eda worker payment --processes N` (async style, concurrency 256)."""
    name, extra = STYLES[STYLE]
    queue = bench.worker_queue(name, discovery.get(name).handlers)
    bench.channel.queue_purge(sink)
    with tempfile.TemporaryDirectory(prefix="eda-bench-") as state:
        env = {**bench.worker_env(state), **extra, "EDA_CONCURRENCY": str(CONCURRENCY),
               "EDA_PROCESSES": str(processes), "EDA_PAYMENT_GATEWAY_URL": url, "EDA_LOG_LEVEL": "WARNING"}
        bench.preload(queue, order_event, n)
        proc = eda_worker([name], env)
        try:
            wait_for(lambda: proc.poll() is not None or bench.consumers(queue) >= processes, 60,
                     f"{processes} payment process(es) consuming")
            if proc.poll() is not None:
                raise RuntimeError(f"eda worker {name} --processes {processes} exited {proc.returncode}")
            first = wait_for(lambda: bench.depth(sink) and time.perf_counter(), 120, "the first payment")
            done_first = bench.depth(sink)
            workers = [proc.pid] + (children_of(proc.pid) if processes > 1 else [])
            pids = {f"worker-{i}": pid for i, pid in enumerate(workers)} | {"gateway": gateway_pid}
            if (broker := broker_pid()) is not None:
                pids["broker"] = broker
            with CpuWindow(pids) as cpu:
                last = wait_for(lambda: bench.depth(sink) >= n and time.perf_counter(), 60 + n / 50, f"{n} payments",
                                interval=0.005)
            dead = bench.depth(f"{queue}.dlq")
        finally:
            stop(proc)
            bench.topology.delete_worker(bench.channel, name)
    summary = cpu.summary(n - done_first)
    workers_cpu = [p for k, p in summary["processes"].items() if k.startswith("worker-")]
    return {"processes": processes, "orders": n, "rate": (n - 1) / (last - first),
            "dead_lettered": dead, "worker_cores": round(sum(p["cores"] for p in workers_cpu), 3),
            "worker_cpu_ms_per_order": round(sum(p["cpu_ms_per_unit"] for p in workers_cpu), 3), "cpu": summary}


def measure(bench: Bench, quick: bool, step=lambda what: None) -> dict:
    gateway, url = start_gateway(LATENCY)
    sink = bench.queue("sink-payment-processes", "payment.*").name
    n = orders_for(CONCURRENCY, quick)
    results = {"style": STYLE, "concurrency": CONCURRENCY, "latency_ms": LATENCY * 1000, "target": TARGET,
               "rows": []}
    try:
        for processes in PROCESSES:
            step(f"processes: eda worker payment ({STYLE}) --processes {processes}, concurrency {CONCURRENCY}, "
                 f"{n} orders")
            results["rows"].append(drain(bench, processes, n, url, gateway.pid, sink))
    finally:
        stop(gateway)
        bench.channel.queue_delete(sink)
    return results


def table(r: dict) -> list[list[str]]:
    header = ["processes", "orders", "eda orders/s", "× one process", "target", "met", "worker cores",
              "worker CPU ms/order", "gateway cores", "broker cores", "machine busy"]
    one = r["rows"][0]["rate"]
    body = []
    for row in r["rows"]:
        ratio = row["rate"] / one
        procs = row["cpu"]["processes"]
        target = f"≥ {r['target']:g}×" if row["processes"] > 1 else ""
        met = ("yes" if ratio >= r["target"] and not row["dead_lettered"] else "NO") if row["processes"] > 1 else ""
        body.append([str(row["processes"]), f"{row['orders']:,}", f"{row['rate']:,.0f}", f"{ratio:.2f}", target, met,
                     f"{row['worker_cores']:.2f}", f"{row['worker_cpu_ms_per_order']:.2f}",
                     *(f"{procs[k]['cores']:.2f}" if k in procs else "–" for k in ("gateway", "broker")),
                     f"{row['cpu']['machine_busy']:.0%}"])
    return [header, *body]


def about(r: dict) -> str:
    return (f"Worker processes: `eda worker payment` ({r['style']} handlers, concurrency {r['concurrency']} each) "
            f"against `eda gateway --latency {r['latency_ms'] / 1000:g}`, one process and `--processes 2`; "
            "worker cores and CPU per order summed over the processes (the parent's included).")


def text(r: dict) -> str:
    cells = table(r)
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.rjust(wd) for c, wd in zip(row, widths)) for row in cells]
    return "\n".join([about(r), lines[0], "-" * len(lines[0]), *lines[1:]])


def markdown(r: dict) -> str:
    cells = table(r)
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(cells[0])]
    lines += ["| " + " | ".join(row) + " |" for row in cells[1:]]
    return "\n" + about(r) + "\n\n" + "\n".join(lines) + "\n"
