"""The outbox table on each engine: PostgreSQL (``EDA_DATABASE_URL``) or SQLite under ``EDA_STATE_DIR``.

One class per engine holds its SQL: create the table once, add a row in the caller's transaction,
claim the oldest pending rows, mark rows sent, delete sent rows past a retention, count what is
pending. A row's ``position`` is the order rows were added in; ``sent_at`` is NULL until the broker
confirmed its event.
"""

import hashlib
import sqlite3
import time
from pathlib import Path
from urllib.parse import urlsplit

from eda.errors import ConfigError

COLUMNS = "position, event_id, event_type, source, correlation_id, body"
SQLITE_BUSY_SECONDS = 30.0  # an application's write transaction holds SQLite's one write lock meanwhile


def quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


class PostgresTable:
    """``<namespace>.outbox`` in the database of EDA_DATABASE_URL (the namespace's schema), with a
    statement trigger that NOTIFYs the relays on commit of any transaction that added rows."""

    engine = "postgresql"
    placeholder = "%s"

    def __init__(self, url: str, namespace: str):
        from eda.store import schema_name  # the schema the workers' state of the namespace is in

        self.url = url
        self.schema = schema_name(namespace)
        self.table = f"{quoted(self.schema)}.outbox"
        # pg_notify refuses channel names of 64 bytes or more: a long namespace is hashed.
        channel = f"eda_outbox.{namespace}"
        self.channel = channel if len(channel.encode()) < 64 else \
            "eda_outbox." + hashlib.sha256(namespace.encode()).hexdigest()[:40]
        self.insert_sql = (f"INSERT INTO {self.table} (event_id, event_type, source, correlation_id, body) "
                           f"VALUES (%s, %s, %s, %s, %s)")

    def create(self, conn) -> None:
        """Create schema, table, indexes and trigger unless they exist (several processes may start at once:
        an advisory lock makes them take turns; a table that exists is left as it is, without any lock)."""
        import psycopg

        try:
            self._create(conn)
        except psycopg.errors.UniqueViolation:  # the schema made at the same moment by a worker's store
            self._create(conn)

    def _create(self, conn) -> None:
        name = f"{self.schema}.outbox"
        with conn.transaction():
            if conn.execute("SELECT to_regclass(%s)", (self.table,)).fetchone()[0] is not None:
                return
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"eda.outbox {name}",))
            if conn.execute("SELECT to_regclass(%s)", (self.table,)).fetchone()[0] is not None:
                return
            schema, function = quoted(self.schema), f"{quoted(self.schema)}.outbox_notify"
            channel = self.channel.replace("'", "''")
            conn.execute(f"""
                CREATE SCHEMA IF NOT EXISTS {schema};
                CREATE TABLE {self.table} (
                    position bigserial PRIMARY KEY,
                    event_id text NOT NULL,
                    event_type text NOT NULL,
                    source text NOT NULL,
                    correlation_id text NOT NULL,
                    body bytea NOT NULL,
                    added_at timestamptz NOT NULL DEFAULT now(),
                    sent_at timestamptz
                );
                CREATE INDEX outbox_pending ON {self.table} (position) WHERE sent_at IS NULL;
                CREATE INDEX outbox_sent ON {self.table} (sent_at) WHERE sent_at IS NOT NULL;
                CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS
                    $$ BEGIN PERFORM pg_notify('{channel}', ''); RETURN NULL; END $$;
                CREATE TRIGGER outbox_notify AFTER INSERT ON {self.table}
                    FOR EACH STATEMENT EXECUTE FUNCTION {function}();
            """)

    def claim(self, conn, limit: int) -> list[tuple]:
        """The oldest pending rows no other relay holds, locked until the caller's transaction ends."""
        return conn.execute(f"SELECT {COLUMNS} FROM {self.table} WHERE sent_at IS NULL ORDER BY position "
                            f"LIMIT %s FOR UPDATE SKIP LOCKED", (limit,)).fetchall()

    def mark_sent(self, conn, positions) -> None:
        conn.execute(f"UPDATE {self.table} SET sent_at = now() WHERE position = ANY(%s)", (list(positions),))

    def prune(self, conn, retention: float) -> int:
        cur = conn.execute(f"DELETE FROM {self.table} WHERE sent_at < now() - make_interval(secs => %s)",
                           (retention,))
        return cur.rowcount

    def pending(self, conn) -> tuple[int, float | None]:
        """(rows pending, seconds since the oldest of them was added, or None)."""
        count, age = conn.execute(f"SELECT count(*), extract(epoch FROM now() - min(added_at)) FROM {self.table} "
                                  f"WHERE sent_at IS NULL").fetchone()
        return count, (float(age) if age is not None else None)

    def where(self) -> str:
        parts = urlsplit(self.url)
        return f"PostgreSQL {parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or '/'}, " \
               f"table {self.schema}.outbox"


