"""The worker's embedded store: the record of processed events that workers without idempotency of
their own rely on, kept across restarts, for days, and bounded in size."""

import sqlite3
import time

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
