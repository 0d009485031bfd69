"""Scheduled events without a broker: due times and their errors, what the outbox writes for them, how
the relay's claim takes them (due ones first, the rest left), cancelling, and a handler's delayed
reactions (their stable ids), on a real SQLite outbox."""

import json
import sqlite3
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

import eda_shop.contracts  # noqa: F401 (the shop's events: stock-replenished, order-placed)
from eda.contracts.envelope import new_event
from eda.errors import PermanentError, ScheduleError
from eda.outbox import Outbox
from eda.due import derived_id, due_time
from eda.runtime import failures
from eda.settings import Settings
from eda.worker import Context

STOCK = {"sku": "SKU-1", "quantity": 5}


@pytest.fixture
def outbox(tmp_path):
    return Outbox(Settings(state_dir=tmp_path, namespace="unit"), source="shop/web")


def add(outbox, **when):
    with outbox.connect() as conn:
        return outbox.add(conn, "stock-replenished", STOCK, **when)


def claim(outbox, now=None, limit=100) -> list[str]:
    conn = outbox.open()
    try:
        return [row[1] for row in outbox.table.claim(conn, limit, time.time() if now is None else now)]
    finally:
        conn.close()


# Due times.

def test_at_is_an_aware_datetime_and_delay_a_timedelta_or_seconds():
    at = datetime(2030, 1, 2, 9, 0, tzinfo=timezone(timedelta(hours=1)))
    assert due_time(at=at) == datetime(2030, 1, 2, 8, 0, tzinfo=timezone.utc).timestamp()
    before = time.time()
    assert before + 900 <= due_time(delay=timedelta(minutes=15)) <= time.time() + 900
    assert before + 2.5 <= due_time(delay=2.5) <= time.time() + 2.5
    assert due_time() is None


@pytest.mark.parametrize("when, message", [
    ({"at": datetime(2030, 1, 2, 9, 0)}, "at=2030-01-02T09:00:00 is a naive datetime: give it a time zone"),
    ({"at": datetime.now(timezone.utc), "delay": timedelta(seconds=1)}, "either at= (a datetime) or delay="),
    ({"delay": timedelta(seconds=-1)}, "delay= must not be negative"),
    ({"at": "2030-01-02T09:00:00Z"}, "at= takes a datetime with a time zone, not str"),
    ({"delay": "15m"}, "delay= takes a timedelta (or seconds), not str"),
])
def test_a_due_time_eda_cannot_take_is_a_one_line_error(when, message):
    with pytest.raises(ScheduleError) as caught:
        due_time(**when)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    # the same every time: a handler's event that raises it is dead-lettered at once, a command exits 2
    assert isinstance(caught.value, PermanentError) and failures.classify(caught.value) == failures.PERMANENT
    assert caught.value.exit_code == 2


def test_derived_ids_are_stable_and_distinct():
    assert derived_id("eda/reminders", "e-1", "0") == derived_id("eda/reminders", "e-1", "0")
    assert len({derived_id("eda/reminders", "e-1", "0"), derived_id("eda/reminders", "e-1", "1"),
                derived_id("eda/other", "e-1", "0"), derived_id("eda/reminders", "e-10", "")}) == 4


# The outbox.

