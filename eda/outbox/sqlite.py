"""The outbox table in SQLite: ``outbox`` in ``EDA_STATE_DIR/<namespace>.outbox.sqlite3``, its SQL in
one place. The same rows as PostgreSQL's (see eda.outbox.postgres), times as Unix seconds (REAL).

SQLite has no row locks: one relay at a time holds the outbox (a lock file, eda.outbox.sessions), and
it holds a second lock file, the batch lock, from claiming a batch until it marked it sent. Cancelling
takes the batch lock too, so that a cancel and a relay's publish of one row never both happen.
"""

import fcntl
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

from eda.errors import StoreUnavailable

COLUMNS = "position, event_id, event_type, source, correlation_id, body, due_at"  # due_at: None for at once
LISTED = "event_id, event_type, correlation_id, source, due_at, added_at, sent_at, cancelled_at"
PENDING = "sent_at IS NULL AND cancelled_at IS NULL AND due_at IS NOT NULL"  # the predicate of outbox_due
OVERDUE = f"{PENDING} AND first_due_at IS NOT NULL"  # refused by the broker, due again later: outbox_overdue
INDEXES = f"""
    CREATE INDEX IF NOT EXISTS outbox_pending_now ON outbox (position) WHERE sent_at IS NULL AND due_at IS NULL;
    CREATE INDEX IF NOT EXISTS outbox_due ON outbox (due_at, position) WHERE {PENDING};
    CREATE UNIQUE INDEX IF NOT EXISTS outbox_scheduled ON outbox (event_id) WHERE due_at IS NOT NULL;
    CREATE INDEX IF NOT EXISTS outbox_cancelled ON outbox (due_at) WHERE cancelled_at IS NOT NULL;
    CREATE INDEX IF NOT EXISTS outbox_overdue ON outbox (first_due_at) WHERE {OVERDUE};
"""
BATCH_LOCK_SECONDS = 30.0  # a relay holds the batch lock for one batch's publish (CONFIRM_TIMEOUT at most)


