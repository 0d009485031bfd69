"""Scheduled and cancellable events end to end: ``Producer.publish(at=/delay=)`` and a handler's
``ctx.publish(delay=)`` written to the outbox, real ``eda outbox relay`` processes publishing them when
due, ``eda schedule`` commands, the real broker, PostgreSQL (a database of the test's own) and SQLite.

Arrival is watched by a spy queue polled every 10 ms: an event "arrived no earlier than due" when a
poll that began 50 ms before its due time still found nothing, and "on time" when a poll ending within
PRECISION after it found it.
"""

import signal
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest

from eda import Producer
from eda.due import derived_id
from tests.outboxes import STOCK, App, app, pg_app, relay  # noqa: F401 (fixtures: app, pg_app)
from tests.proxy import TcpProxy
from tests.support import cloud_event, handled, wait_until

pytestmark = pytest.mark.integration

PRECISION = 1.0  # seconds: a due event is published within this of its due time
APP = {"EDA_APP": "tests.integration.scheduling_app"}


@pytest.fixture
def producer(app):
    with Producer(app.outbox.settings, source="shop/web") as p:
        yield p


def arrival(spy, event_id: str, timeout: float = 30.0) -> tuple[float, float]:
    """(the start of the last poll that did not find the event, the end of the first that did)."""
    deadline, absent = time.time() + timeout, float("-inf")  # (found at the first poll: never seen absent)
    while time.time() < deadline:
        started = time.time()
        if any(e["id"] == event_id for e in spy.events):
            return absent, time.time()
        absent = started
        time.sleep(0.01)
    raise AssertionError(f"event {event_id} did not arrive within {timeout}s")


def assert_on_time(spy, event_id: str, due: float) -> None:
    absent, seen = arrival(spy, event_id)
    assert absent >= due - 0.05, f"published {due - absent:.3f}s before it was due"
    assert seen - due <= PRECISION, f"published {seen - due:.3f}s after it was due"


def scheduled_ids(eda, env) -> list[str]:
    code, output = eda.run("schedule", "list", "--json", **env)
    assert code == 0, output
    import json

    return [json.loads(line)["id"] for line in output.splitlines() if line.startswith("{")]


def test_a_delayed_event_is_published_when_due_not_before_and_at_in_the_past_at_once(eda, broker, app, producer):
    # Given a relay and a queue bound to every event
    spy = broker.spy()
    relay(eda, app)
    # When the application publishes an event with a delay of 2 s
    before = time.time()
    event = producer.publish(STOCK, {"sku": "SKU-1", "quantity": 5}, delay=timedelta(seconds=2))
    due = app.outbox.find(event.id).due
    assert before + 2 <= due <= time.time() + 2
    # Then nothing goes out before its due time, and it goes out within the precision after it
    assert_on_time(spy, event.id, due)
    # and it is the event publish returned, whose time is its due time
    [wire] = [e for e in spy.events if e["id"] == event.id]
    assert wire["type"] == "stock.replenished" and wire["time"] == event.time and wire["source"] == "shop/web"
    # When an event is published at a time already past
    past = producer.publish(STOCK, {"sku": "SKU-2", "quantity": 5}, at=datetime.now(timezone.utc) - timedelta(hours=1))
    published = time.time()
    # Then it goes out at once
    _, seen = arrival(spy, past.id)
    assert seen - published <= PRECISION
    wait_until(lambda: app.outbox.pending() == (0, None), timeout=15, message="every row marked sent")


