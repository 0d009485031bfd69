"""The outbox table on each engine: PostgreSQL (``EDA_DATABASE_URL``, eda.outbox.postgres) or SQLite
under ``EDA_STATE_DIR`` (eda.outbox.sqlite). Each engine's class holds all of its SQL, with one API:
create (or upgrade) the table, add a row in the caller's transaction (at once, or scheduled with a due
time), claim the rows to publish, mark rows sent, tell when the next scheduled row falls due, delete
sent rows past a retention, count what is pending, list, look up and cancel scheduled rows.
"""

from eda.outbox.connect import SQLITE_BUSY_SECONDS, connect_postgres, connect_sqlite, quoted, sqlite_transaction
from eda.outbox.postgres import PostgresTable
from eda.outbox.sqlite import SqliteTable

__all__ = ["PostgresTable", "SqliteTable", "connect_postgres", "connect_sqlite", "quoted", "sqlite_transaction",
           "SQLITE_BUSY_SECONDS"]
