"""`eda publish`: validated, confirmed, and a clear one-line error for everything that goes wrong."""

import json
import os
import subprocess
import time

import pytest

from tests.support import eda_command, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def payment_queue(eda, broker, namespace):
    """The payment worker's queue declared (by `eda topology declare`) but no worker consuming it."""
    code, output = eda.run("topology", "declare")
    assert code == 0, output
    return f"{namespace}.payment"


def test_a_valid_event_is_published_with_the_wire_contract_properties(eda, broker, payment_queue, make_order):
    spy = broker.spy()
    order = make_order(amount=100)
    code, output = eda.run("publish", "order-placed", "--data", json.dumps(order), "--correlation-id", "corr-1")
    assert code == 0, output
    event_id = output.strip().splitlines()[-1]
    event = spy.wait_for("order.placed")[0]
    assert event["id"] == event_id
    assert event["specversion"] == "1.0" and event["source"] == "eda/cli"
    assert event["datacontenttype"] == "application/json" and event["time"].endswith("Z")
    assert event["correlationid"] == "corr-1"
    assert event["data"]["totalAmount"] == "100.00" and event["data"]["currency"] == "USD"
    props = spy.message_of(event_id).properties
    assert props["content_type"] == "application/cloudevents+json"
    assert props["delivery_mode"] == 2
    assert props["message_id"] == event_id and props["type"] == "order.placed"
    assert props["correlation_id"] == "corr-1" and props["app_id"] == "eda/cli"
    assert abs(props["timestamp"] - time.time()) < 600  # seconds since the epoch, as AMQP has it
    assert wait_until(lambda: broker.depth(payment_queue) == 1)


def test_a_file_of_events_prints_every_confirmed_id(eda, broker, payment_queue, make_order, tmp_path):
    path = tmp_path / "orders.jsonl"
    path.write_text("\n".join(json.dumps(make_order()) for _ in range(25)) + "\n")
    code, output = eda.run("publish", "order-placed", "--file", str(path))
    assert code == 0, output
    ids = output.split()
    assert len(ids) == 25 and len(set(ids)) == 25
    assert wait_until(lambda: broker.depth(payment_queue) == 25)


