"""Failed events: transient failures retried on a schedule then dead-lettered with their reason,
permanent and contract failures dead-lettered at once, and the worker going on with the next event."""

import json
import socket
import time
import uuid
from datetime import datetime

import pytest

from eda.topology import Topology
from tests.support import handled, wait_until

pytestmark = pytest.mark.integration


def retrying(attempt=None):
    return lambda r: (str(r.get("message", "")).startswith("failed; retrying")
                      and (attempt is None or r.get("attempt") == attempt))


def dead_lettered(r):
    return str(r.get("message", "")).startswith("dead-lettered")


def attempts_of(worker, event_id) -> list[int]:
    """The attempts a worker logged as failed for one event, in order."""
    return [r["attempt"] for r in worker.records
            if r.get("event_id") == event_id and (retrying()(r) or dead_lettered(r))]


def test_a_failing_charge_is_retried_until_the_gateway_answers_again(eda, broker, gateway, namespace, make_order):
    # Given a payment worker whose gateway answers 503 for now (the breaker tolerating it)
    gateway.simulation.down = True
    worker = eda.worker("payment", EDA_PAYMENT_GATEWAY_URL=gateway.url, EDA_PAYMENT_BREAKER_FAIL_MAX=100,
                        EDA_RETRY_DELAYS="200ms,400ms,1s,1s")
    spy = broker.spy("payment.*")
    # When an order arrives, fails twice, and the gateway then answers again
    [order_id] = eda.publish("order-placed", make_order())
    worker.wait_for_log(retrying(attempt=2), what="the second failed attempt")
    gateway.simulation.down = False
    # Then a later attempt charges it, once, and the payment goes out in the order's correlation
    [paid] = spy.wait_for("payment.succeeded")
    assert paid["causationid"] == order_id and paid["correlationid"] == order_id
    assert gateway.simulation.charges == 1
    worker.wait_for_log(lambda r: handled("order.placed")(r) and r.get("event_id") == order_id)
    assert attempts_of(worker, order_id)[:2] == [1, 2]
    assert not any(dead_lettered(r) for r in worker.records)
    assert broker.depth(f"{namespace}.payment.dlq") == 0
    assert spy.of_type("payment.failed") == []


def test_retries_exhausted_dead_letter_the_event_with_every_reason(eda, broker, gateway, namespace, make_order):
    # Given a gateway that stays down and a schedule of three retries
    gateway.simulation.down = True
    worker = eda.worker("payment", EDA_PAYMENT_GATEWAY_URL=gateway.url, EDA_PAYMENT_BREAKER_FAIL_MAX=100,
                        EDA_RETRY_DELAYS="200ms,200ms,400ms")
    dlq = f"{namespace}.payment.dlq"
    # When an order is placed
    [order_id] = eda.publish("order-placed", make_order(), args=("--correlation-id", "corr-exhausted"))
    # Then it is tried four times and its copy lands in the payment DLQ, saying why
    [dead] = wait_until(lambda: broker.peek(dlq), message="the order in the DLQ")
    worker.wait_for_log(dead_lettered)
    assert attempts_of(worker, order_id) == [1, 2, 3, 4]
    headers = dead.headers
    assert headers["eda-retry-count"] == 3
    assert headers["eda-exception-type"] == "GatewayError"
    assert "503" in headers["eda-exception-message"]
    assert "GatewayError" in headers["eda-exception-stacktrace"]
    assert headers["eda-original-exchange"] == f"{namespace}.events"
    assert headers["eda-original-routing-key"] == "order.placed"
    assert headers["eda-original-queue"] == f"{namespace}.payment"
    assert headers["eda-worker"] == "payment"
    assert headers["eda-host"] == socket.gethostname()
    assert datetime.fromisoformat(headers["eda-failed-at"].replace("Z", "+00:00")).tzinfo is not None
    # and it is the same event: id, correlation and body kept
    assert dead.properties["message_id"] == order_id
    assert dead.properties["correlation_id"] == "corr-exhausted"
    assert dead.properties["content_type"] == "application/cloudevents+json"
    assert json.loads(dead.body)["id"] == order_id
    # Nothing is left waiting in a retry queue or the work queue
    for queue in (f"{namespace}.payment", f"{namespace}.payment.retry.200ms", f"{namespace}.payment.retry.400ms"):
        assert broker.depth(queue) == 0
    assert gateway.simulation.charges == 0


