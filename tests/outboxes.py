"""An application using the transactional outbox, on either engine, and the `eda outbox relay` it runs
beside: what the outbox's and the scheduled events' integration tests share (fixtures ``app``, on both
engines, and ``pg_app``)."""

import contextlib

import pytest

from eda.outbox import Outbox
from eda.settings import Settings

STOCK = "stock-replenished"


class App:
    """An application writing its own rows and outbox events in one transaction, on either engine."""

    def __init__(self, env: dict, database_url: str | None):
        self.env = {**env, "EDA_DATABASE_URL": database_url or ""}
        self.outbox = Outbox(Settings(broker_url=env["EDA_BROKER_URL"], namespace=env["EDA_NAMESPACE"],
                                      state_dir=env["EDA_STATE_DIR"], database_url=database_url))
        self.postgres = database_url is not None
        with self.connect() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS stock_log (sku TEXT PRIMARY KEY, quantity INTEGER NOT NULL)")

    def connect(self):
        return self.outbox.connect()

    def sql(self, text: str) -> str:
        return text if self.postgres else text.replace("%s", "?")

    def replenish(self, *skus: str, commit=True) -> list[str]:
        """One transaction: a row of the application's and an event per SKU; the ids of the events."""
        conn = self.connect()
        try:
            ids = []
            for sku in skus:
                conn.execute(self.sql("INSERT INTO stock_log (sku, quantity) VALUES (%s, %s)"), (sku, 5))
                ids.append(self.outbox.add(conn, STOCK, {"sku": sku, "quantity": 5}).id)
            conn.commit() if commit else conn.rollback()
            return ids
        finally:
            conn.close()

    def rows(self, table="stock_log") -> int:
        conn = self.connect()
        try:
            return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        finally:
            conn.close()

    @contextlib.contextmanager
    def marks_held(self):
        """While inside, a relay can claim and publish rows but not mark them sent (its UPDATE waits)."""
        conn = self.connect()
        try:
            if self.postgres:  # SHARE conflicts with UPDATE's ROW EXCLUSIVE, not with FOR UPDATE's ROW SHARE
                conn.execute(f"LOCK TABLE {self.outbox.table.table} IN SHARE MODE")
            else:
                conn.isolation_level = None
                conn.execute("BEGIN IMMEDIATE")  # SQLite's one write lock; WAL readers go on
            yield
        finally:
            conn.rollback()
            conn.close()


@pytest.fixture(params=["postgresql", "sqlite"])
def app(request, env):
    url = request.getfixturevalue("database") if request.param == "postgresql" else None
    return App(env, url)


@pytest.fixture
def pg_app(env, database):
    return App(env, database)


def relay(eda, app, *args, **env):
    proc = eda.start("outbox", "relay", *args, **{**app.env, **env})
    proc.wait_for_log(lambda r: r.get("message", "").startswith("relaying the outbox"), what="the relay started")
    return proc