def test_a_reader_that_closes_the_ids_pipe_early_gets_each_event_published_once(eda, broker, payment_queue,
                                                                               make_order, tmp_path):
    # Given a file of 25 orders, and a reader of the ids that is gone before the first one (`| head -0`)
    path = tmp_path / "orders.jsonl"
    path.write_text("\n".join(json.dumps(make_order()) for _ in range(25)) + "\n")
    read_end, write_end = os.pipe()
    os.close(read_end)
    # When they are published
    done = subprocess.run([*eda_command(), "publish", "order-placed", "--file", str(path)], env=eda.env,
                          stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    os.close(write_end)
    # Then every order is published once (none sent again as if the broker were lost), exit 0, no traceback
    assert (done.returncode, done.stderr) == (0, "")
    assert wait_until(lambda: broker.depth(payment_queue) == 25)
    time.sleep(0.5)
    assert broker.depth(payment_queue) == 25


def test_one_invalid_line_publishes_nothing_from_the_file(eda, broker, payment_queue, make_order, tmp_path):
    bad = make_order()
    del bad["userId"]
    bad["items"][0]["quantity"] = 0
    path = tmp_path / "orders.jsonl"
    path.write_text("\n".join([json.dumps(make_order()), json.dumps(bad), "not json", json.dumps(make_order())]))
    code, output = eda.run("publish", "order-placed", "--file", str(path))
    assert code != 0
    assert "line 2" in output and "userId" in output and "items.0.quantity" in output
    assert "line 3: not JSON" in output
    assert "Traceback" not in output
    assert broker.depth(payment_queue) == 0


@pytest.mark.parametrize("args, message", [
    (["order-placed", "--data", "{nope"], "--data: not JSON"),
    (["order-placed", "--data", '{"orderId": "1"}'], "userId: Missing data for required field"),
    (["order-placed", "--data", '{"orderId": "1", "userId": "u", "totalAmount": "ten", "items": [{"sku": "A", '
      '"quantity": 1}]}'], "totalAmount: Not a valid amount"),
    (["order-placed", "--data", '{"orderId": "1", "userId": "u", "totalAmount": 1, "currency": "dollars", '
      '"items": [{"sku": "A", "quantity": 1}]}'], "currency: Must be a three-letter currency code"),
    (["no-such-event", "--data", "{}"], "unknown event 'no-such-event'"),
    (["order-placed"], "exactly one of --data JSON or --file PATH"),
])
def test_bad_input_is_one_clear_line_and_a_non_zero_exit(eda, broker, payment_queue, args, message):
    code, output = eda.run("publish", *args)
    assert code != 0
    assert message in output
    assert output.startswith("error: ") and len(output.strip().splitlines()) == 1
    assert broker.depth(payment_queue) == 0


def test_an_event_no_queue_takes_is_an_error_not_a_success(eda, make_order):
    # No worker queue is declared in this namespace: the broker returns the event.
    code, output = eda.run("publish", "order-placed", "--data", json.dumps(make_order()))
    assert code == 4
    assert "routed to no queue" in output and "eda topology declare" in output
    # and it names the workers that take it
    assert "start `eda worker order-saga` or `eda worker payment`" in output, output


def test_an_event_no_worker_of_the_app_takes_says_so_instead_of_suggesting_a_declare(eda):
    code, output = eda.run("publish", "inventory-depleted", "--data", json.dumps({"sku": "SKU-1", "remaining": 2}))
    assert code == 4 and len(output.strip().splitlines()) == 1, output
    assert "no worker of the app handles inventory.depleted (`eda events` shows what each worker takes)" in output
    assert "topology declare" not in output


def test_an_unreachable_broker_fails_fast_without_showing_the_password(eda, make_order):
    code, output = eda.run("publish", "order-placed", "--data", json.dumps(make_order()),
                           EDA_BROKER_URL="amqp://guest:s3cret-pw@127.0.0.1:1//", timeout=30)
    assert code == 3
    assert "cannot reach the broker at amqp://guest:***@127.0.0.1:1//" in output
    assert "s3cret-pw" not in output  # and it returned: eda.run fails the test if it hangs past its timeout


def test_the_broker_url_can_come_from_a_file(eda, broker, payment_queue, broker_url, make_order, tmp_path):
    secret = tmp_path / "broker-url"
    secret.write_text(broker_url + "\n")
    code, output = eda.run("publish", "order-placed", "--data", json.dumps(make_order()),
                           EDA_BROKER_URL="amqp://wrong:wrong@127.0.0.1:1//", EDA_BROKER_URL_FILE=str(secret))
    assert code == 0, output
    assert wait_until(lambda: broker.depth(payment_queue) == 1)


def test_an_events_exchange_declared_otherwise_is_a_one_line_error(eda, broker, namespace, make_order):
    # Given someone declared the events exchange as a fanout exchange
    broker.channel.exchange_declare(f"{namespace}.events", "fanout", durable=True, auto_delete=False)
    try:
        code, output = eda.run("publish", "order-placed", "--data", json.dumps(make_order()))
        assert code == 2
        assert output.startswith(f"error: exchange '{namespace}.events' exists with other properties")
        assert "Traceback" not in output
    finally:
        broker.channel.exchange_delete(f"{namespace}.events")


def test_a_misspelt_event_name_suggests_the_closest_known_one(eda):
    code, output = eda.run("publish", "order-placd", "--data", "{}")
    assert code == 2 and len(output.splitlines()) == 1, output
    assert output.startswith("error: unknown event 'order-placd' (did you mean 'order-placed'?); known events: "), output


def test_publishing_a_reply_says_it_goes_to_the_requester_not_to_a_queue(eda, app_queues):
    # Given a request whose reply no queue takes (the quotes worker's queue declared)
    app = {"EDA_APP": "tests.integration.quotes_app"}
    app_queues("quotes", "quotes-inline", "quotes-async")
    code, output = eda.run("topology", "declare", **app)
    assert code == 0, output
    # When the reply is published from the shell
    code, output = eda.run("publish", "quote-given", "--data", '{"requestNo": 1, "sku": "A", "price": "1.00"}', **app)
    # Then it is refused, saying it is a reply delivered to the requester by the worker that answers
    assert code == 4 and len(output.splitlines()) == 1, output
    assert output.endswith("routing key 'quote.given'); quote.given is the reply to quote.requested: the worker "
                           "that answers a request sends it to the requester alone (`eda request quote-requested "
                           "...` asks for one)"), output
    assert "topology declare" not in output
