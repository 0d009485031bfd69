"""The transactional outbox end to end: an application's transactions, real `eda outbox relay` processes,
the real broker, PostgreSQL (a database of the test's own) and SQLite.

"Killed between publish and mark" is made certain rather than hoped for: the test holds a lock that
the relay's mark (an UPDATE) must wait for, sees the batch arrive on the wire, then SIGKILLs the relay.
"""

import json
import signal
import sys
from collections import Counter
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.integration.test_metrics import free_port, sample, scrape
from tests.integration.test_supervisor import supervisord  # noqa: F401 (a fixture)
from tests.integration.test_tracing import spans_dir, traced  # noqa: F401 (fixtures)
from tests.outboxes import STOCK, App, app, pg_app, relay  # noqa: F401 (fixtures: app, pg_app)
from tests.proxy import TcpProxy
from tests.support import EdaProcess, wait_until

pytestmark = pytest.mark.integration


def published_by(proc) -> int:
    return sum(r.get("published", 0) for r in proc.records if r.get("message", "").startswith("published"))


def test_committed_transactions_publish_exactly_their_events_in_order_rolled_back_ones_none(eda, broker, app):
    # Given a relay running and a queue bound to every event
    spy = broker.spy()
    relay(eda, app)
    # When the application commits a transaction with three events, rolls back one with two, then commits one
    committed = app.replenish("SKU-A", "SKU-B", "SKU-C")
    rolled_back = app.replenish("SKU-X", "SKU-Y", commit=False)
    last = app.replenish("SKU-D")
    # Then exactly the committed events arrive, in the order they were added, with the ids add() returned
    events = spy.wait_for("stock.replenished", count=4, timeout=30)
    assert [e["id"] for e in events] == committed + last
    assert [e["data"]["sku"] for e in events] == ["SKU-A", "SKU-B", "SKU-C", "SKU-D"]
    assert not set(rolled_back) & {e["id"] for e in spy.events}
    # and each is a CloudEvent with the properties the wire contract fixes
    message = spy.message_of(committed[0])
    assert message.properties["content_type"] == "application/cloudevents+json"
    assert message.properties["type"] == "stock.replenished" and message.delivery_info["routing_key"] == "stock.replenished"
    assert events[0]["specversion"] == "1.0" and events[0]["source"] == "eda/outbox"
    # and the application's own rows follow their transactions too
    assert app.rows() == 4
    # and once marked, nothing is pending
    wait_until(lambda: app.outbox.pending()[0] == 0, timeout=15, message="every row marked sent")
    code, output = eda.run("outbox", "status", **app.env)
    assert code == 0 and "nothing pending" in output, output


def test_a_relay_killed_between_publish_and_mark_loses_nothing_once_restarted(eda, broker, app):
    # Given 600 committed events and a relay publishing them 100 at a time
    spy = broker.spy()
    ids = app.replenish(*[f"SKU-{i:04d}" for i in range(600)])
    with app.marks_held():
        first = relay(eda, app, "--batch", "100")
        # When it has published its first batch (confirmed: the events are in the queue) but cannot mark it
        spy.wait_for("stock.replenished", count=100, timeout=30)
        # and is killed with SIGKILL
        first.send(signal.SIGKILL)
        assert first.wait() == -signal.SIGKILL
        # Then every row is still pending
        assert app.outbox.pending()[0] == 600
    # When a relay starts again
    second = relay(eda, app, "--batch", "100")
    # Then every event arrives; the only duplicates are the unmarked batch, each with its own event id
    wait_until(lambda: set(ids) <= {e["id"] for e in spy.events}, timeout=60, message="all 600 events")
    wait_until(lambda: app.outbox.pending()[0] == 0, timeout=30, message="every row marked sent")
    second.send(signal.SIGTERM)
    assert second.wait() == 0
    seen = Counter(e["id"] for e in spy.events)
    assert set(seen) == set(ids)
    duplicated = {i for i, n in seen.items() if n > 1}
    assert duplicated <= set(ids[:100]) and max(seen.values()) <= 2
    bodies = {}
    for event in spy.events:
        assert bodies.setdefault(event["id"], event) == event  # a duplicate is the same event, byte for byte


