"""The shared backend of the store: PostgreSQL, for any number of instances of a worker on any hosts.

One schema per namespace (its tables shared by every instance), created on first start under an
advisory lock so that instances starting at once do not race. Connections come from a psycopg_pool
pool sized to the worker's handler threads. Workers write the store's SQL (``?`` placeholders),
translated here to psycopg's (``%s``).
"""

import functools
import logging
import re
import threading
import time
from contextlib import contextmanager

import psycopg
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from eda.errors import ConfigError, StoreUnavailable
from eda.names import schema_name
from eda.store.liveness import limit_idle_transactions, tcp_options
from eda.store.sqlite import PROCESSED_MAX_ROWS, PROCESSED_RETENTION_SECONDS, PRUNE_EVERY

log = logging.getLogger("eda.store")

CONNECT_TIMEOUT = 5  # seconds to open one connection (a host that does not answer)
WAIT_TIMEOUT = 5.0  # seconds a handler waits for a pooled connection before its event fails (transient)
FAIL_FAST = 1.0  # after a lost database, the runtime's record lookups fail at once for this long
# The pool retries a lost connection with a doubling delay; giving up after this long lets the next
# handler that asks start a fresh attempt, so a worker is back within seconds of its database.
RECONNECT_TIMEOUT = 10.0
PROCESSED = """
CREATE TABLE IF NOT EXISTS processed (store TEXT NOT NULL, event_id TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL, PRIMARY KEY (store, event_id));
CREATE INDEX IF NOT EXISTS processed_at ON processed (store, at);
"""


@functools.lru_cache(maxsize=1024)
def to_psycopg(statement: str) -> str:
    """The store's SQL in psycopg's paramstyle: ``?`` becomes ``%s`` and ``%`` becomes ``%%``, except
    inside quoted literals and identifiers."""
    parts = re.split(r"""('(?:[^']|'')*'|"(?:[^"]|"")*")""", statement)
    for i in range(0, len(parts), 2):  # even parts are outside quotes
        parts[i] = parts[i].replace("%", "%%").replace("?", "%s")
    return "".join(parts)


def one_line(error: BaseException, password: str | None) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text.replace(password, "***") if password else text


class PgTransaction:
    """What a ``transaction()`` block gets: statements in the store's SQL, on one pooled connection."""

    __slots__ = ("_conn", "_store")

    def __init__(self, conn: psycopg.Connection, store: str):
        self._conn, self._store = conn, store

    def execute(self, statement: str, params=()):
        """Run one statement; the cursor has ``fetchone``, ``fetchall`` and ``rowcount``."""
        return self._conn.execute(to_psycopg(statement), params)

    def executemany(self, statement: str, rows) -> None:
        self._conn.cursor().executemany(to_psycopg(statement), rows)

    def first_time(self, event_id: str) -> bool:
        """Record ``event_id`` as processed in this transaction; False when it already was. A copy
        handled at the same moment elsewhere waits here for the first one's commit, then gets False."""
        cur = self._conn.execute("INSERT INTO processed (store, event_id, at) VALUES (%s, %s, %s) "
                                 "ON CONFLICT DO NOTHING", (self._store, event_id, time.time()))
        return cur.rowcount == 1


# What a failed connection says when another try may get in (libpq gives these as text only: a failed
# connection carries no SQLSTATE): no server there (yet), its name not resolved (yet: a compose service
# still starting), the network, or a server starting up or full. Anything else (a password, a role or
# database that does not exist, an sslmode it cannot have) only a change of settings mends.
NOT_THERE_YET = ("Connection refused", "timeout expired", "Connection timed out", "No route to host",
                 "Network is unreachable", "Connection reset", "server closed the connection unexpectedly",
                 "failed to resolve host", "could not translate host name", "Name or service not known",
                 "Temporary failure in name resolution", "No such file or directory",  # a socket not made yet
                 "the database system is starting up", "the database system is shutting down",
                 "the database system is in recovery mode", "the database system is not yet accepting connections",
                 "too many clients already", "remaining connection slots are reserved")


def unreachable(exc: psycopg.Error) -> bool:
    """Whether an error opening a connection says the database could not be reached or is not ready,
    rather than refusing what it was asked: only the first may go away by itself."""
    state = getattr(exc, "sqlstate", None)
    if state is not None:
        return state.startswith(("08", "57", "53300"))
    text = str(exc)
    return any(phrase in text for phrase in NOT_THERE_YET)