def test_an_event_cancelled_before_its_due_time_is_never_delivered(eda, broker, app, producer):
    spy = broker.spy()
    relay(eda, app)
    # Given two events scheduled 8 s from now (time for two commands on a busy machine), and a third due
    # after them: the relay publishes due events in due order, so once it went, the two had their turn
    kept = producer.publish(STOCK, {"sku": "SKU-1", "quantity": 1}, delay=8)
    cancelled = producer.publish(STOCK, {"sku": "SKU-2", "quantity": 1}, delay=8)
    due = time.time() + 8
    after = producer.publish(STOCK, {"sku": "SKU-3", "quantity": 1}, delay=8.5)
    assert set(scheduled_ids(eda, app.env)) == {kept.id, cancelled.id, after.id}
    # When one is cancelled from the command line
    code, output = eda.run("schedule", "cancel", cancelled.id, **app.env)
    # Then it says so, and the list no longer shows it
    assert code == 0 and f"cancelled {cancelled.id}" in output, output
    assert scheduled_ids(eda, app.env) == [kept.id, after.id]
    assert time.time() < due - 1  # (all this happened before they were due)
    # and once the later one was delivered, only the other one had been before it
    spy.wait_for("stock.replenished", timeout=30, where=lambda e: e["id"] == after.id)
    assert [e["id"] for e in spy.events] == [kept.id, after.id]
    # When it, or the published one, or an unknown id is cancelled: exit 1 and one line saying why
    for event_id, why in ((cancelled.id, "was cancelled already"), (kept.id, "was published already"),
                          ("no-such-event", "no scheduled event has id 'no-such-event'")):
        code, output = eda.run("schedule", "cancel", event_id, **app.env)
        lines = [line for line in output.splitlines() if line.strip()]
        assert code == 1 and lines[-1].startswith("error: ") and why in lines[-1], output


def test_a_relay_down_while_events_fall_due_publishes_them_once_back_late_but_not_lost(eda, broker, app, producer):
    spy = broker.spy()
    # Given a relay that published the first of two scheduled events
    first_relay = relay(eda, app)
    first = producer.publish(STOCK, {"sku": "SKU-1", "quantity": 1}, delay=0.5)
    second = producer.publish(STOCK, {"sku": "SKU-2", "quantity": 1}, delay=2)
    spy.wait_for("stock.replenished", timeout=30)
    # When it stops, and the second falls due while no relay runs
    first_relay.send(signal.SIGTERM)
    assert first_relay.wait() == 0
    time.sleep(max(0.0, app.outbox.find(second.id).due + 0.5 - time.time()))
    assert [e["id"] for e in spy.events] == [first.id]
    # Then a relay started later publishes it at once, and nothing twice
    started = time.time()
    relay(eda, app)
    _, seen = arrival(spy, second.id)
    assert seen - started <= 5.0
    wait_until(lambda: app.outbox.find(second.id).state == "published", message="the row marked sent")
    assert [e["id"] for e in spy.events] == [first.id, second.id]  # (a second copy goes out before the mark)


def test_two_relays_on_postgresql_publish_each_due_event_once_and_on_time(eda, broker, pg_app):
    spy = broker.spy()
    relay(eda, pg_app, "--batch", "20")
    relay(eda, pg_app, "--batch", "20")
    # Given 200 events falling due over the next 3 s, written in one transaction
    start = time.time() + 1
    dues = {}
    with pg_app.connect() as conn:
        for i in range(200):
            due = start + i * 0.015
            event = pg_app.outbox.add(conn, STOCK, {"sku": f"SKU-{i}", "quantity": 1},
                                      at=datetime.fromtimestamp(due, timezone.utc))
            dues[event.id] = due
    # Then each is published exactly once, none before its due time
    spy.wait_for("stock.replenished", count=200, timeout=60)
    arrived = time.time()
    assert arrived - max(dues.values()) <= PRECISION + 0.5
    wait_until(lambda: pg_app.outbox.pending() == (0, None), timeout=15, message="every row marked sent")
    ids = [e["id"] for e in spy.events]  # (a second copy of a row goes out before its mark)
    assert sorted(ids) == sorted(dues)


