"""How late scheduled events are published: N events in the outbox, due over a span of seconds, all
pending when a real ``eda outbox relay`` starts; each event's lateness is the time it reached a sink
queue (read by a consumer in this process, its clock the relay's) minus its due time.

    python -m benchmarks --only schedule [--n 10000]         # PostgreSQL and SQLite, 30 s spans
    python -m benchmarks.schedule --n 10000 --span 30 --engines postgresql,sqlite --relays 1

The issue's target: every due event published within 1 s of its time with 10,000 pending (p50, p99
and max reported; ``early`` counts events that arrived before their due time, which must be 0). The
rows are written before the relay starts, due from a moment after it has started, so the figure is
the relay's steady precision, not its start-up.
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from benchmarks.bench import ORDER, Bench, stop

ADMIN_URL = os.environ.get("EDA_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
LEAD = 5.0  # seconds between the relay's start and the first due time
TARGET = 1.0  # seconds: the precision


def _relay(env) -> subprocess.Popen:
    script = Path(sys.executable).parent / "eda"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "cli"]
    return subprocess.Popen([*command, "outbox", "relay"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _write(outbox, n: int, first_due: float, span: float) -> dict[str, float]:
    """N order.placed events due evenly over ``span`` seconds from ``first_due``, in one transaction:
    event id -> due time."""
    dues = {}
    with outbox.connect() as conn:
        for i in range(n):
            due = first_due + span * i / max(n - 1, 1)
            event = outbox.add(conn, "order-placed", {**ORDER, "order_id": f"ord-{i:08d}"},
                               at=datetime.fromtimestamp(due, timezone.utc))
            dues[event.id] = due
    return dues


def _arrivals(bench: Bench, sink: str, n: int, deadline: float, procs) -> dict[str, float]:
    """Consume the sink until it gave ``n`` events or the deadline: event id -> arrival time."""
    arrivals = {}
    conn = bench.connection()
    try:
        channel = conn.connection.channel()
        channel.basic_qos(0, 1000, False)

        def arrived(message):
            arrivals[message.properties.get("message_id")] = time.time()

        channel.basic_consume(sink, callback=arrived, no_ack=True)
        while len(arrivals) < n and time.time() < deadline:
            if any(p.poll() not in (None, 0) for p in procs):
                raise RuntimeError(f"a relay exited {[p.poll() for p in procs]}")
            try:
                conn.connection.drain_events(timeout=0.5)
            except socket.timeout:
                pass
    finally:
        conn.release()
    return arrivals


def lateness(bench: Bench, n: int, span: float, engine: str, relays: int = 1) -> dict:
    """One run on ``engine`` (``postgresql``: a database of the run's own, dropped afterwards; ``sqlite``:
    a temporary state folder); figures in seconds."""
    from eda.outbox import Outbox
    from eda.settings import Settings

    sink = bench.queue(f"sink-schedule-{engine}", "order.placed").name
    name = f"eda_bench_{uuid.uuid4().hex[:10]}"
    admin = None
    if engine == "postgresql":
        import psycopg

        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=10)
        admin.execute(f'CREATE DATABASE "{name}"')
    procs = []
    try:
        with tempfile.TemporaryDirectory(prefix="eda-bench-") as state:
            env = bench.worker_env(state)
            env["EDA_DATABASE_URL"] = urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}")) \
                if engine == "postgresql" else ""
            outbox = Outbox(Settings(broker_url=bench.url, namespace=bench.namespace, state_dir=state,
                                     database_url=env["EDA_DATABASE_URL"] or None), source="eda/bench")
            written = time.time()
            # due times begin once the rows are written and the relays have had LEAD seconds to start
            estimate = n / 2000.0
            dues = _write(outbox, n, written + estimate + LEAD, span)
            write_seconds = time.time() - written
            if min(dues.values()) < time.time() + 1.0:
                raise RuntimeError(f"writing {n} rows took {write_seconds:.1f}s, past the first due time: "
                                   f"the machine is too busy for this measure")
            procs = [_relay(env) for _ in range(relays)]
            arrivals = _arrivals(bench, sink, n, max(dues.values()) + 60, procs)
    finally:
        for proc in procs:
            stop(proc)
        bench.channel.queue_delete(sink)
        if admin is not None:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.close()
    late = sorted(arrivals[i] - dues[i] for i in dues if i in arrivals)
    if len(late) < n:
        raise RuntimeError(f"{n - len(late)} of {n} due events did not arrive within 60 s of the last due time")
    return {"engine": engine, "n": n, "span": span, "relays": relays, "write_seconds": write_seconds,
            "p50": statistics.median(late), "p99": late[min(len(late) - 1, int(len(late) * 0.99))],
            "max": late[-1], "early": sum(1 for x in late if x < 0)}


def measure(bench: Bench, n: int, span: float, engines=("postgresql", "sqlite"), relays: int = 1, step=None) -> dict:
    results = {}
    for engine in engines:
        if step:
            step(f"schedule: {n:,} events due over {span:g} s, `eda outbox relay` x{relays} ({engine})")
        results[engine] = lateness(bench, n, span, engine, relays)
    return results


def text(results: dict) -> str:
    lines = ["| engine | events | span | relays | p50 late | p99 late | max late | early | target |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results.values():
        lines.append(f"| {r['engine']} | {r['n']:,} | {r['span']:g} s | {r['relays']} | {r['p50'] * 1000:.0f} ms | "
                     f"{r['p99'] * 1000:.0f} ms | {r['max'] * 1000:.0f} ms | {r['early']} | "
                     f"max < {TARGET:g} s: {'yes' if r['max'] < TARGET and not r['early'] else 'no'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.schedule", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10000, help="scheduled events [10000]")
    p.add_argument("--span", type=float, default=30.0, help="seconds over which they fall due [30]")
    p.add_argument("--engines", default="postgresql,sqlite", help="postgresql, sqlite or both [both]")
    p.add_argument("--relays", type=int, default=1, help="relays running at once (PostgreSQL shares) [1]")
    args = p.parse_args(argv)
    bench = Bench()
    print(f"eda schedule benchmark on {bench.settings.safe_broker_url}, namespace {bench.namespace}", file=sys.stderr)
    try:
        results = measure(bench, args.n, args.span, [e.strip() for e in args.engines.split(",") if e.strip()],
                          args.relays, step=lambda what: print(f"  {what}", file=sys.stderr, flush=True))
    finally:
        bench.reconnect()
        bench.cleanup()
    print(text(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
