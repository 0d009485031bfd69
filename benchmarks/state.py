"""Inventory reservations per second with its state in SQLite, and in PostgreSQL at 1 and 3 instances.

Each run pre-loads ``n`` paid single-unit orders over 100 SKUs (stock enough for all) into inventory's
queue, starts the `eda worker inventory` processes (default settings; with PostgreSQL, handler threads),
and times the reactions (``inventory.reserved``) arriving in a sink queue between 5% and 95% of them,
so that the processes' start-up is left out. PostgreSQL runs get a database of their own, dropped
afterwards. The ratio 3 instances / 1 instance is the figure of scale-out on this machine.

What limits it here: two cores shared by the worker processes, PostgreSQL and RabbitMQ. A reservation
is 5 round trips to PostgreSQL (BEGIN, the claim, the conditional stock update, the decision, COMMIT)
and a commit; one instance's 4 handler threads leave the cores partly idle while they wait on those,
three instances fill them, and past that every instance competes for the same two cores. Orders spread
over 100 SKUs: on one SKU the row lock serialises every reservation, whatever the instances.
"""

import tempfile
import time
import uuid
from decimal import Decimal
from urllib.parse import urlsplit, urlunsplit

from benchmarks.bench import Bench, CpuWindow, eda_worker, stop, wait_for
from eda.contracts.envelope import Event
from eda.store import open_store
from eda_shop.workers.inventory import SCHEMA, Inventory

SKUS = 100
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def paid_event(i: int) -> Event:
    data = {"order_id": f"ord-{i:08d}", "payment_id": f"pay-{i:08d}", "amount": Decimal("10.00"), "currency": "USD",
            "items": [{"sku": f"SKU-{i % SKUS:04d}", "quantity": 1, "unit_price": Decimal("10.00")}]}
    return Event("payment.succeeded", data, "eda/bench")


def run(bench: Bench, n: int, instances: int, database_url: str | None) -> float:
    """Reservations per second of ``instances`` inventory processes sharing one state, with the cores
    the instances used and the machine's busy share over the timed window."""
    with tempfile.TemporaryDirectory(prefix="eda-bench-state-") as state:
        settings = bench.settings.with_(state_dir=state, database_url=database_url)
        store = open_store(settings, "inventory", SCHEMA)  # the stock, before the workers start
        with store.transaction() as tx:
            tx.executemany("INSERT INTO stock (sku, quantity) VALUES (?, ?)",
                           [(f"SKU-{s:04d}", n) for s in range(SKUS)])
        store.close()
        sink = bench.queue(f"sink-state-{uuid.uuid4().hex[:6]}", "inventory.reserved").name
        queue = bench.worker_queue(Inventory.name, Inventory.handlers)
        bench.preload(queue, paid_event, n)
        env = bench.worker_env(state)
        if database_url:
            env["EDA_DATABASE_URL"] = database_url
        procs = [eda_worker(["inventory"], env) for _ in range(instances)]
        try:
            low, high = max(1, n // 20), n - n // 20
            wait_for(lambda: bench.depth(sink) >= low, 300, f"{low} reservations")
            started = time.perf_counter()
            done_low = bench.depth(sink)
            pids = {f"instance {i + 1}": proc.pid for i, proc in enumerate(procs)}
            with CpuWindow(pids) as cpu:
                wait_for(lambda: bench.depth(sink) >= high, 900, f"{high} reservations", interval=0.01)
            done = bench.depth(sink) - done_low
            usage = cpu.summary(done)
            return {"rate": done / (time.perf_counter() - started), "machine_busy": usage["machine_busy"],
                    "worker_cores": round(sum(p["cores"] for p in usage["processes"].values()), 3),
                    "worker_cpu_ms_per_order": round(sum(p["cpu_ms_per_unit"] for p in usage["processes"].values()), 3)}
        finally:
            for proc in procs:
                stop(proc)
            bench.channel.queue_delete(sink)


def reservations(bench: Bench, n: int, step=lambda what: None) -> dict:
    import psycopg

    results = {"n": n, "skus": SKUS}
    step(f"state: inventory on SQLite, 1 instance, {n:,} orders")
    results["sqlite_1"] = run(bench, n, 1, None)
    for instances in (1, 3):
        name = f"eda_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=10) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            step(f"state: inventory on PostgreSQL, {instances} instance(s), {n:,} orders")
            url = urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))
            results[f"postgresql_{instances}"] = run(bench, n, instances, url)
        finally:
            with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=10) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    results["ratio_3_to_1"] = results["postgresql_3"]["rate"] / results["postgresql_1"]["rate"]
    return results
