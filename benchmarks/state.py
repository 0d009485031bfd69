"""Inventory reservations per second with its state in SQLite, and in PostgreSQL at 1 and 3 instances.

Each run pre-loads ``n`` paid single-unit orders over 100 SKUs (stock enough for all) into inventory's
queue, starts the `eda worker inventory` processes (default settings; with PostgreSQL, handler threads),
and times the reactions (``inventory.reserved``) arriving in a sink queue between 5% and 95% of them,
so that the processes' start-up is left out. PostgreSQL runs get a database of their own, dropped
afterwards. The ratio 3 instances / 1 instance is the figure of scale-out on this machine (target:
at least 2.5).

Scale-out measured honestly on one machine: every instance is confined to the same fraction of a core
(``CONFINE``: a cgroup CPU quota each, benchmarks.confine), so that three together stay well under the
machine's two cores and leave PostgreSQL (unconfined) and RabbitMQ room; one instance is confined the
same way. Unconfined, one instance spreads over both cores and three compete for them, and the ratio
says more about the machine than about eda. Where no cgroup can be made the runs go unconfined and
the table says so.

Also counted: PostgreSQL round trips per reservation, on the wire (benchmarks.pgcount: a proxy counting
the server's ReadyForQuery messages), in a run of its own through that proxy; and the CPU of the
database's backends serving the instances, per order.
"""

import tempfile
import time
import uuid
from decimal import Decimal
from urllib.parse import urlsplit, urlunsplit

from benchmarks.bench import Bench, CpuWindow, eda_worker, stop, wait_for
from benchmarks.confine import CpuQuota, Unavailable
from benchmarks.pgcount import RoundTrips
from eda.contracts.envelope import Event
from eda.store import open_store
from eda_shop.workers.inventory import SCHEMA, Inventory

SKUS = 100
CONFINE = 0.25  # cores each instance may use: three use 0.75 of the machine's two, PostgreSQL and RabbitMQ the rest
TARGET = 2.5  # reservations/s of three confined instances over one's
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def paid_event(i: int) -> Event:
    data = {"order_id": f"ord-{i:08d}", "payment_id": f"pay-{i:08d}", "amount": Decimal("10.00"), "currency": "USD",
            "items": [{"sku": f"SKU-{i % SKUS:04d}", "quantity": 1, "unit_price": Decimal("10.00")}]}
    return Event("payment.succeeded", data, "eda/bench")


def backends(database_url: str) -> list[int]:
    """The PostgreSQL backend processes serving eda's connections to the run's database."""
    import psycopg

    name = urlsplit(database_url).path.lstrip("/")
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=10) as admin:
        return [r[0] for r in admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND "
                                            "application_name LIKE 'eda-%%'", (name,)).fetchall()]


def run(bench: Bench, n: int, instances: int, database_url: str | None, cores: float | None = None,
        counter: RoundTrips | None = None) -> dict:
    """Reservations per second of ``instances`` inventory processes sharing one state, each confined to
    ``cores`` of CPU (None: unconfined), with the CPU they (and the database's backends) used over the
    timed window; with ``counter``, their connections go through it and the round trips are counted."""
    quotas = []
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
            env["EDA_DATABASE_URL"] = counter.url(database_url) if counter else database_url
        procs = []
        try:
            for _ in range(instances):
                quota = CpuQuota(cores) if cores else None
                if quota:
                    quotas.append(quota)
                procs.append(eda_worker(["inventory"], env, preexec_fn=quota.join if quota else None))
            low, high = max(1, n // 20), n - n // 20
            wait_for(lambda: bench.depth(sink) >= low, 300, f"{low} reservations")
            started = time.perf_counter()
            done_low = bench.depth(sink)
            pids = {f"instance {i + 1}": proc.pid for i, proc in enumerate(procs)}
            pg_pids = backends(database_url) if database_url else []
            pids.update({f"postgres {pid}": pid for pid in pg_pids})
            throttled = sum(q.throttled_seconds() for q in quotas)
            if counter:
                counter.reset()
            with CpuWindow(pids) as cpu:
                wait_for(lambda: bench.depth(sink) >= high, 900, f"{high} reservations", interval=0.01)
            done = bench.depth(sink) - done_low
            trips = counter.reset() if counter else None
            throttled = sum(q.throttled_seconds() for q in quotas) - throttled
            usage = cpu.summary(done)["processes"]
            workers = [p for k, p in usage.items() if k.startswith("instance")]
            pg = [p for k, p in usage.items() if k.startswith("postgres")]
            out = {"rate": done / (time.perf_counter() - started), "machine_busy": cpu.summary(done)["machine_busy"],
                   "worker_cores": round(sum(p["cores"] for p in workers), 3),
                   "worker_cpu_ms_per_order": round(sum(p["cpu_ms_per_unit"] for p in workers), 3),
                   "throttled_s": round(throttled, 3)}
            if database_url:
                out.update(postgres_cores=round(sum(p["cores"] for p in pg), 3),
                           postgres_cpu_ms_per_order=round(sum(p["cpu_ms_per_unit"] for p in pg), 3))
            if trips is not None:
                out["round_trips_per_order"] = round(trips / max(1, done), 3)
            return out
        finally:
            for proc in procs:
                stop(proc)
            for quota in quotas:
                quota.remove()
            bench.channel.queue_delete(sink)


def fresh_database():
    """A database of the run's own: (its name, its URL)."""
    import psycopg

    name = f"eda_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=10) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return name, urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=10) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def reservations(bench: Bench, n: int, step=lambda what: None, cores: float | None = CONFINE) -> dict:
    results = {"n": n, "skus": SKUS, "target": TARGET}
    results["confinement"] = "unconfined"
    try:
        if cores:
            probe = CpuQuota(cores)  # made here only to say what the runs get, and whether it can be had
            probe.remove()
            results["confinement"] = probe.describe
    except Unavailable as exc:
        step(f"state: cannot confine the instances ({exc}): unconfined")
        cores, results["confinement"] = None, f"unconfined ({exc})"
    step(f"state: inventory on SQLite, 1 instance, {n:,} orders, {results['confinement']}")
    results["sqlite_1"] = run(bench, n, 1, None, cores)
    for instances in (1, 3):
        name, url = fresh_database()
        try:
            step(f"state: inventory on PostgreSQL, {instances} instance(s), {n:,} orders, {results['confinement']}")
            results[f"postgresql_{instances}"] = run(bench, n, instances, url, cores)
        finally:
            drop_database(name)
    counted = min(n, 2000)
    name, url = fresh_database()
    counter = RoundTrips.before(url)
    try:
        step(f"state: PostgreSQL round trips per reservation, 1 instance through a counting proxy, {counted:,} orders")
        results["postgresql_counted"] = run(bench, counted, 1, url, None, counter=counter)
    finally:
        counter.close()
        drop_database(name)
    results["round_trips_per_order"] = results["postgresql_counted"]["round_trips_per_order"]
    results["ratio_3_to_1"] = results["postgresql_3"]["rate"] / results["postgresql_1"]["rate"]
    return results