def test_two_relays_at_once_publish_each_row_once(eda, broker, pg_app):
    app = pg_app
    spy = broker.spy()
    ids = app.replenish(*[f"SKU-{i:04d}" for i in range(1000)])
    with app.marks_held():
        # Given one relay holding its first batch of 100 (published, not yet marked)
        first = relay(eda, app, "--batch", "100")
        spy.wait_for("stock.replenished", count=100, timeout=30)
        # When a second relay starts meanwhile
        second = relay(eda, app, "--batch", "100")
        # Then it skips the rows the first one holds and publishes the next batch
        spy.wait_for("stock.replenished", count=200, timeout=30)
        assert len({e["id"] for e in spy.events}) == len(spy.events) == 200
    # When both run on to the end
    wait_until(lambda: app.outbox.pending()[0] == 0, timeout=60, message="every row marked sent")
    for proc in (first, second):
        proc.send(signal.SIGTERM)
        assert proc.wait() == 0
    # Then each row was published exactly once, and both relays took part
    assert sorted(e["id"] for e in spy.events) == sorted(ids)
    assert published_by(first) + published_by(second) == 1000
    assert published_by(first) >= 100 and published_by(second) >= 100


def test_a_broker_that_is_down_leaves_the_rows_pending_and_the_relay_retries(eda, broker, broker_url, pg_app):
    app = pg_app
    spy = broker.spy()
    # Given a relay whose broker is unreachable (a proxy forwarding to a closed port), serving metrics
    proxy = TcpProxy("127.0.0.1", free_port())
    port = free_port()
    try:
        proc = relay(eda, app, EDA_BROKER_URL=proxy.url(broker_url), EDA_METRICS_PORT=port)
        ids = app.replenish("SKU-1", "SKU-2", "SKU-3")
        # Then it says it retries, and keeps the rows
        proc.wait_for_log(lambda r: "retrying in" in r.get("message", ""), timeout=30, what="a retry")
        assert proc.proc.poll() is None
        assert app.outbox.pending()[0] == 3
        wait_until(lambda: sample(scrape(port), "eda_outbox_pending") == 3, timeout=15, message="pending 3")
        code, output = eda.run("outbox", "status", "--max-age", "0", **app.env)
        assert code == 1 and "3 pending" in output and "unhealthy: the oldest pending row" in output, output
        # When the broker is back
        real = urlsplit(broker_url)
        proxy.target = (real.hostname or "localhost", real.port or 5672)
        # Then the events are published and marked, and the metrics say so
        events = spy.wait_for("stock.replenished", count=3, timeout=60)
        assert [e["id"] for e in events] == ids
        wait_until(lambda: sample(scrape(port), "eda_outbox_pending") == 0, timeout=30, message="pending 0")
        samples = scrape(port)
        assert sample(samples, "eda_outbox_published_total") == 3
        assert sample(samples, "eda_outbox_oldest_pending_seconds") == 0
    finally:
        proxy.close()


@pytest.mark.parametrize("command, shown", [
    (("outbox", "status"), "unhealthy: no outbox at "),
    (("schedule", "list"), "error: no outbox at "),
    (("schedule", "cancel", "e-1"), "error: no outbox at "),
])
def test_a_command_reading_the_outbox_where_there_is_none_says_so_and_makes_none(eda, tmp_path, command, shown):
    # Given a state folder that no application nor relay used (an admin's shell without their settings)
    state = tmp_path / "elsewhere"
    # When a command that only reads the outbox runs there
    code, output = eda.run(*command, EDA_STATE_DIR=state)
    # Then it says there is no outbox there, names the folder, exits 1 (a monitoring check fails), and makes nothing
    assert code == 1, output
    assert output.splitlines()[-1].startswith(shown) and f"EDA_STATE_DIR={state}" in output, output
    assert not state.exists()


def test_a_command_reading_a_postgresql_outbox_where_there_is_none_says_so_and_makes_none(eda, database):
    import psycopg

    # Given a PostgreSQL database that no application nor relay of this namespace used
    # When eda outbox status runs on it
    code, output = eda.run("outbox", "status", EDA_DATABASE_URL=database)
    # Then it says there is no outbox there, exits 1, and creates no table
    assert code == 1 and output.splitlines()[-1].startswith("unhealthy: no outbox in "), output
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'outbox'"
                            ).fetchone()[0] == 0


