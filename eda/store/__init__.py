"""A worker's state: one small API over two backends, chosen by ``EDA_DATABASE_URL``.

    from eda.store import open_store

    SCHEMA = "CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY, quantity BIGINT NOT NULL);"

    def setup(self):
        self.store = open_store(self.settings, "inventory", SCHEMA)

    @handles("stock.replenished")
    def replenish(self, event, ctx):
        with self.store.transaction() as tx:             # one atomic transaction
            if not tx.first_time(event.id):              # a copy of an event already counted
                return
            tx.execute("INSERT INTO stock VALUES (?, ?) ON CONFLICT (sku) DO UPDATE "
                       "SET quantity = stock.quantity + excluded.quantity", (sku, qty))

Unset ``EDA_DATABASE_URL``: a SQLite file per worker under ``EDA_STATE_DIR`` (one host, one instance).
``postgresql://...``: the namespace's schema in that database, shared by every instance on every host.
The SQL is the part both engines share: ``?`` placeholders, ``TEXT``/``BIGINT``/``DOUBLE PRECISION``,
``INSERT ... ON CONFLICT``, ``UPDATE ... RETURNING``. Under PostgreSQL, instances run at once: decide
with one conditional statement (``UPDATE ... WHERE quantity >= ?``, ``INSERT ... ON CONFLICT DO
NOTHING``), never read-then-write.

A store has ``transaction()`` (a context manager giving ``execute``, ``executemany``, ``first_time``),
``read(sql, params)`` (rows of one query), ``was_processed``/``record_processed`` (the record of processed
events the runtime keeps for ``record_processed`` workers), ``backend``, ``location`` and ``close()``.
A lost database raises ``eda.errors.StoreUnavailable`` in the handler: a transient failure.
"""

from typing import TYPE_CHECKING

from eda.errors import ConfigError
from eda.names import schema_name
from eda.settings import Settings
from eda.store.sqlite import SqliteStore, Store

if TYPE_CHECKING:  # imported where used: psycopg only for PostgreSQL
    from eda.store.postgres import PostgresStore

__all__ = ["open_store", "describe", "schema_name", "Store", "SqliteStore"]


def open_store(settings: Settings, name: str, schema: str = "", *,
               patience: float | None = None) -> "SqliteStore | PostgresStore":
    """The store named ``name`` (a worker's name) of these settings' namespace, its ``schema`` (SQL
    creating its tables, idempotent: ``CREATE TABLE IF NOT EXISTS``) applied. A PostgreSQL database
    that does not answer is waited for up to ``patience`` seconds (default: ``EDA_RECONNECT_WINDOW``,
    as a worker waits for its broker), then ``StoreUnavailable`` (exit 1, a supervisor restarts it);
    one that refuses (password, database name) is a ``ConfigError`` (exit 2). Both name it without its
    password."""
    url = settings.database_url
    if not url:
        return SqliteStore(settings.state_dir, f"{settings.namespace}.{name}", schema)
    if not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"--database-url (EDA_DATABASE_URL): {settings.safe_database_url} is not a "
                          f"postgresql:// URL")
    from eda.store.postgres import PostgresStore  # psycopg only where it is used

    return PostgresStore(url, settings.namespace, name, schema, pool_size=settings.concurrency + 1,
                         patience=settings.reconnect_window if patience is None else patience)


def describe(settings: Settings) -> dict:
    """Where the workers of these settings keep their state (no password), for ``eda status``."""
    if not settings.database_url:
        return {"backend": "sqlite", "location": str(settings.state_dir)}
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(settings.database_url)
        host = f"{parts.hostname or 'localhost'}:{parts.port or 5432}"
        return {"backend": "postgresql", "location": f"{host}{parts.path or '/'}",
                "schema": schema_name(settings.namespace)}
    except ValueError:
        return {"backend": "postgresql", "location": "<database URL cannot be parsed>"}
