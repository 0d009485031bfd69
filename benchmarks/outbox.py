"""The outbox relay's publish rate beside `eda publish --file`'s: both real processes, the same N
order.placed events, the same broker and sink queue.

`eda publish order-placed --file` reads N JSON lines, validates them all, then publishes them
confirmed. `eda outbox relay` finds N rows that an application committed to an outbox in PostgreSQL (a
database of the run's own, dropped afterwards) and publishes them confirmed, marking them sent. For
each, the sink queue is watched: the publish rate is N over the time from the first event in the sink
to the N-th (what the issue compares); the wall rate also counts start-up (and, for publish, the
validation before the first event). The application's side (``outbox.add`` in one transaction) is
timed too.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from benchmarks.bench import ORDER, Bench, stop

ADMIN_URL = os.environ.get("EDA_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _eda(args, env) -> subprocess.Popen:
    """`eda ARGS` as a user runs it (the script beside this interpreter); its output goes nowhere."""
    script = Path(sys.executable).parent / "eda"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "cli"]
    return subprocess.Popen([*command, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _watch(bench: Bench, sink: str, n: int, started: float, proc, timeout: float = 600) -> dict:
    """Poll the sink until it holds ``n`` events: the publish and wall rates."""
    first = None
    deadline = time.monotonic() + timeout
    while True:
        depth = bench.depth(sink)
        now = time.perf_counter()
        if depth and first is None:
            first = now
        if depth >= n:
            break
        if time.monotonic() > deadline or (proc.poll() not in (None, 0)):
            raise RuntimeError(f"{depth} of {n} events reached {sink} (process exit status {proc.poll()})")
        time.sleep(0.005)
    return {"publish": n / max(now - first, 1e-6), "wall": n / (now - started)}


def _orders(n: int):
    return ({**ORDER, "order_id": f"ord-{i:08d}"} for i in range(n))


def publish_file(bench: Bench, sink: str, n: int, env: dict) -> dict:
    from eda.contracts import registry

    contract = registry.get("order.placed")
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl") as lines:
        for data in _orders(n):
            lines.write(json.dumps(contract.dump(data)) + "\n")
        lines.flush()
        started = time.perf_counter()
        proc = _eda(["publish", "order-placed", "--file", lines.name], env)
        try:
            rates = _watch(bench, sink, n, started, proc)
            if proc.wait(120) != 0:
                raise RuntimeError(f"eda publish --file exited {proc.returncode}")
        finally:
            stop(proc)
    return rates


def relay(bench: Bench, sink: str, n: int, env: dict) -> tuple[dict, float]:
    """(the relay's rates, outbox.add's events/s)."""
    from eda.outbox import Outbox
    from eda.settings import Settings

    outbox = Outbox(Settings(broker_url=bench.url, namespace=bench.namespace,
                             database_url=env["EDA_DATABASE_URL"]), source="eda/bench")
    conn = outbox.connect()
    try:
        started = time.perf_counter()
        with conn.cursor() as cur:
            for data in _orders(n):
                outbox.add(cur, "order-placed", data)
        conn.commit()
        add_rate = n / (time.perf_counter() - started)
    finally:
        conn.close()
    started = time.perf_counter()
    proc = _eda(["outbox", "relay"], env)
    try:
        rates = _watch(bench, sink, n, started, proc)
    finally:
        stop(proc)
    return rates, add_rate


def relay_vs_publish(bench: Bench, n: int) -> dict:
    sink = bench.queue("sink-outbox", "order.placed").name
    name = f"eda_bench_{uuid.uuid4().hex[:10]}"
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=10) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with tempfile.TemporaryDirectory(prefix="eda-bench-") as state:
            env = bench.worker_env(state)
            env["EDA_DATABASE_URL"] = urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))
            file_rates = publish_file(bench, sink, n, env)
            bench.channel.queue_purge(sink)
            relay_rates, add_rate = relay(bench, sink, n, env)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=10) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        bench.channel.queue_delete(sink)
    return {"n": n, "publish_file": file_rates["publish"], "relay": relay_rates["publish"],
            "publish_file_wall": file_rates["wall"], "relay_wall": relay_rates["wall"], "add": add_rate}
