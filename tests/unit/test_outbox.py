"""The outbox's own logic on a real SQLite file: what add() writes and refuses, the status check, the
relay's systemd unit, and how a database URL problem is told."""

import json
import shutil
import sqlite3
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

import eda_shop.contracts  # noqa: F401 (the shop's events: stock-replenished, order-placed)
from eda.errors import ConfigError, ContractError
from eda.outbox import Outbox
from eda.outbox.status import describe
from eda.outbox.tables import PostgresTable, connect_postgres
from eda.settings import Settings
from tests.support import eda_command, in_ci
from tests.unit.test_deploy_systemd import one, parse_unit, seconds

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "eda-outbox-relay.service"


@pytest.fixture
def outbox(tmp_path):
    return Outbox(Settings(state_dir=tmp_path, namespace="unit"), source="shop/web")


def rows(outbox) -> list[tuple]:
    with sqlite3.connect(outbox.table.path) as conn:
        return conn.execute("SELECT event_id, event_type, source, correlation_id, body, sent_at FROM outbox "
                            "ORDER BY position").fetchall()


def test_add_writes_the_cloudevent_in_the_callers_transaction_and_returns_it(outbox):
    order = {"order_id": "o-1", "user_id": "u-1", "total_amount": Decimal("20.00"),
             "items": [{"sku": "SKU-1", "quantity": 2, "unit_price": Decimal("10.00")}]}
    with sqlite3.connect(outbox.table.path) as conn:
        event = outbox.add(conn, "order-placed", order, correlation_id="checkout-7")
        assert rows(outbox) == []  # not committed yet: another connection sees nothing
    [(event_id, event_type, source, correlation_id, body, sent_at)] = rows(outbox)
    wire = json.loads(body)
    assert (event_id, event_type, source, correlation_id, sent_at) == \
        (event.id, "order.placed", "shop/web", "checkout-7", None)
    assert wire["id"] == event.id and wire["type"] == "order.placed" and wire["correlationid"] == "checkout-7"
    assert wire["data"]["orderId"] == "o-1" and wire["data"]["totalAmount"] == "20.00"  # the wire form
    assert outbox.pending()[0] == 1


def test_a_rolled_back_transaction_leaves_nothing(outbox):
    conn = sqlite3.connect(outbox.table.path)
    outbox.add(conn, "stock-replenished", {"sku": "SKU-1", "quantity": 3})
    conn.rollback()
    conn.close()
    assert rows(outbox) == [] and outbox.pending() == (0, None)


@pytest.mark.parametrize("data, problem", [
    ({"sku": "SKU-1", "quantity": "many"}, "quantity"),
    ({"sku": "SKU-1", "quantity": 3, "warehouse": "W1"}, "unknown field 'warehouse'"),
    ({"sku": "SKU-1"}, "quantity"),
    ({"sku": "SKU-1", "quantity": 3, "quantityy": 1}, "did you mean"),
])
def test_add_validates_as_producer_publish_does_and_writes_nothing_invalid(outbox, data, problem):
    with sqlite3.connect(outbox.table.path) as conn:
        with pytest.raises(ContractError, match=problem):
            outbox.add(conn, "stock-replenished", data)
    assert rows(outbox) == []


def test_an_unknown_event_or_a_connection_to_another_engine_is_refused(outbox):
    with sqlite3.connect(outbox.table.path) as conn:
        with pytest.raises(ConfigError, match="unknown event"):
            outbox.add(conn, "no-such-event", {})
    with pytest.raises(ConfigError, match="pass a sqlite3 connection"):
        outbox.add(object(), "stock-replenished", {"sku": "SKU-1", "quantity": 1})


def test_a_connection_to_another_sqlite_database_is_refused_in_one_line_as_on_postgresql(outbox, tmp_path):
    # Given the application's own SQLite file, which neither holds nor ATTACHes the outbox
    with sqlite3.connect(tmp_path / "shop.sqlite3") as conn:
        # When an event is added through it, then the error names the file to use
        with pytest.raises(ConfigError, match=f"this connection's database has no outbox table: use a connection "
                                              f"to {outbox.table.path}"):
            outbox.add(conn, "stock-replenished", {"sku": "SKU-1", "quantity": 1})
        # and through one that ATTACHes the outbox, it is written
        conn.execute("ATTACH DATABASE ? AS events", (str(outbox.table.path),))
        outbox.add(conn, "stock-replenished", {"sku": "SKU-1", "quantity": 1})
    assert len(rows(outbox)) == 1