@pytest.mark.parametrize("command", [("outbox", "relay"), ("outbox", "status")])
def test_a_wrong_database_url_is_one_line_and_exit_2(eda, command):
    for url, expected in (("postgresql://postgres:s3cret-pw@127.0.0.1:5432/eda_no_such_db", "does not exist"),
                          ("mysql://root:s3cret-pw@127.0.0.1/shop", "not a PostgreSQL URL")):
        code, output = eda.run(*command, EDA_DATABASE_URL=url)
        lines = [line for line in output.splitlines() if line.strip()]
        assert code == 2, output
        assert lines[-1].startswith("error: ") and expected in lines[-1], output
        assert "Traceback" not in output and "s3cret-pw" not in output, output


def test_an_event_that_breaks_its_contract_is_refused_by_add_and_never_written(pg_app):
    from eda.errors import ContractError

    conn = pg_app.connect()
    try:
        with pytest.raises(ContractError, match="quantity"):
            pg_app.outbox.add(conn, STOCK, {"sku": "SKU-1", "quantity": "many"})
        conn.rollback()
    finally:
        conn.close()
    assert pg_app.outbox.pending() == (0, None)


def test_the_relay_tells_systemd_it_is_ready_feeds_the_watchdog_and_stops_gracefully(eda, pg_app, notify_socket):
    proc = eda.start("outbox", "relay", NOTIFY_SOCKET=notify_socket.name, WATCHDOG_USEC=1_000_000, **pg_app.env)
    assert notify_socket.wait_for("READY")["READY"] == "1"
    assert notify_socket.wait_for("WATCHDOG")["WATCHDOG"] == "1"
    proc.send(signal.SIGTERM)
    assert notify_socket.wait_for("STOPPING")["STOPPING"] == "1"
    assert proc.wait() == 0


def test_status_json(eda, pg_app):
    pg_app.replenish("SKU-1")
    code, output = eda.run("outbox", "status", "--json", **pg_app.env)
    report = json.loads(output.splitlines()[0])
    assert code == 0 and report["pending"] == 1 and report["healthy"] and report["oldest_age_seconds"] >= 0


def test_supervisord_runs_the_relay_beside_the_workers_and_stops_it_gracefully(supervisord, broker, env):
    # Given supervisord started with deploy/supervisor/eda.conf as shipped
    app = App(env, env.get("EDA_DATABASE_URL") or None)  # the outbox the programs' environment names
    spy = broker.spy()
    supervisord.wait_for_log(lambda r: r.get("message", "").startswith("relaying the outbox"), timeout=60,
                             what="the relay started")
    # When the application commits an event
    ids = app.replenish("SKU-1")
    # Then the relay publishes it
    assert [e["id"] for e in spy.wait_for("stock.replenished", timeout=30)] == ids
    # When supervisorctl stops the relay
    wait_until(lambda: "RUNNING" in supervisord.ctl("status", "eda-outbox-relay"), timeout=30, interval=0.2,
               message="eda-outbox-relay RUNNING")
    assert "eda-outbox-relay: stopped" in supervisord.ctl("stop", "eda-outbox-relay")
    # Then it stopped gracefully with exit status 0
    assert "stopped: eda-outbox-relay (exit status 0)" in supervisord.log


def test_a_relay_whose_database_connections_are_killed_reconnects_and_goes_on(eda, broker, pg_app):
    from tests import pg

    spy = broker.spy()
    proc = relay(eda, pg_app)
    first = pg_app.replenish("SKU-1")
    spy.wait_for("stock.replenished", count=1, timeout=30)
    # When a DBA (or a failover) kills the relay's database connections
    database = urlsplit(pg_app.env["EDA_DATABASE_URL"]).path.lstrip("/")
    assert pg.terminate_connections(database, "eda-outbox-relay") == 2
    # Then it reconnects, and publishes what is committed next
    proc.wait_for_log(lambda r: r.get("message") == "reconnected to the database", timeout=30, what="a reconnect")
    second = pg_app.replenish("SKU-2")
    events = spy.wait_for("stock.replenished", count=2, timeout=30)
    assert [e["id"] for e in events] == first + second
    assert proc.proc.poll() is None


def test_an_event_no_queue_takes_stays_pending_and_goes_out_once_a_queue_is_bound(eda, broker, pg_app):
    # Given a relay, and no queue bound to stock.replenished
    proc = relay(eda, pg_app)
    ids = pg_app.replenish("SKU-1")
    # Then the broker returns the event (mandatory), and the row stays pending
    proc.wait_for_log(lambda r: "did not take" in r.get("message", ""), timeout=30, what="the event returned")
    assert pg_app.outbox.pending()[0] == 1
    # When a queue is bound, the relay's retry publishes it
    spy = broker.spy()
    assert [e["id"] for e in spy.wait_for("stock.replenished", timeout=60)] == ids
    wait_until(lambda: pg_app.outbox.pending()[0] == 0, timeout=30, message="the row marked sent")


