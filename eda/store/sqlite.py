"""The embedded backend of the store: one SQLite file per worker under ``EDA_STATE_DIR``.

SQLite keeps writes atomic across a crash (``kill -9`` included), which is what idempotency needs:
a record and the change it guards are committed together or not at all. One process uses a file;
its handler threads share the connection through a lock (``BEGIN IMMEDIATE`` serialises writers).

Commits append to the write-ahead log without an fsync (``synchronous=NORMAL``); copying the log into
the database file (a checkpoint) is what fsyncs, two or three times, each up to milliseconds on a
busy disk and far more on a shared one. SQLite does it in whichever commit finds the log past 1,000
pages: on an inline worker that is the I/O thread, every few hundred events, and every event in
flight waits for the disk (the latency's tail, issue 20). Here a thread of the store's own
checkpoints every ``CHECKPOINT_INTERVAL`` on a connection of its own (``PASSIVE``: never waiting for
the writer, nor making it wait; sqlite3 lets go of the GIL meanwhile); the writer checkpoints only
past ``WRITER_CHECKPOINT_PAGES``, a bound on the log should that thread fall behind (a loose one: the
writer's checkpoint is skipped while the thread's runs, and tried again at its next commit).
"""

import sqlite3
import threading
import time
import weakref
from contextlib import contextmanager
from pathlib import Path

from eda.errors import ConfigError, StoreUnavailable

PROCESSED_RETENTION_SECONDS = 7 * 24 * 3600
PROCESSED_MAX_ROWS = 1_000_000
PRUNE_EVERY = 10_000  # commits between two prunings of the record
CHECKPOINT_INTERVAL = 0.5  # seconds between two checkpoints of the store's checkpoint thread
WRITER_CHECKPOINT_PAGES = 10_000  # the writer checkpoints itself only past this log size (~40 MB)
OPEN_PATIENCE = 10.0  # seconds a process waits for another opening the same store (worker processes)


class Checkpointer:
    """Copies a database's write-ahead log into its file every ``interval`` seconds, on a thread and a
    connection of its own, so that the fsyncs of a checkpoint are never a committing thread's."""

    def __init__(self, path: Path, interval: float = CHECKPOINT_INTERVAL):
        self.path, self.interval = path, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"eda-checkpoint-{path.stem}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:  # mode=rw: never makes a database where the store's file is gone (a state folder removed)
            db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=rw", uri=True, isolation_level=None,
                                 check_same_thread=False)
        except sqlite3.Error:
            return  # the writer checkpoints past WRITER_CHECKPOINT_PAGES anyway
        try:
            while not self._stop.wait(self.interval):
                self.checkpoint(db)
        finally:
            db.close()

    @staticmethod
    def checkpoint(db, passes: int = 3) -> None:
        """Copy what the log holds; again (up to ``passes``) while commits added frames meanwhile: the log
        starts over at the next commit only once every frame of it is copied."""
        try:
            for _ in range(passes):
                _, frames, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if copied >= frames:
                    return
        except sqlite3.Error:  # busy, or the file went away: the next turn tries again
            pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def stop_soon(self) -> None:
        """End the thread after its current checkpoint, without waiting for it."""
        self._stop.set()


class SqliteTransaction:
    """What a ``transaction()`` block gets: statements in the store's SQL (``?`` placeholders)."""

    __slots__ = ("_db",)

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def execute(self, sql: str, params=()):
        """Run one statement; the cursor has ``fetchone``, ``fetchall`` and ``rowcount``."""
        return self._db.execute(sql, params)

    def executemany(self, sql: str, rows) -> None:
        self._db.executemany(sql, rows)

    def first_time(self, event_id: str) -> bool:
        """Record ``event_id`` as processed in this transaction; False when it already was."""
        cur = self._db.execute("INSERT INTO processed (event_id, at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                               (event_id, time.time()))
        return cur.rowcount == 1


def _opened(path: Path, schema: str, patience: float = OPEN_PATIENCE) -> sqlite3.Connection:
    """A connection to the store's file, in WAL mode, its tables made. Worker processes of one host
    (``--processes N``) open the same file at once: the switch to WAL answers "database is locked" at
    once, without SQLite's busy wait, while another process makes it, so it is tried again a while."""
    deadline = time.monotonic() + patience
    while True:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=patience)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"PRAGMA wal_autocheckpoint={WRITER_CHECKPOINT_PAGES}")
            db.executescript(
                "CREATE TABLE IF NOT EXISTS processed (event_id TEXT PRIMARY KEY, at REAL NOT NULL);"
                "CREATE INDEX IF NOT EXISTS processed_at ON processed (at);" + schema
            )
            return db
        except sqlite3.OperationalError as exc:
            db.close()
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Store:
    """One SQLite file per worker; handler threads share it through a lock."""

    backend = "sqlite"

    def __init__(self, state_dir: Path, name: str, schema: str = "", *,
                 checkpoint_interval: float = CHECKPOINT_INTERVAL):
        try:
            Path(state_dir).mkdir(parents=True, exist_ok=True)
            self.path = Path(state_dir) / f"{name}.sqlite3"
            self._db = _opened(self.path, schema)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the state store in {state_dir} (EDA_STATE_DIR): {exc}") from None
        self._lock = threading.Lock()
        self._writes = 0
        self._checkpointer = Checkpointer(self.path, checkpoint_interval)
        # A store dropped without close: its checkpoint thread ends too (the callback holds no store).
        weakref.finalize(self, self._checkpointer.stop_soon)

    @property
    def location(self) -> str:
        return str(self.path)

    @contextmanager
    def transaction(self):
        """A ``SqliteTransaction`` in one atomic transaction, committed on success, rolled back on error."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield SqliteTransaction(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._writes += 1
            if self._writes % PRUNE_EVERY == 0:
                self.prune()

    def read(self, sql: str, params=()) -> list[tuple]:
        """The rows of one query, outside any write transaction (a committed snapshot)."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def execute(self, sql: str, params=()) -> list[tuple]:
        """One statement as a transaction of its own (atomic: SQLite autocommits it), its rows returned."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def was_processed(self, event_id: str) -> bool:
        """Whether the record of processed events holds ``event_id``."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM processed WHERE event_id = ?", (event_id,)).fetchone() is not None

    def record_processed(self, *event_ids: str) -> None:
        """Add event ids to the record of processed events (kept for days, bounded in size), in one commit."""
        now = time.time()
        try:
            with self.transaction() as tx:
                tx.executemany("INSERT OR IGNORE INTO processed (event_id, at) VALUES (?, ?)",
                               [(event_id, now) for event_id in event_ids])
        except sqlite3.OperationalError as exc:  # locked by another process past the busy timeout, disk full
            raise StoreUnavailable(f"the processed-event record {self.path} cannot be written: {exc}") from exc

    def prune(self, retention: float = PROCESSED_RETENTION_SECONDS, max_rows: int = PROCESSED_MAX_ROWS) -> None:
        """Keep the processed-event record to days of retention and a bounded size (the newest kept).
        ``transaction`` calls it every ``PRUNE_EVERY`` commits, under its lock."""
        self._db.execute("DELETE FROM processed WHERE at < ?", (time.time() - retention,))
        self._db.execute(
            "DELETE FROM processed WHERE event_id IN (SELECT event_id FROM processed ORDER BY at DESC "
            "LIMIT -1 OFFSET ?)", (max_rows,))

    def close(self) -> None:
        self._checkpointer.stop()
        self._db.close()


SqliteStore = Store