def test_a_permanent_error_skips_the_retries(eda, broker, gateway, namespace, make_order, monkeypatch):
    # Given a charged order, and a gateway that then declines every refund (a business answer, 402)
    worker = eda.worker("payment", EDA_PAYMENT_GATEWAY_URL=gateway.url)
    spy = broker.spy("payment.*")
    order = make_order()
    eda.publish("order-placed", order)
    spy.wait_for("payment.succeeded")
    monkeypatch.setattr(gateway.simulation, "_refund",
                        lambda body: (402, {"status": "declined", "reason": "refund window closed"}))
    # When the order is cancelled, so the payment worker must refund it
    [cancel_id] = eda.publish("order-cancelled", {"orderId": order["orderId"], "reason": "customer request"})
    # Then the refusal is permanent: dead-lettered on the first attempt, never retried
    [dead] = wait_until(lambda: broker.peek(f"{namespace}.payment.dlq"), message="the cancellation in the DLQ")
    assert dead.properties["message_id"] == cancel_id
    assert dead.headers["eda-exception-type"] == "PermanentError"
    assert "refund window closed" in dead.headers["eda-exception-message"]
    assert dead.headers["eda-retry-count"] == 0
    worker.wait_for_log(dead_lettered)
    assert attempts_of(worker, cancel_id) == [1]
    assert spy.of_type("payment.refunded") == []


def test_contract_failures_go_straight_to_the_dlq_and_the_worker_goes_on(eda, broker, namespace, make_order):
    # Given a payment worker
    worker = eda.worker("payment")
    spy = broker.spy("payment.*")
    dlq = f"{namespace}.payment.dlq"

    def cloud_event(type_, data):
        return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "other-shop", "type": type_,
                "datacontenttype": "application/json", "data": data}

    poison = {
        "not-json": b"\xff{ not json",
        "not-a-cloudevent": {"orderId": "o-1", "totalAmount": "10.00"},
        "data-failing-its-schema": cloud_event("order.placed", {"orderId": "o-2", "totalAmount": "ten"}),
        "a-type-it-does-not-handle": cloud_event("order.shipped", {"orderId": "o-3"}),
    }
    # When another client publishes poison messages on its routing key, then a valid order follows
    for message_id, body in poison.items():
        broker.publish("order.placed", body, message_id=message_id, content_type="application/cloudevents+json")
    [order_id] = eda.publish("order-placed", make_order())
    # Then each poison message is in the DLQ at once, never retried, saying what is wrong
    dead = wait_until(lambda: (lambda found: found if len(found) == len(poison) else None)(broker.peek(dlq)),
                      message="every poison message in the DLQ")
    assert {m.properties["message_id"] for m in dead} == set(poison)
    for m in dead:
        assert m.headers["eda-exception-type"] == "ContractError"
        assert m.headers["eda-retry-count"] == 0
        assert m.headers["eda-original-routing-key"] == "order.placed"
    reasons = {m.properties["message_id"]: m.headers["eda-exception-message"] for m in dead}
    assert "not UTF-8 JSON" in reasons["not-json"]
    assert "not a CloudEvent" in reasons["not-a-cloudevent"]
    assert "totalAmount" in reasons["data-failing-its-schema"]
    assert "order.shipped" in reasons["a-type-it-does-not-handle"]
    assert not any(retrying()(r) for r in worker.records)
    # and the valid order after them is paid by the same, still running worker
    [paid] = spy.wait_for("payment.succeeded")
    assert paid["causationid"] == order_id
    assert worker.proc.poll() is None


def test_a_dead_letter_does_not_expire_in_the_dlq_when_its_publisher_gave_it_an_expiration(eda, broker, namespace):
    # Given a payment worker
    eda.worker("payment")
    dlq = f"{namespace}.payment.dlq"
    # When another client publishes an invalid order that expires in 1.5 s if no one takes it
    broker.publish("order.placed", {"orderId": "o-1"}, message_id="short-lived", expiration="1500",
                   content_type="application/cloudevents+json")
    # Then it is dead-lettered, and still in the DLQ well after its expiration (RabbitMQ, too, drops the
    # property when it dead-letters): a dead letter is kept until someone deals with it
    wait_until(lambda: broker.depth(dlq) == 1, message="the invalid order in the DLQ")
    time.sleep(2.5)
    [dead] = broker.peek(dlq)
    assert dead.properties["message_id"] == "short-lived" and "expiration" not in dead.properties


def test_an_event_whose_dlq_is_gone_is_kept_until_the_dlq_is_back(eda, broker, namespace):
    # Given a payment worker whose DLQ was deleted under it
    worker = eda.worker("payment")
    dlq = f"{namespace}.payment.dlq"
    broker.channel.queue_delete(dlq)
    # When a poison message must be dead-lettered
    broker.publish("order.placed", b"not json", message_id="poison-1")
    # Then the move fails loudly instead of dropping the message
    worker.wait_for_log(lambda r: str(r.get("message", "")).startswith("could not move the event"))
    # and once the DLQ is declared again, the message reaches it
    Topology(namespace).dead_letter_queue("payment").declare(channel=broker.channel)
    [dead] = wait_until(lambda: broker.peek(dlq), timeout=20, message="the poison message in the DLQ")
    assert dead.properties["message_id"] == "poison-1"
    assert dead.headers["eda-exception-type"] == "ContractError"
    assert worker.proc.poll() is None
