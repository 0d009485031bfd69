"""Connections to the outbox's database, with one-line errors that never show a password."""

import contextlib
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from eda.errors import ConfigError
from eda.store.liveness import limit_idle_transactions, tcp_options

SQLITE_BUSY_SECONDS = 30.0  # an application's write transaction holds SQLite's one write lock meanwhile


def quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def connect_postgres(url: str, *, autocommit: bool = False, application_name: str | None = None,
                     relay: bool = False):
    """A psycopg connection, or a one-line ConfigError that never shows the password. eda's own
    connections name themselves (``eda-outbox-relay``) in pg_stat_activity and notice a silent peer in
    seconds; a relay's also end a transaction its client left silent, so that rows it claimed (locked)
    are not held for hours by a relay cut off from the database (eda.store.liveness)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    parts = urlsplit(url)
    try:
        password = parts.password
    except ValueError:
        password = None
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError("--database-url (EDA_DATABASE_URL): not a PostgreSQL URL like "
                          "postgresql://user:password@host:5432/database")
    try:
        named = {"application_name": application_name} if application_name else {}
        conn = psycopg.connect(url, autocommit=autocommit, connect_timeout=10, **named,
                               **tcp_options(conninfo_to_dict(url)))
        if relay:
            with conn.transaction() if not autocommit else contextlib.nullcontext():
                limit_idle_transactions(conn)
        return conn
    except psycopg.Error as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = lines[-1] if lines else type(exc).__name__
        if password:
            reason = reason.replace(password, "***")
        host = parts.hostname or "localhost"
        raise ConfigError(f"cannot use the database at {host}:{parts.port or 5432}{parts.path} "
                          f"(EDA_DATABASE_URL): {reason[:300]}") from None


@contextmanager
def sqlite_transaction(conn: sqlite3.Connection):
    """One write transaction on an autocommit sqlite3 connection: SQLite's write lock taken at once
    (``BEGIN IMMEDIATE``), committed on success, rolled back on error (the error kept, should the
    rollback fail too: a broken connection)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        raise
    conn.execute("COMMIT")


def connect_sqlite(path: Path) -> sqlite3.Connection:
    """An autocommit SQLite connection to the outbox file, or a one-line ConfigError."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite3.connect(path, timeout=SQLITE_BUSY_SECONDS, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"cannot open the outbox {path} (EDA_STATE_DIR): {exc}") from None
