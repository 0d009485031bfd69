"""The SQLite store's checkpoints run on a thread of their own: a commit never copies the write-ahead log
into the database file (the fsyncs that made an inline worker's I/O thread wait for the disk)."""

import gc
import sqlite3
import threading
import time

from eda.store.sqlite import WRITER_CHECKPOINT_PAGES, Store

SCHEMA = "CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT NOT NULL);"


def commit_rows(store: Store, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        with store.transaction() as tx:
            tx.execute("INSERT INTO t (k, v) VALUES (?, ?)", (f"order-{i:08d}", "x" * 200))


def test_commits_leave_the_checkpoints_to_the_checkpoint_thread(tmp_path):
    # Given a store whose checkpoint thread waits an hour between two checkpoints
    store = Store(tmp_path, "slow", SCHEMA, checkpoint_interval=3600)
    try:
        size_before = store.path.stat().st_size
        # When 3,000 transactions commit: far past the 1,000 log pages at which SQLite's commits checkpoint
        commit_rows(store, 3000)
        # Then no commit copied the log into the database file: the rows are all in the log still
        wal = store.path.with_name(store.path.name + "-wal")
        assert store.path.stat().st_size == size_before
        assert wal.stat().st_size > 1000 * 4096
        assert store.read("SELECT count(*) FROM t") == [(3000,)]
    finally:
        store.close()


def test_the_checkpoint_thread_copies_the_log_while_commits_go_on_and_the_log_stays_bounded(tmp_path):
    # Given a store with its checkpoint thread at its default interval (half a second)
    store = Store(tmp_path, "busy", SCHEMA)
    wal = store.path.with_name(store.path.name + "-wal")
    try:
        size_before = store.path.stat().st_size
        # When transactions commit without a pause for three seconds
        deadline, n = time.monotonic() + 3, 0
        while time.monotonic() < deadline:
            commit_rows(store, 200, n)
            n += 200
        # Then the rows reached the database file meanwhile (copied by the checkpoint thread), and the log
        # stayed near the bound at which the writer checkpoints itself (a frame: a 4 KB page and 24 bytes; the
        # writer's checkpoint is skipped while the thread's runs, so the log may pass the bound by a little)
        assert n >= 1000
        assert store.path.stat().st_size > size_before
        assert wal.stat().st_size <= 2 * WRITER_CHECKPOINT_PAGES * (4096 + 24)
        assert store.read("SELECT count(*) FROM t") == [(n,)]
    finally:
        store.close()
    # and the store's file holds every row once it is closed
    db = sqlite3.connect(store.path)
    assert db.execute("SELECT count(*) FROM t").fetchone() == (n,)
    db.close()


def test_a_store_dropped_without_close_ends_its_checkpoint_thread(tmp_path):
    def checkpoint_threads():
        return [t for t in threading.enumerate() if t.name == "eda-checkpoint-dropped"]

    store = Store(tmp_path, "dropped", SCHEMA, checkpoint_interval=0.05)
    # Given a store that has committed, its checkpoint thread running
    commit_rows(store, 10)
    assert len(checkpoint_threads()) == 1
    # When the store is dropped without close
    del store
    gc.collect()
    # Then its checkpoint thread ends
    deadline = time.monotonic() + 5
    while checkpoint_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert checkpoint_threads() == []