class PostgresStore:
    """A worker's state in the namespace's schema of a PostgreSQL database, shared by its instances."""

    backend = "postgresql"

    def __init__(self, url: str, namespace: str, name: str, schema: str = "", *, pool_size: int = 4,
                 patience: float = 0.0):
        self.name = name
        self.schema = schema_name(namespace)
        try:
            params = conninfo_to_dict(url)
        except Exception:  # noqa: BLE001 - its message may quote the URL, password included
            raise ConfigError("--database-url (EDA_DATABASE_URL): not a valid postgresql:// URL") from None
        self._password = params.get("password")
        self.location = f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}/" \
                        f"{params.get('dbname') or params.get('user') or ''}"
        extra = {"autocommit": True}
        if "connect_timeout" not in params:
            extra["connect_timeout"] = CONNECT_TIMEOUT
        if "application_name" not in params:
            extra["application_name"] = f"eda-{name}"
        extra.update(tcp_options(params))  # a silent peer fails in seconds (eda.store.liveness)
        self._setup_within(patience, url, extra, schema)
        self._failed_at = None
        self._writes = 0
        self._checking = threading.Lock()
        self._pool = ConnectionPool(url, kwargs=extra, min_size=1, max_size=max(2, pool_size),
                                    configure=self._configure, timeout=WAIT_TIMEOUT, name=f"eda-{name}",
                                    reconnect_timeout=RECONNECT_TIMEOUT,
                                    open=False)
        self._pool.open(wait=False)

    def _setup_within(self, patience: float, url: str, extra: dict, schema: str) -> None:
        """``_setup``, tried again while the database cannot be reached, for ``patience`` seconds (a worker
        started before its database, as at a host's boot); then StoreUnavailable, exit 1."""
        deadline, backoff = time.monotonic() + patience, 0.5
        while True:
            try:
                return self._setup(url, extra, schema)
            except StoreUnavailable as exc:
                if time.monotonic() + backoff > deadline:
                    raise
                log.warning("%s; trying again in %.1fs", exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _setup(self, url: str, extra: dict, schema: str) -> None:
        """Create the namespace's schema and tables once (idempotent), or fail the start with one line:
        StoreUnavailable where the database did not answer (another try may succeed), else ConfigError
        (a refused password, a database that does not exist: only a change of setting helps)."""
        try:
            with psycopg.connect(url, **extra) as conn, conn.transaction():
                # Concurrent CREATE ... IF NOT EXISTS can still collide in the catalog: serialise them.
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('eda.store'), hashtext(%s))", (self.schema,))
                conn.execute(pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(pgsql.Identifier(self.schema)))
                self._configure(conn)
                conn.execute(PROCESSED)
                if schema.strip():
                    conn.execute(schema)
        except psycopg.Error as exc:
            error = StoreUnavailable if unreachable(exc) else ConfigError
            raise error(f"cannot open the state database {self.location} (EDA_DATABASE_URL): "
                        f"{one_line(exc, self._password)}") from None

    def _configure(self, conn) -> None:
        conn.execute(pgsql.SQL("SET search_path TO {}, public").format(pgsql.Identifier(self.schema)))
        limit_idle_transactions(conn)

    @contextmanager
    def _connection(self, quick: bool = False):
        """A pooled connection; a lost database raises ``StoreUnavailable`` (a transient failure)."""
        if quick and self._failed_at is not None and time.monotonic() - self._failed_at < FAIL_FAST:
            raise StoreUnavailable(f"the state database {self.location} is unavailable")
        try:
            with self._pool.connection(timeout=1.0 if quick else WAIT_TIMEOUT) as conn:
                yield conn
        except psycopg.OperationalError as exc:
            self._failed_at = time.monotonic()
            # Connections of the pool idle since the database went away are dead too: replace them now,
            # so that the retried events find working ones.
            if self._checking.acquire(blocking=False):  # one check at a time, however many handlers fail
                threading.Thread(target=self._check, daemon=True).start()
            raise StoreUnavailable(f"the state database {self.location} is unavailable: "
                                   f"{one_line(exc, self._password)}") from None
        self._failed_at = None

    def _check(self) -> None:
        try:
            self._pool.check()
        except Exception:  # noqa: BLE001 - the pool reconnects by itself; this only hurries it
            pass
        finally:
            self._checking.release()

    @contextmanager
    def transaction(self):
        """A ``PgTransaction`` in one atomic transaction (READ COMMITTED), committed on success."""
        with self._connection() as conn:
            with conn.transaction():
                yield PgTransaction(conn, self.name)
        self._writes += 1
        if self._writes % PRUNE_EVERY == 0:
            self.prune()

    def read(self, statement: str, params=()) -> list[tuple]:
        """The rows of one query, outside any write transaction (autocommit: one round trip)."""
        with self._connection() as conn:
            return conn.execute(to_psycopg(statement), params).fetchall()

    def execute(self, statement: str, params=()) -> list[tuple]:
        """One statement as a transaction of its own, its rows (RETURNING) returned: a single round trip
        (autocommit), where ``transaction()`` sends BEGIN and COMMIT besides."""
        with self._connection() as conn:
            cur = conn.execute(to_psycopg(statement), params)
            rows = cur.fetchall() if cur.description is not None else []
        self._writes += 1
        if self._writes % PRUNE_EVERY == 0:
            self.prune()
        return rows

    def was_processed(self, event_id: str) -> bool:
        """Whether the record of processed events holds ``event_id`` (the runtime asks on its I/O thread:
        fails fast while the database is away)."""
        with self._connection(quick=True) as conn:
            return conn.execute("SELECT 1 FROM processed WHERE store = %s AND event_id = %s",
                                (self.name, event_id)).fetchone() is not None

    def record_processed(self, *event_ids: str) -> None:
        """Add event ids to the record of processed events, in one commit."""
        now = time.time()
        with self._connection(quick=True) as conn, conn.transaction():
            conn.cursor().executemany("INSERT INTO processed (store, event_id, at) VALUES (%s, %s, %s) "
                                      "ON CONFLICT DO NOTHING", [(self.name, e, now) for e in sorted(event_ids)])

    def prune(self, retention: float = PROCESSED_RETENTION_SECONDS, max_rows: int = PROCESSED_MAX_ROWS) -> None:
        """Keep this store's processed-event record to days of retention and a bounded size. Several
        instances may prune at once: a failure is logged, never the handler's."""
        try:
            with self._connection() as conn, conn.transaction():
                conn.execute("DELETE FROM processed WHERE store = %s AND at < %s", (self.name, time.time() - retention))
                conn.execute("DELETE FROM processed WHERE store = %s AND at <= (SELECT at FROM processed "
                             "WHERE store = %s ORDER BY at DESC OFFSET %s LIMIT 1)", (self.name, self.name, max_rows))
        except (StoreUnavailable, psycopg.Error) as exc:
            log.warning("pruning the processed-event record failed: %s", one_line(exc, self._password))

    def close(self) -> None:
        self._pool.close()
