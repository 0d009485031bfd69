"""Worker state in PostgreSQL: several instances of a worker, each its own "host" (its own
EDA_STATE_DIR), sharing one database; the database lost under a running worker; a wrong URL at start.

Each test has a fresh database (the ``database`` fixture) and a namespace of its own.
"""

import json
import signal
import uuid
from collections import defaultdict

import pytest

from tests import pg
from tests.pg_private import private_postgres  # noqa: F401 - a fixture (a cluster with passwords)
from tests.support import Accounting, handled, wait_until

pytestmark = pytest.mark.integration


def cloud_event(event_type: str, data: dict, event_id: str | None = None) -> dict:
    return {"specversion": "1.0", "id": event_id or str(uuid.uuid4()), "source": "test", "type": event_type,
            "datacontenttype": "application/json", "data": data}


def paid(order_id: str, sku: str, quantity: int = 1) -> dict:
    return {"orderId": order_id, "paymentId": f"pay-{order_id}", "amount": "10.00", "currency": "USD",
            "items": [{"sku": sku, "quantity": quantity}]}


def hosts(eda, tmp_path, database, worker, count, **env):
    """``count`` instances of ``worker``, each with its own state folder (its own host), one database."""
    return [eda.worker(worker, EDA_DATABASE_URL=database, EDA_STATE_DIR=tmp_path / f"host-{n}", **env)
            for n in range(count)]


def stock(database, namespace, sku) -> int | None:
    rows = pg.query(database, f'SELECT quantity FROM "{namespace}".stock WHERE sku = %s', (sku,))
    return rows[0][0] if rows else None


def decisions(spy) -> dict[str, set[str]]:
    """order id -> the decisions published for it (inventory.reserved, order.cancelled)."""
    found = defaultdict(set)
    for event_type in ("inventory.reserved", "order.cancelled"):
        for event in spy.of_type(event_type):
            found[event["data"]["orderId"]].add(event_type)
    return found


def test_three_inventory_instances_sell_each_unit_once(eda, broker, namespace, database, tmp_path):
    # Given three inventory instances on three "hosts" sharing one PostgreSQL, and 100 units of a SKU
    instances = hosts(eda, tmp_path, database, "inventory", 3, EDA_CONCURRENCY=4)
    spy = broker.spy()
    [replenished] = eda.publish("stock-replenished", {"sku": "SKU-P", "quantity": 100})
    wait_until(lambda: any(i.count(lambda r: handled("stock.replenished")(r) and r.get("event_id") == replenished)
                           for i in instances), timeout=60, message="the stock counted")
    assert stock(database, namespace, "SKU-P") == 100
    # When 300 paid single-unit orders arrive at once, 50 of them twice (a copy with the same event id)
    orders = [cloud_event("payment.succeeded", paid(f"ord-{n:03}", "SKU-P")) for n in range(300)]
    copies = orders + orders[::6]
    broker.publish_all(("payment.succeeded", body, {}, {"message_id": body["id"]}) for body in copies)
    # Then exactly 100 orders are reserved and 200 cancelled, each decided once, and the stock is 0
    wait_until(lambda: len(decisions(spy)) == 300, timeout=180, message="a decision for every order")
    found = decisions(spy)
    assert all(len(d) == 1 for d in found.values()), {o: d for o, d in found.items() if len(d) > 1}
    reserved = [o for o, d in found.items() if d == {"inventory.reserved"}]
    assert len(reserved) == 100
    assert stock(database, namespace, "SKU-P") == 0
    rows = dict(pg.query(database, f'SELECT status, count(*) FROM "{namespace}".reservations GROUP BY status'))
    assert rows == {"reserved": 100, "cancelled": 200}
    # every copy was answered (the same decision again), nothing dead-lettered, every instance took a share
    wait_until(lambda: len(spy.of_type("inventory.reserved")) + len(spy.of_type("order.cancelled")) == len(copies),
               timeout=60, message="an answer for every copy")
    assert broker.depth(f"{namespace}.inventory.dlq") == 0
    shares = [i.count(handled("payment.succeeded")) for i in instances]
    assert sum(shares) == len(copies) and all(shares), shares