def test_a_delayed_reaction_from_a_handler_is_published_when_due_and_written_once_for_a_redelivery(
        eda, broker, app):
    spy = broker.spy()
    env = {**app.env, **APP}
    eda.worker("reminders", **env)
    relay(eda, app)
    # When the same event (one id) is delivered twice, its handler delaying its reaction by 5 s
    request = cloud_event("reminder.requested", {"reminderId": "r-1", "delayMs": 5000})
    broker.publish("reminder.requested", request)
    broker.publish("reminder.requested", request)
    worker = eda.processes[0]
    worker.wait_for_log(lambda r: worker.count(handled("reminder.requested")) >= 2, timeout=30, what="two handlings")
    # Then one reaction is scheduled, with the id derived from the handled event's, due 5 s after handling
    reaction_id = derived_id("eda/reminders", request["id"], "0")
    assert scheduled_ids(eda, app.env) == [reaction_id]
    scheduled = app.outbox.find(reaction_id)
    assert scheduled.type == "reminder.due" and scheduled.correlation_id == request["id"]
    # and it is published once, when due, caused by the handled event
    assert_on_time(spy, reaction_id, scheduled.due)
    wait_until(lambda: app.outbox.find(reaction_id).state == "published", message="the row marked sent")
    [due] = spy.of_type("reminder.due")
    assert due["id"] == reaction_id and due["causationid"] == request["id"] and due["data"] == {"reminderId": "r-1"}


def test_a_worker_killed_after_writing_a_delayed_reaction_before_its_ack_writes_it_once(
        eda, broker, broker_url, pg_app):
    spy = broker.spy()
    env = {**pg_app.env, **APP}
    # Given a worker whose acks a proxy holds back (what it sends the broker is held; deliveries pass)
    proxy = TcpProxy(urlsplit(broker_url).hostname or "localhost", urlsplit(broker_url).port or 5672)
    try:
        first = eda.worker("reminders", **{**env, "EDA_BROKER_URL": proxy.url(broker_url)})
        proxy.hold_client = True
        # When it handles an event: the delayed reaction is in the outbox, the ack not with the broker
        request = cloud_event("reminder.requested", {"reminderId": "r-1", "delayMs": 1000})
        broker.publish("reminder.requested", request)
        reaction_id = derived_id("eda/reminders", request["id"], "0")
        wait_until(lambda: pg_app.outbox.find(reaction_id) is not None, timeout=30, message="the reaction written")
        # and is killed with SIGKILL before the ack reached the broker
        first.send(signal.SIGKILL)
        assert first.wait() == -signal.SIGKILL
        proxy.cut()  # its connection ends without the held ack: the broker redelivers the event
    finally:
        proxy.hold_client = False
        proxy.close()
    # Then a worker started again handles the redelivered event, and the reaction is still one row
    second = eda.worker("reminders", **env)
    second.wait_for_log(handled("reminder.requested"), timeout=30, what="the redelivery handled")
    assert scheduled_ids(eda, pg_app.env) == [reaction_id]
    # published once, when due
    relay(eda, pg_app)
    spy.wait_for("reminder.due", timeout=30)
    wait_until(lambda: pg_app.outbox.find(reaction_id).state == "published", message="the row marked sent")
    assert [e["id"] for e in spy.of_type("reminder.due")] == [reaction_id]


def test_a_cancel_while_a_relay_publishes_the_event_waits_for_it_and_says_it_was_published(eda, broker, app, producer):
    spy = broker.spy()
    event = producer.publish(STOCK, {"sku": "SKU-1", "quantity": 1}, at=datetime.now(timezone.utc))
    with app.marks_held():
        # Given a relay that published the due event but has not marked it sent (it holds the row)
        relay(eda, app)
        spy.wait_for("stock.replenished", timeout=30)
        # When it is cancelled at that moment
        cancel = eda.start("schedule", "cancel", event.id, **app.env)
        time.sleep(1.5)
        # Then the cancel waits for the relay
        assert cancel.proc.poll() is None, cancel.output
    # and once the relay marked it, the cancel says it is too late: one or the other, never both
    assert cancel.wait(30) == 1
    assert f"error: {event.id} was published already" in cancel.output, cancel.output
    assert app.outbox.find(event.id).state == "published"
    assert [e["id"] for e in spy.events] == [event.id]