def test_a_scheduled_event_is_written_with_its_due_time_and_happens_then(outbox):
    due = datetime.now(timezone.utc) + timedelta(hours=1)
    event = add(outbox, at=due)
    [row] = outbox.scheduled()
    assert (row.id, row.type, row.correlation_id, row.source, row.state) == \
        (event.id, "stock.replenished", event.id, "shop/web", "waiting")
    assert row.due == pytest.approx(due.timestamp(), abs=0.001)
    # the CloudEvent's time is its due time (UTC, milliseconds)
    with sqlite3.connect(outbox.table.path) as conn:
        [(body,)] = conn.execute("SELECT body FROM outbox").fetchall()
    assert json.loads(body)["time"] == due.astimezone(timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"
    # not due: not pending (eda outbox status stays healthy), but counted as later
    assert outbox.pending() == (0, None) and outbox.later() == 1


def test_bad_due_times_write_nothing(outbox):
    with pytest.raises(ScheduleError, match="naive"):
        add(outbox, at=datetime(2030, 1, 2, 9, 0))
    with pytest.raises(ScheduleError, match="not both"):
        add(outbox, at=datetime.now(timezone.utc), delay=5)
    assert outbox.scheduled() == [] and outbox.pending() == (0, None)


def test_the_relay_claims_due_rows_first_in_due_order_then_rows_for_now_and_leaves_the_rest(outbox):
    now = time.time()
    later = add(outbox, delay=3600)
    at_once = add(outbox)
    second = add(outbox, at=datetime.fromtimestamp(now - 10, timezone.utc))
    first = add(outbox, at=datetime.fromtimestamp(now - 20, timezone.utc))
    assert claim(outbox, now) == [first.id, second.id, at_once.id]
    assert claim(outbox, now, limit=1) == [first.id]
    assert claim(outbox, now + 3601) == [first.id, second.id, later.id, at_once.id]
    conn = outbox.open()
    try:
        assert outbox.table.next_due(conn) == pytest.approx(now - 20, abs=0.01)
    finally:
        conn.close()
    count, age = outbox.pending()
    assert count == 3 and age >= 20  # late by the earliest due one


def test_a_scheduled_event_the_broker_refused_is_pending_overdue_since_it_fell_due_not_later(outbox):
    from eda.outbox.status import check

    # Given a scheduled event that fell due ten minutes ago, and one due in an hour
    now = time.time()
    refused = add(outbox, at=datetime.fromtimestamp(now - 600, timezone.utc))
    add(outbox, delay=3600)
    # When the relay claims it and the broker refuses it: due again in 30 s (as eda.outbox.relay does)
    conn = outbox.open()
    try:
        [row] = outbox.table.claim(conn, 100, now)
        outbox.table.postpone(conn, [row[0]], now + 30)
        conn.commit()
    finally:
        conn.close()
    assert claim(outbox, now + 1) == []  # not claimed again before then
    # Then it is pending, overdue since its first due time, and not counted as scheduled for later
    count, age = outbox.pending()
    assert count == 1 and age >= 600
    refused_count, late = outbox.overdue()
    assert refused_count == 1 and late >= 600
    assert outbox.later() == 1
    # and eda outbox status says so, unhealthy past --max-age, pointing at the missing queue
    line, problem = check(outbox.settings, max_age=300)
    assert "1 pending, the oldest waiting 10.0m; 1 scheduled overdue by up to 10.0m, refused by the broker; " \
        "1 scheduled for later" in line, line
    assert "does a queue take its type?" in problem
    assert json.loads(check(outbox.settings, max_age=900, json_output=True)[0])["overdue"] == 1
    # and refused again later, it stays overdue since the first time it fell due
    conn = outbox.open()
    try:
        outbox.table.postpone(conn, [row[0]], now + 60)
        conn.commit()
    finally:
        conn.close()
    assert outbox.overdue()[1] >= 600 and outbox.find(refused.id).state == "waiting"


def test_a_cancelled_event_is_never_claimed_and_cancelling_again_or_after_the_publish_says_no(outbox):
    event = add(outbox, delay=0)
    gone = add(outbox, delay=0)
    assert outbox.cancel(event.id) is True
    assert claim(outbox) == [gone.id]
    assert outbox.find(event.id).state == "cancelled" and outbox.cancel(event.id) is False
    conn = outbox.open()
    try:
        outbox.table.mark_sent(conn, [row[0] for row in conn.execute("SELECT position FROM outbox WHERE event_id = ?",
                                                                     (gone.id,))])
    finally:
        conn.close()
    assert outbox.cancel(gone.id) is False and outbox.find(gone.id).state == "published"
    assert outbox.cancel("no-such-id") is False and outbox.find("no-such-id") is None
    assert [s.id for s in outbox.scheduled()] == []


def test_a_cancel_that_waits_too_long_for_a_relay_is_a_one_line_error_and_cancels_nothing(outbox, monkeypatch):
    from eda.errors import StoreUnavailable
    from eda.outbox import sqlite

    event = add(outbox, delay=0)
    # Given a relay holding the batch lock (publishing a batch), past the time a cancel waits for it
    monkeypatch.setattr(sqlite, "BATCH_LOCK_SECONDS", 0.2)
    with outbox.table.batch_lock():
        # When the event is cancelled, then the cancel says it could not, and to try again
        with pytest.raises(StoreUnavailable, match=f"cannot cancel {event.id} now: .*batch lock.*held for 0s; "
                                                   f"nothing was cancelled, try again"):
            outbox.cancel(event.id)
    # and the event still waits, to be cancelled once the lock is free
    assert outbox.find(event.id).state == "waiting"
    assert outbox.cancel(event.id) is True


def test_only_scheduled_events_are_cancellable(outbox):
    event = add(outbox)
    assert outbox.cancel(event.id) is False and outbox.find(event.id) is None
    assert claim(outbox) == [event.id]


def test_cancelled_rows_are_pruned_once_their_due_time_is_past_the_retention(outbox):
    soon, later = add(outbox, delay=0), add(outbox, delay=7200)
    outbox.cancel(soon.id), outbox.cancel(later.id)
    conn = outbox.open()
    try:
        conn.execute("UPDATE outbox SET due_at = due_at - 7200 WHERE event_id = ?", (soon.id,))
        assert outbox.table.prune(conn, retention=3600) == 1
    finally:
        conn.close()
    assert outbox.find(soon.id) is None and outbox.find(later.id).state == "cancelled"


def test_a_scheduled_id_is_written_once(outbox):
    event, body = new_event("stock.replenished", {"sku": "SKU-1", "quantity": 1}, "eda/x", id="fixed-id"), b"{}"
    with outbox.connect() as conn:
        assert outbox.write(conn, event, body, time.time() + 60) is True
        assert outbox.write(conn, event, body, time.time() + 120) is False
    assert [s.id for s in outbox.scheduled()] == ["fixed-id"]


def test_an_outbox_of_an_earlier_eda_is_upgraded_and_keeps_its_rows(tmp_path):
    path = tmp_path / "unit.outbox.sqlite3"
    with sqlite3.connect(path) as conn:  # the table as eda wrote it before scheduled events
        conn.executescript("""
            CREATE TABLE outbox (position INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL,
                event_type TEXT NOT NULL, source TEXT NOT NULL, correlation_id TEXT NOT NULL, body BLOB NOT NULL,
                added_at REAL NOT NULL, sent_at REAL);
            CREATE INDEX outbox_pending ON outbox (position) WHERE sent_at IS NULL;
            INSERT INTO outbox (event_id, event_type, source, correlation_id, body, added_at)
                VALUES ('old-1', 'stock.replenished', 'shop/web', 'old-1', x'7b7d', 1.0);
        """)
    outbox = Outbox(Settings(state_dir=tmp_path, namespace="unit"))
    scheduled = add(outbox, delay=0)
    assert claim(outbox) == [scheduled.id, "old-1"]
    with sqlite3.connect(path) as conn:
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "outbox_pending" not in indexes and {"outbox_due", "outbox_scheduled"} <= indexes


def test_an_outbox_from_before_overdue_rows_were_told_apart_gets_their_column_and_keeps_its_rows(tmp_path):
    # Given an outbox as the previous eda made it (due times, no first due times), with a row due
    outbox = Outbox(Settings(state_dir=tmp_path, namespace="unit"))
    waiting = add(outbox, delay=0)
    with sqlite3.connect(outbox.table.path) as conn:
        conn.executescript("DROP INDEX outbox_overdue; ALTER TABLE outbox DROP COLUMN first_due_at;")
    # When eda opens it again
    outbox = Outbox(Settings(state_dir=tmp_path, namespace="unit"))
    # Then the column and its index are added, and the row is there to claim
    assert claim(outbox) == [waiting.id] and outbox.overdue() == (0, None)
    with sqlite3.connect(outbox.table.path) as conn:
        assert "first_due_at" in {row[1] for row in conn.execute("PRAGMA table_info(outbox)")}
        assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'outbox_overdue'").fetchone()


# A handler's delayed reactions.

def test_ctx_publish_with_a_delay_schedules_the_reaction_with_an_id_stable_across_redeliveries():
    handled = new_event("order.placed", {}, "shop/web", id="order-event-1", correlation_id="flow-1")

    def handle():
        ctx = Context(handled, "eda/payment")
        ctx.publish("stock-replenished", STOCK)
        first = ctx.publish("stock-replenished", STOCK, delay=timedelta(minutes=15))
        second = ctx.publish("stock-replenished", STOCK, at=datetime(2030, 1, 1, tzinfo=timezone.utc))
        return ctx, first, second

    ctx, first, second = handle()
    assert [event.type for event, _ in ctx.reactions] == ["stock.replenished"]  # the one for now only
    assert [event for event, _, _ in ctx.scheduled] == [first, second]
    assert (first.correlation_id, first.causation_id) == ("flow-1", "order-event-1")
    assert ctx.scheduled[1][2] == datetime(2030, 1, 1, tzinfo=timezone.utc).timestamp()
    assert json.loads(ctx.scheduled[1][1])["time"] == "2030-01-01T00:00:00.000Z"
    again, first_again, second_again = handle()  # the same event handled again (a redelivery)
    assert (first_again.id, second_again.id) == (first.id, second.id) and first.id != second.id
    with pytest.raises(ScheduleError, match="naive"):
        Context(handled, "eda/payment").publish("stock-replenished", STOCK, at=datetime(2030, 1, 1))


def test_a_producer_schedules_into_the_outbox_without_the_broker_and_refuses_a_naive_datetime(tmp_path):
    from eda import Producer

    settings = Settings(state_dir=tmp_path, namespace="unit", broker_url="amqp://nobody@127.0.0.1:1//")
    with Producer(settings, source="shop/web") as producer:
        event = producer.publish("stock-replenished", STOCK, delay=timedelta(minutes=5))
        with pytest.raises(ScheduleError, match="naive datetime"):
            producer.publish("stock-replenished", STOCK, at=datetime(2030, 1, 1))
        assert producer.cancel(event.id) is True and producer.cancel(event.id) is False
    outbox = Outbox(settings)
    assert outbox.find(event.id).state == "cancelled" and outbox.find(event.id).source == "shop/web"



def test_on_a_testbus_a_delayed_reaction_waits_until_advance_lets_its_time_pass():
    from eda import Worker, handles
    from eda.testing import TestBus

    class Restock(Worker):
        name = "restock"

        @handles("order.placed")
        def later(self, event, ctx):
            ctx.publish("stock-replenished", STOCK, delay=timedelta(minutes=15))

    class Shelves(Worker):
        name = "shelves"
        seen = []

        @handles("stock.replenished")
        def shelve(self, event, ctx):
            self.seen.append(event.id)

    order = {"order_id": "o-1", "user_id": "u-1", "total_amount": "10.00",
             "items": [{"sku": "SKU-1", "quantity": 1, "unit_price": "10.00"}]}
    with TestBus(Restock, Shelves) as bus:
        bus.publish("order-placed", order)
        [waiting] = bus.scheduled()
        assert waiting.type == "stock.replenished" and bus.published("stock-replenished") == []
        bus.advance(14 * 60)
        assert bus.published("stock-replenished") == [] and Shelves.seen == []
        bus.advance(60)
        assert [e.id for e in bus.published("stock-replenished")] == [waiting.id] == Shelves.seen
        assert bus.scheduled() == []


def async_reminder():
    """An async worker whose every order.placed schedules a stock-replenished 30 s later, and an order."""
    from eda import Worker, handles

    class Reminder(Worker):
        name = "async-reminder"

        @handles("order.placed")
        async def later(self, event, ctx):
            ctx.publish("stock-replenished", STOCK, delay=timedelta(seconds=30))

    order = {"order_id": "o-1", "user_id": "u-1", "total_amount": "10.00",
             "items": [{"sku": "SKU-1", "quantity": 1, "unit_price": "10.00"}]}
    return Reminder, order


def test_an_async_handlers_delayed_reaction_is_written_too():
    from eda.testing import TestBus

    Reminder, order = async_reminder()
    with TestBus(Reminder) as bus:
        placed = bus.publish("order-placed", order)
        [waiting] = bus.scheduled()
        assert waiting.id == derived_id("eda/async-reminder", placed.id, "0")
        bus.advance(30)
        assert [e.id for e in bus.published("stock-replenished")] == [waiting.id]


def test_an_async_worker_opens_its_outbox_off_its_event_loop(monkeypatch):
    # Opening the outbox connects to its database and may create its table: never on the event loop,
    # where every other handler of the worker would wait for it.
    from eda.outbox.scheduling import Scheduling
    from eda.testing import TestBus

    opened_on, writes_on = [], []
    opening, writing = Scheduling.__init__, Scheduling.write

    def recorded_init(self, *args, **kwargs):
        opened_on.append(threading.current_thread().name)
        opening(self, *args, **kwargs)

    def recorded_write(self, *args, **kwargs):
        writes_on.append(threading.current_thread().name)
        writing(self, *args, **kwargs)

    monkeypatch.setattr(Scheduling, "__init__", recorded_init)
    monkeypatch.setattr(Scheduling, "write", recorded_write)

    Reminder, order = async_reminder()
    with TestBus(Reminder) as bus:
        bus.publish("order-placed", order)
        bus.publish("order-placed", {**order, "order_id": "o-2"})
        assert len(bus.scheduled()) == 2
    assert len(opened_on) == 1 and len(writes_on) == 2
    assert not any(name.startswith("eda-async-reminder-loop") for name in opened_on + writes_on), opened_on + writes_on


@pytest.mark.parametrize("seconds, shown", [(0, "due"), (-3, "due"), (12.34, "12.3s"), (59.97, "1.0m"),
                                            (90, "1.5m"), (3598, "1.0h"), (3 * 3600, "3.0h"), (86397, "1.0d")])
def test_eda_schedule_list_shows_how_long_until_due_in_the_largest_unit_it_reaches(seconds, shown):
    from eda.commands.schedule import _until

    assert _until(seconds) == shown
