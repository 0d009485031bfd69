"""The worker's embedded store: the record of processed events that workers without idempotency of
their own rely on, kept across restarts, for days, and bounded in size."""

import multiprocessing
import sqlite3
import time

import pytest

from eda.store import Store


def test_a_processed_event_is_remembered_across_a_reopen(tmp_path):
    store = Store(tmp_path, "shop.shipping")
    assert not store.was_processed("e-1")
    store.record_processed("e-1")
    store.record_processed("e-1")  # recording twice is harmless
    store.close()
    reopened = Store(tmp_path, "shop.shipping")
    assert reopened.was_processed("e-1")
    assert not reopened.was_processed("e-2")
    reopened.close()


def test_the_record_keeps_days_of_events_and_a_bounded_number(tmp_path):
    # Given a record holding an event 8 days old and five recent ones
    store = Store(tmp_path, "shop.shipping")
    with sqlite3.connect(store.path) as db:
        db.execute("INSERT INTO processed VALUES ('old', ?)", (time.time() - 8 * 24 * 3600,))
    for n in range(5):
        store.record_processed(f"recent-{n}")
        time.sleep(0.002)  # distinct times, so "the newest" is well defined
    # When it is pruned to a week and at most three events
    store.prune(retention=7 * 24 * 3600, max_rows=3)
    # Then the old event and the two oldest recent ones are forgotten
    assert [e for e in ["old", *(f"recent-{n}" for n in range(5))] if store.was_processed(e)] == [
        "recent-2", "recent-3", "recent-4"]
    store.close()


def test_many_events_are_recorded_in_one_go(tmp_path):
    store = Store(tmp_path, "shop.shipping")
    store.record_processed("e-1", "e-2", "e-3")
    store.record_processed("e-3", "e-4")  # one already recorded: the others still are
    assert all(store.was_processed(f"e-{n}") for n in range(1, 5))
    store.close()


def _open_and_record(state_dir: str, start_at: float, number: int) -> None:
    """A worker process of `eda worker --processes N`: opens the shared store at a given moment."""
    time.sleep(max(0.0, start_at - time.time()))
    store = Store(state_dir, "shop.payment")
    store.record_processed(f"e-{number}")
    store.close()


def test_worker_processes_opening_a_new_store_at_once_all_open_it(tmp_path):
    # Given eight processes that open the same, not yet made, store at the same moment
    start_at = time.time() + 0.5
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_open_and_record, args=(str(tmp_path), start_at, n)) for n in range(8)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(30)
    # Then each opened it (none stopped with "database is locked") and recorded its event
    assert [p.exitcode for p in processes] == [0] * 8
    store = Store(tmp_path, "shop.payment")
    assert all(store.was_processed(f"e-{n}") for n in range(8))
    store.close()


def test_a_record_that_cannot_be_written_is_a_store_unavailable_naming_the_file(tmp_path):
    from eda.errors import StoreUnavailable

    # Given a store whose file another process holds locked for writing, past the store's busy timeout
    store = Store(tmp_path, "shop.shipping")
    store._db.execute("PRAGMA busy_timeout = 50")  # instead of waiting the default 10 s
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        # When the worker records an event as processed
        with pytest.raises(StoreUnavailable, match=r"processed-event record .*shop\.shipping.* database is locked"):
            store.record_processed("e-1")
    finally:
        other.execute("ROLLBACK")
        other.close()
    # Then it is the transient failure the I/O loop keeps the ids for, and the next commit records it
    store.record_processed("e-1")
    assert store.was_processed("e-1")
    store.close()
