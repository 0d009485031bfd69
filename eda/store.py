"""A small embedded store (SQLite) for a worker's state under ``EDA_STATE_DIR``.

SQLite keeps writes atomic across a crash (``kill -9`` included), which is what idempotency needs:
a record and the change it guards are committed together or not at all.
"""

import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from eda.errors import ConfigError

PROCESSED_RETENTION_SECONDS = 7 * 24 * 3600
PROCESSED_MAX_ROWS = 1_000_000
PRUNE_EVERY = 10_000  # commits between two prunings of the record


class Store:
    """One SQLite file per worker; handler threads share it through a lock."""

    def __init__(self, state_dir: Path, name: str, schema: str = ""):
        try:
            Path(state_dir).mkdir(parents=True, exist_ok=True)
            self.path = Path(state_dir) / f"{name}.sqlite3"
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(
                "CREATE TABLE IF NOT EXISTS processed (event_id TEXT PRIMARY KEY, at REAL NOT NULL);"
                "CREATE INDEX IF NOT EXISTS processed_at ON processed (at);" + schema
            )
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the state store in {state_dir} (EDA_STATE_DIR): {exc}") from None
        self._lock = threading.Lock()
        self._writes = 0

    @contextmanager
    def transaction(self):
        """A cursor in one atomic transaction, committed on success and rolled back on error."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._writes += 1
            if self._writes % PRUNE_EVERY == 0:
                self.prune()

    def first_time(self, db, event_id: str) -> bool:
        """Record ``event_id`` as processed inside ``db``'s transaction; False when it already was."""
        cur = db.execute("INSERT OR IGNORE INTO processed (event_id, at) VALUES (?, ?)", (event_id, time.time()))
        return cur.rowcount == 1

    def was_processed(self, event_id: str) -> bool:
        """Whether the record of processed events holds ``event_id``."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM processed WHERE event_id = ?", (event_id,)).fetchone() is not None

    def record_processed(self, *event_ids: str) -> None:
        """Add event ids to the record of processed events (kept for days, bounded in size), in one commit."""
        now = time.time()
        with self.transaction() as db:
            db.executemany("INSERT OR IGNORE INTO processed (event_id, at) VALUES (?, ?)",
                           [(event_id, now) for event_id in event_ids])

    def prune(self, retention: float = PROCESSED_RETENTION_SECONDS, max_rows: int = PROCESSED_MAX_ROWS) -> None:
        """Keep the processed-event record to days of retention and a bounded size (the newest kept).
        ``transaction`` calls it every ``PRUNE_EVERY`` commits, under its lock."""
        self._db.execute("DELETE FROM processed WHERE at < ?", (time.time() - retention,))
        self._db.execute(
            "DELETE FROM processed WHERE event_id IN (SELECT event_id FROM processed ORDER BY at DESC "
            "LIMIT -1 OFFSET ?)", (max_rows,))

    def close(self) -> None:
        self._db.close()