def test_a_cancel_that_waits_too_long_for_a_relays_row_lock_is_an_error_and_cancels_nothing(pg_app, monkeypatch):
    from eda.errors import StoreUnavailable
    from eda.outbox import postgres

    with pg_app.connect() as conn:
        event = pg_app.outbox.add(conn, STOCK, {"sku": "SKU-1", "quantity": 1}, delay=60)
    # Given a relay holding the event's row (claimed, being published), past the time a cancel waits for it
    monkeypatch.setattr(postgres, "CANCEL_LOCK_TIMEOUT", "200ms")
    with pg_app.connect() as relay_conn:
        relay_conn.execute(f"SELECT 1 FROM {pg_app.outbox.table.table} WHERE event_id = %s FOR UPDATE", (event.id,))
        # When it is cancelled, then the cancel says it could not, and to try again
        with pytest.raises(StoreUnavailable, match=f"cannot cancel {event.id} now: its row stayed locked for 200ms "
                                                   f".*nothing was cancelled, try again"):
            pg_app.outbox.cancel(event.id)
        relay_conn.rollback()
    # and the event still waits, to be cancelled once the row is free
    assert pg_app.outbox.find(event.id).state == "waiting"
    assert pg_app.outbox.cancel(event.id) is True


def test_a_postgresql_outbox_of_an_earlier_eda_is_upgraded_in_place(eda, broker, env, database):
    import psycopg

    from eda.outbox import Outbox
    from tests import pg

    # Given the outbox table as an earlier eda made it, with a row pending
    schema = env["EDA_NAMESPACE"]
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f'''
            CREATE SCHEMA "{schema}";
            CREATE TABLE "{schema}".outbox (position bigserial PRIMARY KEY, event_id text NOT NULL,
                event_type text NOT NULL, source text NOT NULL, correlation_id text NOT NULL, body bytea NOT NULL,
                added_at timestamptz NOT NULL DEFAULT now(), sent_at timestamptz);
            CREATE INDEX outbox_pending ON "{schema}".outbox (position) WHERE sent_at IS NULL;
            INSERT INTO "{schema}".outbox (event_id, event_type, source, correlation_id, body)
                VALUES ('old-1', 'stock.replenished', 'shop/web', 'old-1',
                        convert_to('{{"specversion":"1.0","id":"old-1","source":"shop/web","type":"stock.replenished","time":"2030-01-01T00:00:00Z","datacontenttype":"application/json","data":{{"sku":"SKU-1","quantity":1}}}}', 'UTF8'));
        ''')
    # When eda opens it, and an event is scheduled in it
    app = App(env, database)
    spy = broker.spy()
    with Producer(app.outbox.settings) as producer:
        scheduled = producer.publish(STOCK, {"sku": "SKU-2", "quantity": 1}, delay=0)
    # Then the columns and indexes are there, and a relay publishes the old row and the scheduled one
    indexes = {row[0] for row in pg.query(database, "SELECT indexname FROM pg_indexes WHERE schemaname = %s",
                                          (schema,))}
    assert {"outbox_pending", "outbox_due", "outbox_scheduled", "outbox_cancelled", "outbox_overdue"} <= indexes
    relay(eda, app)
    assert sorted(e["id"] for e in spy.wait_for("stock.replenished", count=2, timeout=30)) == \
        sorted(["old-1", scheduled.id])
    assert isinstance(Outbox(app.outbox.settings).find(scheduled.id).due, float)


def test_a_postgresql_outbox_from_before_overdue_rows_were_told_apart_gets_their_column(pg_app, database):
    import psycopg

    from eda.outbox import Outbox
    from tests import pg

    # Given an outbox as the previous eda made it (due times, no first due times), with a row due
    table = pg_app.outbox.table.table
    with Producer(pg_app.outbox.settings) as producer:
        waiting = producer.publish(STOCK, {"sku": "SKU-1", "quantity": 1}, delay=0)
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f"ALTER TABLE {table} DROP COLUMN first_due_at")  # its index goes with it
    # When eda opens it again
    outbox = Outbox(pg_app.outbox.settings)
    # Then the column and its index are back, and the row is pending, not overdue
    assert pg.query(database, "SELECT indexname FROM pg_indexes WHERE indexname = 'outbox_overdue' AND "
                              "schemaname = %s", (outbox.table.schema,))
    assert outbox.pending()[0] == 1 and outbox.overdue() == (0, None) and outbox.find(waiting.id).state == "waiting"