def test_three_payment_instances_one_killed_charge_every_order_once(eda, broker, namespace, database, tmp_path,
                                                                    gateway, make_order):
    # Given three payment instances sharing one PostgreSQL, and a gateway taking 50 ms a charge
    gateway.simulation.latency = 0.05
    instances = hosts(eda, tmp_path, database, "payment", 3, EDA_PAYMENT_GATEWAY_URL=gateway.url,
                      EDA_CONCURRENCY=4)
    spy = broker.spy("payment.*")
    # 500 orders, 50 of them twice (copies with the same event id, which may be handled at the same
    # moment by two instances)
    orders = [cloud_event("order.placed", make_order()) for _ in range(500)]
    order_ids = [o["id"] for o in orders]
    broker.publish_all(("order.placed", o, {}, {"message_id": o["id"]}) for o in orders + orders[::10])
    # When one instance is killed with SIGKILL in the middle of the batch
    wait_until(lambda: gateway.simulation.charges >= 100, timeout=120, message="100 orders charged")
    instances[0].proc.kill()
    assert instances[0].wait() == -signal.SIGKILL
    assert len(spy.of_type("payment.succeeded")) < 500, "the batch was over before the kill"
    # Then every order gets its payment outcome, and the gateway charged each exactly once
    Accounting(order_ids, spy=spy, broker=broker, dlqs=[f"{namespace}.payment.dlq"]).wait_all_accounted(240)
    paid_events = spy.of_type("payment.succeeded")
    assert {e["causationid"] for e in paid_events} == set(order_ids)
    payment_ids = defaultdict(set)
    for e in paid_events:  # a redelivered order re-publishes the recorded payment: one payment id per order
        payment_ids[e["data"]["orderId"]].add(e["data"]["paymentId"])
    assert len(payment_ids) == 500 and all(len(p) == 1 for p in payment_ids.values())
    assert gateway.simulation.charges == 500
    assert pg.query(database, f'SELECT count(*) FROM "{namespace}".charges') == [(500,)]
    assert broker.depth(f"{namespace}.payment.dlq") == 0
    assert all(i.proc.poll() is None for i in instances[1:])


def test_connections_killed_under_a_running_worker_lose_nothing(eda, broker, namespace, database, tmp_path):
    # Given an inventory worker on PostgreSQL with plenty of stock
    worker = eda.worker("inventory", EDA_DATABASE_URL=database, EDA_CONCURRENCY=4)
    spy = broker.spy()
    [replenished] = eda.publish("stock-replenished", {"sku": "SKU-T", "quantity": 1000})
    worker.wait_for_log(lambda r: handled("stock.replenished")(r) and r.get("event_id") == replenished, timeout=60)
    # When its database connections are killed (pg_terminate_backend) again and again while orders flow
    orders = [cloud_event("payment.succeeded", paid(f"ord-t{n:03}", "SKU-T")) for n in range(200)]
    killed = 0
    for batch in range(4):
        broker.publish_all(("payment.succeeded", b, {}, {"message_id": b["id"]}) for b in orders[batch * 50:][:50])
        killed += pg.terminate_connections(database.rsplit("/", 1)[1])
    assert killed >= 4  # the pool had connections each time: it replaced the killed ones
    # Then every order is reserved once, the stock is right, nothing is dead-lettered
    wait_until(lambda: len(decisions(spy)) == 200, timeout=120, message="a decision for every order")
    assert set().union(*decisions(spy).values()) == {"inventory.reserved"}
    assert stock(database, namespace, "SKU-T") == 800
    assert broker.depth(f"{namespace}.inventory.dlq") == 0
    # and the worker kept its broker connection: it is still consuming, with no reconnection
    assert worker.proc.poll() is None
    assert not any("broker connection lost" in str(r.get("message", "")) for r in worker.records)
    # and it recovers: an order after the last kill is reserved too
    last = cloud_event("payment.succeeded", paid("ord-after", "SKU-T"))
    broker.publish("payment.succeeded", last, message_id=last["id"])
    spy.wait_for("inventory.reserved", where=lambda e: e["data"]["orderId"] == "ord-after", timeout=60)
    # (the killed connections did fail handlers: as transient failures, retried)
    retried = [r for r in worker.records if r.get("message", "").startswith("failed; retrying")]
    assert retried and all(r["error"].startswith("StoreUnavailable: the state database") for r in retried)