def test_on_sqlite_a_second_relay_stands_by_and_takes_over_when_the_first_dies(eda, broker, env):
    app = App(env, None)
    spy = broker.spy()
    # Given a relay that holds the SQLite outbox (it published an event)
    first = relay(eda, app)
    ids = app.replenish("SKU-1")
    spy.wait_for("stock.replenished", count=1, timeout=30)
    # When a second relay starts, it stands by
    second = relay(eda, app)
    second.wait_for_log(lambda r: "standing by" in r.get("message", ""), timeout=30, what="standing by")
    # When the first dies, the second takes over
    first.send(signal.SIGKILL)
    first.wait()
    ids += app.replenish("SKU-2")
    events = spy.wait_for("stock.replenished", count=2, timeout=30)
    assert [e["id"] for e in events] == ids
    # (its log line may reach the test after the event reached the spy)
    second.wait_for_log(lambda r: r.get("message", "").startswith("published"), timeout=30, what="its publish")
    assert published_by(first) == 1 and published_by(second) == 1


def test_sent_rows_are_deleted_after_the_retention_pending_ones_never(pg_app):
    table = pg_app.outbox.table
    pg_app.replenish("SKU-1", "SKU-2")
    conn = pg_app.outbox.open(autocommit=True)
    try:
        first, second = [row[0] for row in conn.execute(f"SELECT position FROM {table.table} ORDER BY position")]
        table.mark_sent(conn, [first])
        assert table.prune(conn, retention=3600) == 0  # sent just now: kept
        conn.execute(f"UPDATE {table.table} SET sent_at = now() - interval '2 hours' WHERE position = %s", (first,))
        assert table.prune(conn, retention=3600) == 1
        assert [row[0] for row in conn.execute(f"SELECT position FROM {table.table}")] == [second]
        conn.execute(f"UPDATE {table.table} SET added_at = now() - interval '2 hours'")
        assert table.prune(conn, retention=0) == 0  # pending, however old
    finally:
        conn.close()


def test_add_refuses_a_connection_it_cannot_write_through(pg_app):
    import asyncio
    import sqlite3

    from eda.errors import ConfigError

    async def with_async_connection():
        conn = await psycopg.AsyncConnection.connect(pg_app.env["EDA_DATABASE_URL"])
        try:
            pg_app.outbox.add(conn, STOCK, {"sku": "SKU-1", "quantity": 1})
        finally:
            await conn.close()

    with pytest.raises(ConfigError, match="not an async one"):
        asyncio.run(with_async_connection())
    with pytest.raises(ConfigError, match="pass a psycopg 3 connection"):
        pg_app.outbox.add(sqlite3.connect(":memory:"), STOCK, {"sku": "SKU-1", "quantity": 1})
    assert pg_app.outbox.pending() == (0, None)


def test_a_broker_that_refuses_the_login_is_one_line_and_exit_2(eda, env, broker_url):
    # Retrying cannot help a wrong password: the relay says so and exits, the rows stay.
    parts = urlsplit(broker_url)
    wrong = parts._replace(netloc=f"{parts.username or 'guest'}:not-the-pw-7@{parts.hostname}:{parts.port or 5672}")
    code, output = eda.run("outbox", "relay", EDA_BROKER_URL=wrong.geturl())
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 2 and lines[-1].startswith("error: ") and "access refused" in lines[-1], output
    assert "not-the-pw-7" not in output and "Traceback" not in output, output


CHECKOUT = '''
from opentelemetry import trace
from eda import Settings, tracing
from eda.outbox import Outbox

outbox = Outbox(Settings.from_env(), source="shop/web")
tracing.setup("shop-web")
with trace.get_tracer("shop").start_as_current_span("checkout"):
    with outbox.connect() as conn:
        print(outbox.add(conn, "stock-replenished", {"sku": "SKU-1", "quantity": 5}).id)
'''