class SqliteTable:
    """Table ``outbox`` in ``EDA_STATE_DIR/<namespace>.outbox.sqlite3`` (named as the workers' SQLite
    stores are): the application keeps its own tables in
    that file (or ATTACHes it) so that its rows and the outbox's commit together."""

    engine = "sqlite"
    placeholder = "?"
    insert_sql = ("INSERT INTO outbox (event_id, event_type, source, correlation_id, body, added_at) "
                  "VALUES (?, ?, ?, ?, ?, ?)")

    def __init__(self, state_dir: Path, namespace: str):
        self.path = Path(state_dir) / f"{namespace}.outbox.sqlite3"

    def create(self, conn) -> None:
        conn.execute("PRAGMA journal_mode=WAL")  # readers never wait for a writer; kept in the file
        conn.executescript("""
            CREATE TABLE IF NOT EXISTS outbox (
                position INTEGER PRIMARY KEY AUTOINCREMENT,
                event_id TEXT NOT NULL,
                event_type TEXT NOT NULL,
                source TEXT NOT NULL,
                correlation_id TEXT NOT NULL,
                body BLOB NOT NULL,
                added_at REAL NOT NULL,
                sent_at REAL
            );
            CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (position) WHERE sent_at IS NULL;
            CREATE INDEX IF NOT EXISTS outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;
        """)

    def claim(self, conn, limit: int) -> list[tuple]:
        # No row locks in SQLite: one relay at a time holds the outbox (see relay_lock).
        return conn.execute(f"SELECT {COLUMNS} FROM outbox WHERE sent_at IS NULL ORDER BY position LIMIT ?",
                            (limit,)).fetchall()

    def mark_sent(self, conn, positions) -> None:
        now = time.time()
        conn.executemany("UPDATE outbox SET sent_at = ? WHERE position = ?", [(now, p) for p in positions])

    def prune(self, conn, retention: float) -> int:
        return conn.execute("DELETE FROM outbox WHERE sent_at < ?", (time.time() - retention,)).rowcount

    def pending(self, conn) -> tuple[int, float | None]:
        count, oldest = conn.execute("SELECT count(*), min(added_at) FROM outbox WHERE sent_at IS NULL").fetchone()
        return count, (max(0.0, time.time() - oldest) if oldest is not None else None)

    def where(self) -> str:
        return f"SQLite {self.path}, table outbox"


def connect_postgres(url: str, *, autocommit: bool = False, application_name: str | None = None):
    """A psycopg connection, or a one-line ConfigError that never shows the password. eda's own
    connections name themselves (``eda-outbox-relay``) in pg_stat_activity."""
    import psycopg

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
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=10, **named)
    except psycopg.Error as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = lines[-1] if lines else type(exc).__name__
        if password:
            reason = reason.replace(password, "***")
        host = parts.hostname or "localhost"
        raise ConfigError(f"cannot use the database at {host}:{parts.port or 5432}{parts.path} "
                          f"(EDA_DATABASE_URL): {reason[:300]}") from None


def connect_sqlite(path: Path) -> sqlite3.Connection:
    """An autocommit SQLite connection to the outbox file, or a one-line ConfigError."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite3.connect(path, timeout=SQLITE_BUSY_SECONDS, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"cannot open the outbox {path} (EDA_STATE_DIR): {exc}") from None