def test_the_processed_event_record_is_shared_by_instances(eda, broker, database, tmp_path):
    # Given two shipping instances (the runtime keeps shipping's record of processed events) on one database
    first, second = hosts(eda, tmp_path, database, "shipping", 2)
    spy = broker.spy("order.shipped")
    body = cloud_event("inventory.reserved", {"orderId": "ord-s", "items": [{"sku": "SKU-S", "quantity": 1}]})
    broker.publish("inventory.reserved", body, message_id=body["id"])
    spy.wait_for("order.shipped")
    # When one instance stops and the same event arrives again
    shipped_by = first if first.count(handled("inventory.reserved")) else second
    other = second if shipped_by is first else first
    shipped_by.send(signal.SIGTERM)
    assert shipped_by.wait() == 0
    broker.publish("inventory.reserved", body, message_id=body["id"])
    # Then the other instance recognises it from the shared record and does not ship it again
    other.wait_for_log(lambda r: str(r.get("message", "")).startswith("already processed")
                       and r.get("event_id") == body["id"], timeout=60)
    assert len(spy.of_type("order.shipped")) == 1


@pytest.mark.parametrize("url, says", [
    ("postgresql://eda:s3cret@127.0.0.1:5432/eda_no_such_database", "does not exist"),
    ("mysql://eda:s3cret@127.0.0.1/shop", "not a postgresql:// URL"),
    ("postgresql://eda:s3cret@127.0.0.1:notaport/shop", "invalid integer value \"notaport\""),
])
def test_a_wrong_database_url_is_one_line_and_exit_2(eda, url, says):
    code, output = eda.run("worker", "inventory", EDA_DATABASE_URL=url)
    assert code == 2, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], output
    assert "s3cret" not in output


def test_a_database_that_never_answers_is_waited_for_the_reconnect_window_then_exit_1(eda):
    # Given a database URL where nothing listens, when inventory starts with a reconnect window of 2 s
    code, output = eda.run("worker", "inventory", EDA_DATABASE_URL="postgresql://eda:s3cret@127.0.0.1:1/postgres",
                           EDA_RECONNECT_WINDOW=2)
    # Then it tried again meanwhile, and then stops with one error line and exit 1 (its supervisor restarts it)
    assert code == 1, output
    last = output.strip().splitlines()[-1]
    assert last.startswith("error: worker 'inventory' could not start: setup raised StoreUnavailable: cannot open "
                           "the state database 127.0.0.1:1/postgres"), output
    assert "trying again in" in output and "Traceback" not in output and "s3cret" not in output


def test_status_shows_the_database_without_its_password(eda, env, database):
    url = database.replace("postgresql://postgres@", "postgresql://postgres:s3cret@")
    eda.worker("shipping", EDA_DATABASE_URL=url)
    code, output = eda.run("status", "shipping", "--json", EDA_DATABASE_URL=url)
    assert code == 0, output
    state = json.loads(output)["state"]
    assert state == {"backend": "postgresql", "location": f"127.0.0.1:5432/{database.rsplit('/', 1)[1]}",
                     "schema": env["EDA_NAMESPACE"]}
    code, output = eda.run("status", "shipping", EDA_DATABASE_URL=url)
    assert output.splitlines()[-1] == f"state: postgresql {state['location']}, schema {state['schema']}"
    assert "s3cret" not in output