def test_with_tracing_on_the_relays_publish_joins_the_trace_of_the_transaction_that_added_it(
        eda, broker, pg_app, traced, spans_dir):
    import subprocess
    import sys

    from tests.integration.test_tracing import named, spans, wait_for_spans

    spy = broker.spy()
    # Given an application that adds an event inside its own span, traced
    done = subprocess.run([sys.executable, "-c", CHECKOUT], env={**pg_app.env, **traced}, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    event_id = done.stdout.split()[-1]
    [checkout] = wait_for_spans(spans_dir, named("checkout"), what="the application's span")
    # When a traced relay publishes it
    relay(eda, pg_app, **traced)
    [event] = spy.wait_for("stock.replenished", timeout=30)
    # Then the event carries that trace, and the relay's publish span is in it
    assert event["id"] == event_id and event["traceparent"].split("-")[1] == checkout["trace_id"]
    [publish] = wait_for_spans(spans_dir, named("publish stock.replenished"), what="the relay's publish span")
    assert publish["trace_id"] == checkout["trace_id"] and publish["service"] == "eda-outbox-relay"
    assert {s["trace_id"] for s in spans(spans_dir)} == {checkout["trace_id"]}


# A relay whose every wait would last a minute: the ticks and the SQLite poll made long, so that only the
# stop itself can end a wait in time.
LONG_WAITS = '''
import sys
from eda import logs
from eda.outbox import relay
from eda.settings import Settings

relay.TICK = 60.0
settings = Settings.from_env()
logs.configure(settings.log_format, settings.log_level)
sys.exit(relay.Relay(settings, poll=60.0).run())
'''


def long_waiting_relay(app) -> EdaProcess:
    proc = EdaProcess(("relay with long waits",), {k: str(v) for k, v in app.env.items()},
                      command=[sys.executable, "-c", LONG_WAITS])
    proc.wait_for_log(lambda r: r.get("message", "").startswith("connected to the broker"), what="the relay connected")
    return proc


def test_sigterm_ends_a_relays_wait_at_once(broker, app):
    # Given an idle relay, waiting for new rows (a NOTIFY on PostgreSQL, its poll on SQLite) for a minute
    proc = long_waiting_relay(app)
    try:
        proc.wait_for_log(lambda r: r.get("message", "").startswith("relaying the outbox"), what="relaying")
        # When it gets SIGTERM
        proc.send(signal.SIGTERM)
        # Then it stops gracefully now, not when the wait would have ended
        assert proc.wait(timeout=20) == 0, proc.output
        assert "stopped: every published row of the last batch is marked sent" in proc.output
    finally:
        proc.stop()


def test_sigterm_ends_a_standing_by_relays_wait_at_once(broker, env):
    # Given a second relay standing by beside the one holding a SQLite outbox, its naps a minute long
    app = App(env, None)
    holder = long_waiting_relay(app)
    standby = EdaProcess(("standby relay with long waits",), {k: str(v) for k, v in app.env.items()},
                         command=[sys.executable, "-c", LONG_WAITS])
    try:
        standby.wait_for_log(lambda r: "standing by" in r.get("message", ""), timeout=30, what="standing by")
        # When both get SIGTERM, both stop now
        for proc in (standby, holder):
            proc.send(signal.SIGTERM)
        for proc in (standby, holder):
            assert proc.wait(timeout=20) == 0, proc.output
    finally:
        holder.stop()
        standby.stop()


def test_a_batch_the_database_ends_for_idling_is_a_lost_session_the_relay_reopens(env, database):
    import time as clock

    from eda.outbox.sessions import PostgresSession
    from eda.settings import Settings
    from eda import Outbox

    # Given a PostgreSQL outbox whose server ends transactions idle for over 1 s, with one row pending
    url = f"{database}?options=-c%20idle_in_transaction_session_timeout%3D1s"
    outbox = Outbox(Settings(database_url=url, namespace=env["EDA_NAMESPACE"]))
    with outbox.connect() as conn:
        outbox.add(conn, STOCK, {"sku": "SKU-1", "quantity": 1})
        conn.commit()
    session = PostgresSession(outbox)
    try:
        # When the relay's batch waits longer than that for the broker's confirms before marking its rows
        with pytest.raises(Exception) as ended:
            with session.claimed(10, clock.time()) as (rows, mark):
                assert len(rows) == 1
                clock.sleep(2.5)
                mark([row[0] for row in rows])
        # Then what the database raised is one of the errors the relay reopens its session for (not a crash)
        assert isinstance(ended.value, session.errors), repr(ended.value)
    finally:
        session.close()
