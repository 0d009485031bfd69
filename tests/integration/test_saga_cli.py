"""`eda saga list` and `eda saga show`: a saga's instances and their state as a user reads them, from the
store its worker keeps (SQLite here, filled by the shop's workers on a TestBus; PostgreSQL in
tests/integration/test_sagas.py), with their exit codes and one-line errors."""

import json

import pytest

from eda.settings import Settings
from eda.testing import TestBus
from eda_shop.workers.inventory import Inventory
from eda_shop.workers.order_saga import OrderSaga
from eda_shop.workers.payment import Payment
from eda_shop.workers.shipping import Shipping

pytestmark = pytest.mark.integration


@pytest.fixture
def state(env, namespace):
    """Three orders through the shop: o-0 shipped, o-1 refunded (out of stock), o-2 still waiting for its
    payment (payment not running), in the state folder `eda` reads."""
    settings = Settings(state_dir=env["EDA_STATE_DIR"], namespace=namespace)
    with TestBus(Payment, Inventory, Shipping, OrderSaga, settings=settings) as bus:
        bus.publish("stock.replenished", {"sku": "W", "quantity": 1})
        for i in range(2):
            bus.publish("order.placed", order(f"o-{i}"), correlation_id=f"o-{i}")
    with TestBus(OrderSaga, settings=settings) as bus:
        bus.publish("order.placed", order("o-2"), correlation_id="o-2")
    return settings


def order(order_id):
    return {"order_id": order_id, "user_id": "u-1", "total_amount": "5.00", "items": [{"sku": "W", "quantity": 1}]}


def lines(output):
    return [line for line in output.splitlines() if line.strip()]


def test_list_shows_the_live_instances_and_with_completed_the_finished_ones(eda, state):
    code, output = eda.run("saga", "list", "order-saga")
    assert code == 0, output
    header, *rows = lines(output)
    assert header.split()[:4] == ["KEY", "VERSION", "STARTED", "(UTC)"] and header.endswith("STATE")
    assert [row.split()[0] for row in rows] == ["o-2"]
    assert rows[0].split()[1] == "1" and '{"status": "placed"' in rows[0]  # the saga's first field leads
    code, output = eda.run("saga", "list", "order-saga", "--completed")
    assert code == 0, output
    header, *rows = lines(output)
    assert "COMPLETED (UTC)" in header and [row.split()[0] for row in rows] == ["o-0", "o-1", "o-2"]
    assert rows[2].split()[4] == "-"  # o-2 lives


def test_list_as_json_gives_each_instance_its_state_and_times(eda, state):
    code, output = eda.run("saga", "list", "order-saga", "--completed", "--json", "--limit", "2")
    assert code == 0, output
    shown = [json.loads(line) for line in lines(output)]
    assert [(s["key"], s["state"]["status"], s["version"]) for s in shown] == [("o-0", "shipped", 4),
                                                                             ("o-1", "refunded", 4)]
    assert all(s["saga"] == "order-saga" and s["completed_at"].endswith("Z") for s in shown)


def test_show_prints_the_state_and_the_events_applied_with_their_reactions(eda, state):
    code, output = eda.run("saga", "show", "order-saga", "o-1")
    assert code == 0, output
    first, second, *rest = lines(output)
    assert first.startswith("saga order-saga, instance o-1: completed at ")
    assert second.startswith("version 4, started ")
    state_text = "\n".join(rest[:rest.index(next(line for line in rest if line.startswith("events applied")))])
    assert json.loads(state_text)["status"] == "refunded"
    applied = rest[-4:]
    assert [line.split()[1] for line in applied] == ["order.placed", "payment.succeeded", "order.cancelled",
                                                     "payment.refunded"]
    assert "-> order.payment-expired (scheduled, due " in applied[0]
    code, output = eda.run("saga", "show", "order-saga", "o-1", "--json")
    shown = json.loads(output)
    assert shown["state"]["cancel_reason"] == "out_of_stock" and len(shown["applied"]) == 4
    [timeout] = shown["applied"][0]["reactions"]
    assert timeout["type"] == "order.payment-expired" and timeout["due"].endswith("Z")


def test_an_unknown_instance_exits_1_and_a_worker_that_is_no_saga_or_unknown_exits_2(eda, state):
    code, output = eda.run("saga", "show", "order-saga", "o-9")
    assert code == 1 and lines(output) == [
        f"error: saga order-saga has no instance 'o-9' (live, or completed within its retention) in "
        f"{state.state_dir}/{state.namespace}.order-saga.sqlite3"]
    code, output = eda.run("saga", "list", "payment")
    assert code == 2 and lines(output) == ["error: worker 'payment' is not a saga (sagas: order-saga)"]
    code, output = eda.run("saga", "list", "nobody")
    assert code == 2 and lines(output)[0].startswith("error: unknown worker 'nobody'; known workers: ")
    code, output = eda.run("saga", "show", "order-saga")
    assert code == 2 and "Missing argument 'KEY'" in output


def test_a_saga_that_never_ran_here_has_no_instances_and_no_file_is_made(eda, env, namespace, tmp_path):
    code, output = eda.run("saga", "list", "order-saga", EDA_STATE_DIR=tmp_path / "empty")
    assert code == 0 and lines(output) == [f"no live instances of saga order-saga in "
                                           f"{tmp_path}/empty/{namespace}.order-saga.sqlite3"]
    assert not (tmp_path / "empty").exists()
