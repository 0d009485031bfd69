"""The store API on PostgreSQL, driven as several hosts would: stores opened at once on one database,
and two copies of one event recorded at the same moment give one effect."""

import threading
from urllib.parse import urlsplit, urlunsplit
from concurrent.futures import ThreadPoolExecutor

import pytest

from eda.errors import StoreUnavailable
from eda.settings import Settings
from eda.store import open_store
from tests import pg

pytestmark = pytest.mark.integration

SCHEMA = "CREATE TABLE IF NOT EXISTS counter (name TEXT PRIMARY KEY, value BIGINT NOT NULL);"


def stores(database, count, namespace="shop"):
    """``count`` stores opened at the same moment (instances starting together on several hosts)."""
    settings = Settings(database_url=database, namespace=namespace, concurrency=2)
    barrier = threading.Barrier(count)

    def opened(_):
        barrier.wait()
        return open_store(settings, "counter", SCHEMA)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(opened, range(count)))


def test_instances_starting_at_once_create_one_schema(database):
    opened = stores(database, 6)
    try:
        assert pg.query(database, "SELECT count(*) FROM pg_namespace WHERE nspname = 'shop'") == [(1,)]
        assert all(s.backend == "postgresql" for s in opened)
    finally:
        for s in opened:
            s.close()


def test_two_copies_of_one_event_at_the_same_moment_count_once(database):
    # Given two stores (two hosts) on one database, and a counter at 0
    first, second = stores(database, 2)
    with first.transaction() as tx:
        tx.execute("INSERT INTO counter VALUES ('stock', 0)")
    barrier = threading.Barrier(2)

    try:
        # When both handle a copy of the same event at the same moment, 20 times over with new ids
        outcomes = []
        for n in range(20):
            barrier.reset()
            event_id = f"event-{n}"
            with ThreadPoolExecutor(2) as pool:
                outcomes.append(sorted(pool.map(lambda s, e=event_id: _count(s, e, barrier), (first, second))))
        # Then exactly one copy of each counted
        assert outcomes == [[False, True]] * 20
        assert first.read("SELECT value FROM counter WHERE name = ?", ("stock",)) == [(200,)]
        assert second.was_processed("event-7") and not second.was_processed("event-99")
    finally:
        first.close()
        second.close()


def _count(store, event_id, barrier) -> bool:
    barrier.wait()
    with store.transaction() as tx:
        if not tx.first_time(event_id):
            return False
        tx.execute("UPDATE counter SET value = value + ? WHERE name = ?", (10, "stock"))
        return True


def test_a_store_whose_connections_were_killed_fails_once_then_works(database):
    store = open_store(Settings(database_url=database, namespace="shop"), "counter", SCHEMA)
    try:
        store.read("SELECT 1")
        assert pg.terminate_connections(database.rsplit("/", 1)[1]) >= 1
        with pytest.raises(StoreUnavailable, match="the state database .* is unavailable"):
            store.read("SELECT 1")
        assert store.read("SELECT 1") == [(1,)]
    finally:
        store.close()


def test_a_worker_started_before_its_database_waits_for_it_then_consumes(eda, database):
    from tests.proxy import TcpProxy
    from tests.monitoring import free_port

    # Given a database reached through a proxy that answers nothing yet (the database's host still booting)
    proxy = TcpProxy("127.0.0.1", free_port())
    try:
        url = proxy.url(database)  # the same user and password, the proxy's address
        # When a worker with its state there starts
        worker = eda.start("worker", "shipping", EDA_DATABASE_URL=url)
        worker.wait_for_log(lambda r: "trying again" in str(r.get("message", "")), what="a try of the database")
        # Then it waits, trying again, and consumes once the database answers
        proxy.target = ("127.0.0.1", urlsplit(database).port or 5432)
        worker.wait_ready()
        assert worker.proc.poll() is None
    finally:
        proxy.close()


@pytest.mark.parametrize("wrong", ["role", "database"])
def test_a_database_that_refuses_the_worker_is_a_one_line_error_at_once(eda, database, wrong):
    parts = urlsplit(database)
    password = f":{parts.password}" if parts.password else ""
    url = urlunsplit(parts._replace(netloc=f"no_such_role{password}@{parts.hostname}:{parts.port or 5432}")) \
        if wrong == "role" else urlunsplit(parts._replace(path="/no_such_database"))
    code, output = eda.run("worker", "shipping", EDA_DATABASE_URL=url, timeout=20)
    assert code == 2 and output.splitlines()[-1].startswith("error: cannot open the state database "), output
    assert f'{wrong} "no_such_' in output.splitlines()[-1] and "does not exist" in output.splitlines()[-1]