def test_a_database_outage_fails_events_as_transient_and_the_worker_recovers(eda, broker, namespace, database):
    # Given inventory and shipping (whose processed-event record the runtime reads on its I/O thread)
    # with their database reached through a relay the test can cut, and stock
    outage = pg.Outage()
    worker = eda.worker("inventory", "shipping", EDA_DATABASE_URL=outage.url(database))
    spy = broker.spy()
    [replenished] = eda.publish("stock-replenished", {"sku": "SKU-O", "quantity": 10})
    worker.wait_for_log(lambda r: handled("stock.replenished")(r) and r.get("event_id") == replenished, timeout=60)
    # When the database goes away and orders arrive
    outage.down()
    during = [cloud_event("payment.succeeded", paid(f"ord-o{n}", "SKU-O")) for n in range(3)]
    broker.publish_all(("payment.succeeded", b, {}, {"message_id": b["id"]}) for b in during)
    reserved = cloud_event("inventory.reserved", {"orderId": "ord-o-x", "items": [{"sku": "SKU-O", "quantity": 1}]})
    broker.publish("inventory.reserved", reserved, message_id=reserved["id"])
    # Then each is retried (EDA_RETRY_DELAYS=200ms,400ms) and dead-lettered with the reason; nothing is lost
    wait_until(lambda: broker.depth(f"{namespace}.inventory.dlq") == 3, timeout=90, message="3 dead letters")
    wait_until(lambda: broker.depth(f"{namespace}.shipping.dlq") == 1, timeout=90, message="shipping's dead letter")
    letters = broker.dead_letters("inventory") + broker.dead_letters("shipping")
    assert all(str(l.headers["eda-exception-type"]).endswith("StoreUnavailable") for l in letters), letters
    assert all(l.headers["eda-retry-count"] == 2 for l in letters)
    # and the worker kept its broker connection
    assert worker.proc.poll() is None
    assert not any("broker connection lost" in str(r.get("message", "")) for r in worker.records)
    # When the database is back, orders are reserved again, and the stock was never touched meanwhile
    outage.up()
    after = cloud_event("payment.succeeded", paid("ord-o-after", "SKU-O"))
    broker.publish("payment.succeeded", after, message_id=after["id"])
    spy.wait_for("order.shipped", where=lambda e: e["data"]["orderId"] == "ord-o-after", timeout=60)
    assert stock(database, namespace, "SKU-O") == 9
    outage.down()


def test_a_wrong_database_password_is_one_line_and_exit_2(eda, private_postgres, tmp_path):
    # Given a PostgreSQL that checks passwords (a private cluster: the shared one trusts any)
    wrong = private_postgres.url(password="wrong-password")
    secret = tmp_path / "database-url"
    secret.write_text(wrong + "\n")
    # When a worker starts with a wrong password, in the variable or in a secret file
    for env in ({"EDA_DATABASE_URL": wrong}, {"EDA_DATABASE_URL_FILE": secret}):
        code, output = eda.run("worker", "inventory", **env)
        # Then it exits 2 with one line saying the password was refused, never quoting it
        assert code == 2, output
        lines = output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), output
        assert 'password authentication failed for user "postgres"' in lines[0], output
        assert f"127.0.0.1:{private_postgres.port}/postgres" in lines[0], output
        assert "wrong-password" not in output
    # and with the right password the same worker starts and its state is in that cluster
    right = private_postgres.url()
    worker = eda.worker("inventory", EDA_DATABASE_URL=right)
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0
    assert pg.query(right, "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s "
                           "AND table_name = 'processed'", (eda.env["EDA_NAMESPACE"],)) == [(1,)]
    assert "right-password" not in worker.output
