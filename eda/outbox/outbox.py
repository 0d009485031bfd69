"""The application's side of the transactional outbox: an event is validated now and written to the
outbox table in the caller's own transaction, so that it is published (by ``eda outbox relay``) if and
only if that transaction commits.

    outbox = Outbox(Settings.from_env(), source="shop/web")
    with psycopg.connect(url) as conn:              # the application's connection and transaction
        conn.execute("INSERT INTO orders ...")
        event = outbox.add(conn, "order-placed", {"order_id": "1", ...})
"""

import sqlite3
import time

from eda import tracing
from eda.contracts.envelope import Event, encode
from eda.contracts.registry import EventRef
from eda.errors import ConfigError
from eda.outbox.tables import PostgresTable, SqliteTable, connect_postgres, connect_sqlite
from eda.publishing.producer import python_event
from eda.settings import Settings


class Outbox:
    """The outbox of ``settings.namespace``: in EDA_DATABASE_URL's database (PostgreSQL), else in
    ``EDA_STATE_DIR/<namespace>.outbox.sqlite3``. Making one creates the table where it does not exist yet."""

    def __init__(self, settings: Settings, source: str = "eda/outbox"):
        self.settings = settings
        self.source = source
        if settings.database_url:
            self.table = PostgresTable(settings.database_url, settings.namespace)
        else:
            self.table = SqliteTable(settings.state_dir, settings.namespace)
        conn = self.open(autocommit=True)
        try:
            self.table.create(conn)
        except self._errors() as exc:  # say, a user without the CREATE privilege
            reason = " ".join(str(exc).split())[:300]
            raise ConfigError(f"cannot create the outbox table in {self.where}: {reason}") from None
        finally:
            conn.close()

    def _errors(self) -> tuple:
        if self.engine == "sqlite":
            return (sqlite3.Error,)
        import psycopg

        return (psycopg.Error,)

    @property
    def engine(self) -> str:
        """``postgresql`` or ``sqlite``."""
        return self.table.engine

    @property
    def where(self) -> str:
        """The database and table, for messages (never a password)."""
        return self.table.where()

    def connect(self):
        """A new connection to the outbox's database for the application's own work: psycopg's
        (transaction opened by the first statement) or sqlite3's (``with conn:`` commits)."""
        if self.engine == "postgresql":
            return connect_postgres(self.table.url)
        try:
            return sqlite3.connect(self.table.path, timeout=30.0)
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the outbox {self.table.path} (EDA_STATE_DIR): {exc}") from None

    def open(self, autocommit: bool = False):
        """A connection for eda's own use (the relay, ``eda outbox status``); one-line errors."""
        if self.engine == "postgresql":
            return connect_postgres(self.table.url, autocommit=autocommit, application_name="eda-outbox")
        return connect_sqlite(self.table.path)

    def add(self, conn, event: EventRef, data: dict, correlation_id: str | None = None) -> Event:
        """Validate ``data`` (snake_case keys, Python values, as ``Producer.publish`` takes it) and write
        the CloudEvent to the outbox in ``conn``'s current transaction; return the event, whose id is
        the one consumers will see. Nothing is published until that transaction commits."""
        sqlite = self.engine == "sqlite"
        if sqlite and not isinstance(conn, (sqlite3.Connection, sqlite3.Cursor)):
            raise self._wrong_connection(conn)
        if not sqlite:
            import psycopg

            # An AsyncConnection's execute() is a coroutine: taking one would write nothing, silently.
            if not isinstance(conn, (psycopg.Connection, psycopg.Cursor)):
                raise self._wrong_connection(conn)
        built, wire = python_event(event, data, self.source, correlation_id)
        tracing.stamp(built)  # with tracing on, the relay's publish joins the caller's trace
        row = (built.id, built.type, built.source, built.correlation_id, encode(built, wire))
        if sqlite:
            conn.execute(self.table.insert_sql, (*row, time.time()))
            return built
        try:
            conn.execute(self.table.insert_sql, row)
        except psycopg.errors.UndefinedTable:
            raise ConfigError(f"outbox.add: this connection's database has no {self.table.schema}.outbox table: "
                              f"use a connection to the database of EDA_DATABASE_URL") from None
        return built

    def _wrong_connection(self, conn) -> ConfigError:
        wanted = "a psycopg 3 connection or cursor (not an async one)" if self.engine == "postgresql" \
            else "a sqlite3 connection"
        return ConfigError(f"outbox.add: the outbox is in {self.where}; pass {wanted} to that database "
                           f"(got {type(conn).__module__}.{type(conn).__name__})")

    def pending(self) -> tuple[int, float | None]:
        """(rows not yet published, seconds since the oldest of them was added, or None)."""
        conn = self.open(autocommit=True)
        try:
            return self.table.pending(conn)
        finally:
            conn.close()