@pytest.mark.parametrize("count, age, healthy", [(0, None, True), (3, 10.0, True), (3, 400.0, False)])
def test_status_is_unhealthy_only_when_the_oldest_pending_row_is_older_than_the_threshold(count, age, healthy):
    line, problem = describe("SQLite x, table outbox", count, age, max_age=300.0)
    assert (problem is None) == healthy
    assert ("nothing pending" in line) == (count == 0)
    if not healthy:
        assert "6.7m old, more than 5.0m" in problem


def test_a_database_url_that_is_not_postgresql_is_refused_without_showing_it():
    with pytest.raises(ConfigError) as caught:
        connect_postgres("mysql://root:s3cret@db/shop")
    assert "not a PostgreSQL URL" in str(caught.value) and "s3cret" not in str(caught.value)


def test_a_long_namespace_still_gets_a_notify_channel_postgresql_takes():
    assert PostgresTable("postgresql://h/db", "shop").channel == "eda_outbox.shop"
    long = PostgresTable("postgresql://h/db", "n" * 100)
    assert len(long.channel.encode()) < 64 and long.channel != PostgresTable("postgresql://h/db", "n" * 99).channel


def test_the_outbox_lives_beside_the_workers_state_of_its_namespace(tmp_path):
    from eda.store import schema_name

    for namespace in ("shop", "n" * 100):  # past 63 bytes, PostgreSQL's limit, the store's schema is hashed
        assert PostgresTable("postgresql://h/db", namespace).schema == schema_name(namespace)
    outbox = Outbox(Settings(state_dir=tmp_path, namespace="shop"))
    assert outbox.table.path == tmp_path / "shop.outbox.sqlite3"


@pytest.fixture(scope="module")
def unit():
    return parse_unit(UNIT.read_text())


def test_the_relay_unit_runs_like_a_worker(unit):
    assert one(unit, "Service", "Type") == "notify" and one(unit, "Service", "NotifyAccess") == "main"
    assert Path(one(unit, "Service", "ExecStart").split()[0]).name == "eda"
    assert one(unit, "Service", "ExecStart").split()[1:] == ["outbox", "relay"]
    assert one(unit, "Service", "EnvironmentFile") == "/etc/eda/eda.env"
    assert one(unit, "Service", "KillSignal") == "SIGTERM" and one(unit, "Service", "Restart") == "on-failure"
    # the relay pings the watchdog at least once a second, and a batch waits for confirms at most 10 s
    assert seconds(one(unit, "Service", "WatchdogSec")) > 2 * 10
    assert one(unit, "Service", "ProtectSystem") == "strict" and one(unit, "Service", "NoNewPrivileges") == "yes"


def test_systemd_analyze_verifies_the_relay_unit(tmp_path):
    if shutil.which("systemd-analyze") is None:
        message = "systemd-analyze is not installed (apt-get install systemd)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    (tmp_path / UNIT.name).write_text(UNIT.read_text().replace("/usr/local/bin/eda", eda_command()[0]))
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / UNIT.name)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Unknown" not in result.stderr and "ignoring" not in result.stderr, result.stderr


def test_sqlite_sent_rows_are_deleted_after_the_retention_pending_ones_never(outbox):
    with sqlite3.connect(outbox.table.path) as conn:
        for sku in ("SKU-1", "SKU-2"):
            outbox.add(conn, "stock-replenished", {"sku": sku, "quantity": 1})
    conn = outbox.open()
    try:
        table = outbox.table
        first, second = [row[0] for row in conn.execute("SELECT position FROM outbox ORDER BY position")]
        table.mark_sent(conn, [first])
        assert table.prune(conn, retention=3600) == 0
        conn.execute("UPDATE outbox SET sent_at = sent_at - 7200 WHERE position = ?", (first,))
        assert table.prune(conn, retention=3600) == 1
        assert table.prune(conn, retention=0) == 0  # the pending row stays, however old
        assert [row[0] for row in conn.execute("SELECT position FROM outbox")] == [second]
    finally:
        conn.close()
