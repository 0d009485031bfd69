"""`eda tail --correlation-id`: one order followed live on the real broker, as a tree by causation."""

import json
import re

import pytest

from tests.support import wait_until

pytestmark = pytest.mark.integration

LINE = re.compile(r"^(?P<branch>(?:   )*(?:└─ )?)(?P<time>\S+) (?P<type>\S+) (?P<by>by|from) (?P<who>\S+) id=(?P<id>\S+)$")


def start_tail(eda, *args):
    proc = eda.start("tail", *args, "--timeout", "60")
    wait_until(lambda: any(line.startswith("tailing ") for line in proc.lines), timeout=30, message="tail ready")
    return proc


def tree_lines(proc) -> list[str]:
    return [line for line in proc.lines if not line.startswith(("tailing ", "{"))]


def test_tail_follows_one_order_as_a_tree_of_its_events_with_their_workers(eda, make_order):
    # Given the three workers, stock, and `eda tail` following one correlation id
    eda.worker("payment", "inventory", "shipping")
    eda.publish("stock-replenished", {"sku": "SKU-1", "quantity": 10})
    tail = start_tail(eda, "--correlation-id", "corr-followed", "--count", "4")
    # When that order and another one are placed
    eda.publish("order-placed", make_order(), args=("--correlation-id", "corr-other"))
    order_id, = eda.publish("order-placed", make_order(), args=("--correlation-id", "corr-followed"))
    # Then the tail prints the order's four events and nothing of the other flow, each under its cause
    assert tail.wait(60) == 0, tail.output
    lines = tree_lines(tail)
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    assert [(m["type"], m["by"], m["who"], m["branch"]) for m in parsed] == [
        ("order.placed", "from", "cli", ""),
        ("payment.succeeded", "by", "payment", "└─ "),
        ("inventory.reserved", "by", "inventory", "   └─ "),
        ("order.shipped", "by", "shipping", "      └─ "),
    ]
    assert parsed[0]["id"] == order_id
    # and its first line said which flow it follows
    assert [line for line in tail.lines if line.startswith("tailing ")][0].endswith(
        "with pattern '#', the flow of correlation id 'corr-followed' and its dead letters (Ctrl-C to stop)")


def test_tail_shows_a_dead_letter_under_the_event_with_its_worker_and_reason(eda, broker):
    # Given payment and a tail following one correlation id
    eda.worker("payment")
    tail = start_tail(eda, "--correlation-id", "corr-broken", "--count", "2")
    # When another client publishes an order that breaks its contract in that flow
    broker.publish("order.placed", {"specversion": "1.0", "id": "broken-1", "source": "legacy/app",
                                    "type": "order.placed", "correlationid": "corr-broken",
                                    "data": {"orderId": "o-1"}},
                   content_type="application/cloudevents+json", message_id="broken-1")
    # Then the tail shows the event, and under it that payment dead-lettered it and why
    assert tail.wait(60) == 0, tail.output
    event, dead = tree_lines(tail)
    assert LINE.match(event)["id"] == "broken-1"
    assert dead.startswith("└─ ✗ dead-lettered by payment: ContractError: ") and "items" in dead, dead


def test_tail_json_prints_the_flow_s_events_only(eda, make_order):
    eda.worker("payment")
    tail = start_tail(eda, "--correlation-id", "corr-json", "--count", "2", "--json")
    eda.publish("order-placed", make_order(), args=("--correlation-id", "corr-other"))
    eda.publish("order-placed", make_order(), args=("--correlation-id", "corr-json"))
    assert tail.wait(60) == 0, tail.output
    events = [json.loads(line) for line in tail.lines if line.startswith("{")]
    assert [e["type"] for e in events] == ["order.placed", "payment.succeeded"]
    assert {e["correlationid"] for e in events} == {"corr-json"}