def test_a_scheduled_event_no_queue_takes_is_due_again_later_and_holds_up_no_other(eda, broker, app, producer):
    # Given a relay, and a queue for stock events only
    spy = broker.spy("stock.replenished")
    proc = relay(eda, app)
    # When an event no queue takes falls due, and another one a second later
    order = {"order_id": "o-1", "user_id": "u-1", "total_amount": "10.00",
             "items": [{"sku": "SKU-1", "quantity": 1, "unit_price": "10.00"}]}
    refused = producer.publish("order-placed", order, delay=0)
    stock = producer.publish(STOCK, {"sku": "SKU-1", "quantity": 1}, delay=1)
    # Then the broker's refusal puts the first off by 30 s, without the relay backing off for it
    proc.wait_for_log(lambda r: "due again in 30s" in r.get("message", ""), timeout=30, what="the refusal")
    waiting = app.outbox.find(refused.id)
    assert waiting.state == "waiting" and waiting.due > time.time() + 20
    # and the other goes out on time
    assert_on_time(spy, stock.id, app.outbox.find(stock.id).due)
    assert not any("retrying in" in r.get("message", "") for r in proc.records)


def test_eda_outbox_status_counts_a_scheduled_event_no_queue_takes_as_overdue_and_fails_past_max_age(
        eda, broker, app, producer):
    import json

    # Given a relay, and no queue taking order.placed
    proc = relay(eda, app)
    # When a scheduled order.placed falls due and the broker refuses it
    order = {"order_id": "o-1", "user_id": "u-1", "total_amount": "10.00",
             "items": [{"sku": "SKU-1", "quantity": 1, "unit_price": "10.00"}]}
    producer.publish("order-placed", order, delay=0)
    proc.wait_for_log(lambda r: "due again in 30s" in r.get("message", ""), timeout=30, what="the refusal")
    time.sleep(1.5)
    # Then eda outbox status counts it pending and overdue, healthy within --max-age
    code, output = eda.run("outbox", "status", **app.env)
    assert code == 0 and "1 pending" in output and "1 scheduled overdue by up to" in output, output
    assert "nothing pending" not in output and "scheduled for later" not in output, output
    # and exits 1 past it, saying why
    code, output = eda.run("outbox", "status", "--max-age", "1s", **app.env)
    assert code == 1 and "unhealthy: the oldest pending row is" in output and "does a queue take its type?" in output, \
        output
    code, output = eda.run("outbox", "status", "--json", "--max-age", "1s", **app.env)
    report = json.loads(output.splitlines()[0])
    assert code == 1 and (report["pending"], report["overdue"], report["healthy"]) == (1, 1, False)
    assert report["overdue_seconds"] >= 1.5


@pytest.mark.parametrize("option", ["--correlation-id", "--source"])
def test_eda_schedule_add_refuses_an_attribute_longer_than_amqp_carries_and_writes_nothing(eda, app, option):
    code, output = eda.run("schedule", "add", STOCK, "--data", '{"sku": "SKU-1", "quantity": 1}', "--delay", "1h",
                           option, "é" * 150, **app.env)
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 2 and lines[-1].startswith(f"error: {option}: ") and "255" in lines[-1], output
    assert app.outbox.scheduled() == []


def test_eda_schedule_list_shows_the_waiting_events_in_aligned_columns(eda, app, producer):
    # Given two events scheduled an hour and a half and three days from now
    soon = producer.publish(STOCK, {"sku": "SKU-1", "quantity": 1}, delay=timedelta(minutes=90))
    later = producer.publish(STOCK, {"sku": "SKU-2", "quantity": 1}, delay=timedelta(days=3))
    # When they are listed for a person
    code, output = eda.run("schedule", "list", **app.env)
    # Then a header and a line each, earliest due first, each column starting where its header does
    assert code == 0, output
    header, *rows = [line for line in output.splitlines() if line.strip() and not line.startswith("{")]
    assert [row.split()[0] for row in rows] == [soon.id, later.id]
    starts = [header.index(title) for title in ("TYPE", "DUE (UTC)", "IN", "CORRELATION ID", "SOURCE")]
    for row, event in zip(rows, (soon, later)):
        assert [row[start:].split()[0] for start in starts] == \
            ["stock.replenished", event.time, "1.5h" if event is soon else "3.0d", event.correlation_id, "shop/web"]