class SqliteTable:
    """Table ``outbox`` in ``EDA_STATE_DIR/<namespace>.outbox.sqlite3`` (named as the workers' SQLite
    stores are): the application keeps its own tables in
    that file (or ATTACHes it) so that its rows and the outbox's commit together."""

    engine = "sqlite"
    placeholder = "?"
    insert_sql = ("INSERT INTO outbox (event_id, event_type, source, correlation_id, body, added_at) "
                  "VALUES (?, ?, ?, ?, ?, ?)")
    schedule_sql = ("INSERT INTO outbox (event_id, event_type, source, correlation_id, body, added_at, due_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) WHERE due_at IS NOT NULL DO NOTHING")

    def __init__(self, state_dir: Path, namespace: str):
        self.path = Path(state_dir) / f"{namespace}.outbox.sqlite3"
        self.batch_lock_path = self.path.with_name(self.path.name + ".batch-lock")

    def create(self, conn) -> None:
        conn.execute("PRAGMA journal_mode=WAL")  # readers never wait for a writer; kept in the file
        if self._current(conn):
            return  # up to date: no write lock taken
        conn.execute("BEGIN IMMEDIATE")  # one process at a time creates or upgrades
        try:
            conn.execute("""
                CREATE TABLE IF NOT EXISTS outbox (
                    position INTEGER PRIMARY KEY AUTOINCREMENT,
                    event_id TEXT NOT NULL,
                    event_type TEXT NOT NULL,
                    source TEXT NOT NULL,
                    correlation_id TEXT NOT NULL,
                    body BLOB NOT NULL,
                    added_at REAL NOT NULL,
                    sent_at REAL,
                    due_at REAL,
                    cancelled_at REAL,
                    first_due_at REAL
                )""")
            columns = {row[1] for row in conn.execute("PRAGMA table_info(outbox)")}
            if "due_at" not in columns:  # an outbox of eda before scheduled events
                conn.execute("ALTER TABLE outbox ADD COLUMN due_at REAL")
                conn.execute("ALTER TABLE outbox ADD COLUMN cancelled_at REAL")
            if "first_due_at" not in columns:  # an outbox of eda before overdue rows were told apart
                conn.execute("ALTER TABLE outbox ADD COLUMN first_due_at REAL")
            conn.execute("DROP INDEX IF EXISTS outbox_pending")  # it held scheduled rows too
            for statement in INDEXES.strip().split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("CREATE INDEX IF NOT EXISTS outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @staticmethod
    def _current(conn) -> bool:
        return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'outbox_overdue'"
                            ).fetchone() is not None

    # The application's side.

    def add(self, conn, row: tuple, due: float | None) -> bool:
        if due is None:
            conn.execute(self.insert_sql, (*row, time.time()))
            return True
        return conn.execute(self.schedule_sql, (*row, time.time(), due)).rowcount == 1

    # The relay's side (it holds the batch lock from claim to mark).

    def claim(self, conn, limit: int, now: float) -> list[tuple]:
        rows = conn.execute(f"SELECT {COLUMNS} FROM outbox WHERE {PENDING} AND due_at <= ? "
                            f"ORDER BY due_at, position LIMIT ?", (now, limit)).fetchall()
        if len(rows) < limit:
            rows += conn.execute(f"SELECT {COLUMNS} FROM outbox WHERE sent_at IS NULL AND due_at IS NULL "
                                 f"ORDER BY position LIMIT ?", (limit - len(rows),)).fetchall()
        return rows

    def postpone(self, conn, positions, until: float) -> None:
        conn.executemany("UPDATE outbox SET first_due_at = coalesce(first_due_at, due_at), due_at = ? "
                         "WHERE position = ? AND due_at IS NOT NULL", [(until, p) for p in positions])

    def next_due(self, conn) -> float | None:
        return conn.execute(f"SELECT min(due_at) FROM outbox WHERE {PENDING}").fetchone()[0]

    def mark_sent(self, conn, positions) -> None:
        now = time.time()
        conn.executemany("UPDATE outbox SET sent_at = ? WHERE position = ?", [(now, p) for p in positions])

    def prune(self, conn, retention: float) -> int:
        cutoff = time.time() - retention
        return conn.execute("DELETE FROM outbox WHERE sent_at < ?", (cutoff,)).rowcount + \
            conn.execute("DELETE FROM outbox WHERE cancelled_at IS NOT NULL AND due_at < ?", (cutoff,)).rowcount

    def pending(self, conn, now: float) -> tuple[int, float | None]:
        count, oldest = conn.execute("SELECT count(*), min(added_at) FROM outbox WHERE sent_at IS NULL "
                                     "AND due_at IS NULL").fetchone()
        due, earliest = conn.execute(f"SELECT count(*), min(due_at) FROM outbox WHERE {PENDING} AND due_at <= ?",
                                     (now,)).fetchone()
        refused, first = conn.execute(f"SELECT count(*) FILTER (WHERE due_at > ?), min(first_due_at) FROM outbox "
                                      f"WHERE {OVERDUE}", (now,)).fetchone()
        times = [t for t in (oldest, earliest, first) if t is not None]
        return count + due + refused, (max(0.0, now - min(times)) if times else None)

    def overdue(self, conn, now: float) -> tuple[int, float | None]:
        count, first = conn.execute(f"SELECT count(*), min(first_due_at) FROM outbox WHERE {OVERDUE}").fetchone()
        return count, (max(0.0, now - first) if first is not None else None)

    def later(self, conn, now: float) -> int:
        return conn.execute(f"SELECT count(*) FROM outbox WHERE {PENDING} AND due_at > ? AND first_due_at IS NULL",
                            (now,)).fetchone()[0]

    # Scheduled events: list, look up, cancel.

    def scheduled(self, conn, limit: int | None) -> list[tuple]:
        return conn.execute(f"SELECT {LISTED} FROM outbox WHERE {PENDING} ORDER BY due_at, position LIMIT ?",
                            (-1 if limit is None else limit,)).fetchall()

    def find(self, conn, event_id: str) -> tuple | None:
        return conn.execute(f"SELECT {LISTED} FROM outbox WHERE event_id = ? AND due_at IS NOT NULL",
                            (event_id,)).fetchone()

    def cancel(self, conn, event_id: str) -> bool:
        """Cancel a scheduled row not yet published (True), under the batch lock: a relay publishing it
        at this moment holds that lock until its row is marked sent. A lock held past BATCH_LOCK_SECONDS
        (or the database's) is StoreUnavailable: nothing was cancelled, try again."""
        try:
            with self.batch_lock():
                return conn.execute(f"UPDATE outbox SET cancelled_at = ? WHERE event_id = ? AND {PENDING}",
                                    (time.time(), event_id)).rowcount == 1
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"cannot cancel {event_id} now: {exc}; nothing was cancelled, try again") from None

    @contextmanager
    def batch_lock(self, timeout: float | None = None):
        """Hold the batch lock (an exclusive ``flock``, released by the kernel if the process dies);
        sqlite3.OperationalError once it was held elsewhere for ``timeout`` (BATCH_LOCK_SECONDS)."""
        timeout = BATCH_LOCK_SECONDS if timeout is None else timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.batch_lock_path, "a") as lock:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise sqlite3.OperationalError(f"the outbox's batch lock {self.batch_lock_path} was "
                                                       f"held for {timeout:.0f}s") from None
                    time.sleep(0.01)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def where(self) -> str:
        return f"SQLite {self.path}, table outbox"
