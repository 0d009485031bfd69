"""Hostile input: whatever bytes, properties and headers a message carries, the worker stays up, the
message is handled or dead-lettered with its reason, and the events beside it are handled normally.
An event whose CloudEvent type is not the routing key it came with is a contract failure."""

import uuid

import pytest

from tests.support import cloud_event, recursion_limit, reservation, wait_until

pytestmark = pytest.mark.integration

CLOUDEVENTS = "application/cloudevents+json"
DEEP = 3000  # levels of nested header tables: deeper than py-amqp's decoder recurses by default
DEEP_STACK = 50_000  # the recursion limit this test process needs to encode and read such headers


def nested_table(levels: int) -> dict:
    table = {"bottom": "here"}
    for _ in range(levels):
        table = {"t": table}
    return table


def valid(event_type: str, data: dict) -> tuple:
    """A valid event as another client publishes it: (routing key, body, headers, properties)."""
    body = cloud_event(event_type, data)
    return event_type, body, {}, {"message_id": body["id"], "type": event_type, "content_type": CLOUDEVENTS}


def poison(event_type: str, data: dict, headers=None, properties=None, **attributes) -> tuple:
    """An event with hostile attributes, headers or properties; its AMQP message_id is a marker to find it by."""
    body = cloud_event(event_type, data, **attributes)
    return event_type, body, headers or {}, {"message_id": f"poison-{uuid.uuid4()}", "type": event_type,
                                             "content_type": CLOUDEVENTS, **(properties or {})}


# Each: the hostile part of an otherwise valid event, and the reason its dead letter must give (None:
# any reason eda gives; the case may also be handled, where it is a valid event with noise beside it).
ENVELOPES = {
    "correlationid of 300 characters": ({"correlationid": "c" * 300}, "ContractError"),
    "correlationid a number": ({"correlationid": 12345}, "ContractError"),
    "correlationid an object": ({"correlationid": {"id": "corr-1", "nested": [1, 2]}}, "ContractError"),
    "id of 100 rockets (400 bytes), no correlationid": ({"id": "🚀" * 100}, "ContractError"),
}


# A short-string property that is not UTF-8: py-amqp's decoder refuses the frame, like the deep headers.
NOT_UTF8 = "correlation_id property not UTF-8"
UNDECODABLE = (f"headers nested {DEEP} tables deep", NOT_UTF8)


def shipping_poison(case: str) -> tuple:
    data = reservation()
    if case in ENVELOPES:
        return poison("inventory.reserved", data, **ENVELOPES[case][0])
    if case == "eda-retry-count the double 1e300":
        return poison("inventory.reserved", data, headers={"eda-retry-count": 1e300})
    if case == f"headers nested {DEEP} tables deep":
        return poison("inventory.reserved", data, headers={"deep": nested_table(DEEP)})
    if case == NOT_UTF8:
        return poison("inventory.reserved", data, properties={"correlation_id": b"\xff\xfe corr"})
    raise ValueError(case)


def publish(broker, messages) -> None:
    with recursion_limit(DEEP_STACK):  # py-amqp encodes header tables recursively
        broker.publish_all(messages)


def dead_letter_of(broker, worker: str, message_id: str, timeout=30.0):
    """The copy of ``message_id`` in ``worker``'s DLQ, once it is there."""
    return wait_until(lambda: find_dead_letter(broker, worker, message_id), timeout, interval=0.2,
                      message=f"{message_id} in the {worker} DLQ")


def find_dead_letter(broker, worker: str, message_id: str):
    return next((m for m in broker.dead_letters(worker) if m.properties.get("message_id") == message_id), None)


def caused(spy, event_type: str) -> list:
    return [e.get("causationid") for e in spy.of_type(event_type)]


def assert_outcome(broker, spy, worker_name: str, reaction: str, message, reason) -> None:
    """The hostile ``message`` is in the worker's DLQ with its reason (``reason`` names the exception
    type); with ``reason`` None any reason will do, and a handle (its reaction on the wire) too."""
    _, body, _, properties = message

    def outcome():
        if reason is None and body.get("id") in caused(spy, reaction):
            return "handled"
        return find_dead_letter(broker, worker_name, properties["message_id"])

    dead = wait_until(outcome, 60, interval=0.2, message=f"{properties['message_id']} handled or dead-lettered")
    if dead == "handled":
        return
    assert dead.headers.get("eda-exception-type"), dead.headers
    assert dead.headers.get("eda-exception-message") is not None, dead.headers
    if reason is not None:
        assert dead.headers["eda-exception-type"] == reason, dead.headers["eda-exception-message"]


@pytest.mark.parametrize("case", [*ENVELOPES, "eda-retry-count the double 1e300", *UNDECODABLE])
def test_a_hostile_message_neither_stops_the_shipping_worker_nor_the_events_beside_it(eda, broker, namespace, case):
    # Given a running shipping worker
    worker = eda.worker("shipping")
    spy = broker.spy("order.shipped")
    # When a hostile message arrives between two valid events
    before, hostile, after = valid("inventory.reserved", reservation()), shipping_poison(case), \
        valid("inventory.reserved", reservation())
    publish(broker, [before, hostile, after])
    # Then the same worker process ships both valid events
    spy.wait_for("order.shipped", count=2, timeout=60,
                 where=lambda e: e.get("causationid") in (before[1]["id"], after[1]["id"]))
    assert worker.proc.poll() is None, worker.output
    # and the hostile one is dead-lettered with its reason (or, being valid, shipped)
    reason = ENVELOPES[case][1] if case in ENVELOPES else None
    if case in UNDECODABLE:  # whatever reason eda gives, but eda dead-letters it
        dead = dead_letter_of(broker, "shipping", hostile[3]["message_id"], timeout=60)
        assert dead.headers.get("eda-exception-type"), dead.headers
    assert_outcome(broker, spy, "shipping", "order.shipped", hostile, reason)
    # and it is still running, its queue empty
    wait_until(lambda: broker.depth(f"{namespace}.shipping") == 0, message="the shipping queue empty")
    assert worker.proc.poll() is None, worker.output
    # and a valid event sent afterwards is handled by it too
    later = valid("inventory.reserved", reservation())
    publish(broker, [later])
    spy.wait_for("order.shipped", where=lambda e: e.get("causationid") == later[1]["id"], timeout=30)
    assert worker.proc.poll() is None, worker.output


@pytest.mark.parametrize("case", list(ENVELOPES)[:3])
def test_a_hostile_correlation_id_neither_stops_the_payment_worker_nor_the_orders_beside_it(eda, broker, make_order,
                                                                                             case):
    # Given a running payment worker (inline, its gateway simulated in process)
    worker = eda.worker("payment")
    spy = broker.spy("payment.*")
    # When an order with a hostile correlation id arrives between two valid orders
    before, after = valid("order.placed", make_order()), valid("order.placed", make_order())
    hostile = poison("order.placed", make_order(), **ENVELOPES[case][0])
    publish(broker, [before, hostile, after])
    # Then the same process charges both valid orders
    spy.wait_for("payment.succeeded", count=2, timeout=60,
                 where=lambda e: e.get("causationid") in (before[1]["id"], after[1]["id"]))
    assert worker.proc.poll() is None, worker.output
    # and dead-letters the hostile one as a contract failure, without charging it
    assert_outcome(broker, spy, "payment", "payment.succeeded", hostile, "ContractError")
    assert not [e for e in spy.events if e.get("data", {}).get("orderId") == hostile[1]["data"]["orderId"]]
    # and goes on charging orders
    later = valid("order.placed", make_order())
    publish(broker, [later])
    spy.wait_for("payment.succeeded", where=lambda e: e.get("causationid") == later[1]["id"], timeout=30)
    assert worker.proc.poll() is None, worker.output


@pytest.mark.parametrize("case", ["correlationid of 300 characters", "eda-retry-count the double 1e300",
                                  f"headers nested {DEEP} tables deep"])
def test_on_a_quorum_queue_a_hostile_message_takes_no_innocent_event_with_it(eda, broker, namespace, case):
    # Given a shipping worker on a quorum queue with a low delivery limit
    worker = eda.worker("shipping", EDA_QUEUE_TYPE="quorum", EDA_DELIVERY_LIMIT=3)
    spy = broker.spy("order.shipped")
    # When a hostile message arrives among innocent events, many of them in flight beside it
    innocent = [valid("inventory.reserved", reservation()) for _ in range(40)]
    hostile = shipping_poison(case)
    publish(broker, innocent[:20] + [hostile] + innocent[20:])
    # Then every innocent event is shipped by the same process
    ids = {m[1]["id"] for m in innocent}
    spy.wait_for("order.shipped", count=len(ids), timeout=90, where=lambda e: e.get("causationid") in ids)
    assert worker.proc.poll() is None, worker.output
    # the hostile one is handled or dead-lettered by eda with its reason
    reason = ENVELOPES[case][1] if case in ENVELOPES else None
    if case in UNDECODABLE:  # whatever reason eda gives, but eda dead-letters it
        dead = dead_letter_of(broker, "shipping", hostile[3]["message_id"], timeout=60)
        assert dead.headers.get("eda-exception-type"), dead.headers
    assert_outcome(broker, spy, "shipping", "order.shipped", hostile, reason)
    # and the broker dead-lettered nothing for its delivery limit
    wait_until(lambda: broker.depth(f"{namespace}.shipping") == 0, message="the shipping queue empty")
    dead_letters = broker.dead_letters("shipping")
    by_broker = [m.properties.get("message_id") for m in dead_letters
                 if any(d.get("reason") == "delivery_limit" for d in m.headers.get("x-death") or [])]
    assert by_broker == []
    assert {m.properties.get("message_id") for m in dead_letters} <= {hostile[3]["message_id"]}
    assert worker.proc.poll() is None, worker.output


# The event's type must match its routing key


def test_an_event_whose_type_is_not_its_routing_key_is_dead_lettered_and_refunds_nothing(eda, broker, make_order):
    # Given a payment worker that charged an order
    worker = eda.worker("payment")
    spy = broker.spy("payment.*")
    order = make_order()
    [placed] = eda.publish("order-placed", order)
    spy.wait_for("payment.succeeded", where=lambda e: e.get("causationid") == placed)
    # When a cancellation of it is published with the routing key and AMQP type of an order.placed
    forged = cloud_event("order.cancelled", {"orderId": order["orderId"], "reason": "forged"})
    broker.publish("order.placed", forged, message_id=forged["id"], type="order.placed", content_type=CLOUDEVENTS)
    # Then it is dead-lettered as a contract failure
    dead = dead_letter_of(broker, "payment", forged["id"])
    assert dead.headers["eda-exception-type"] == "ContractError", dead.headers
    # and the worker, still running, goes on with the next order without having refunded anything
    [next_order] = eda.publish("order-placed", make_order())
    spy.wait_for("payment.succeeded", where=lambda e: e.get("causationid") == next_order)
    assert spy.of_type("payment.refunded") == []
    assert worker.proc.poll() is None, worker.output
    # And a real cancellation, whose type is its routing key, is refunded
    [cancelled] = eda.publish("order-cancelled", {"orderId": order["orderId"], "reason": "changed mind"})
    [refund] = spy.wait_for("payment.refunded")
    assert refund["causationid"] == cancelled and refund["data"]["orderId"] == order["orderId"]


def test_a_type_a_worker_does_not_take_under_another_types_routing_key_is_refused_for_the_mismatch(eda, broker):
    # Given a payment worker, which does not take payment.failed
    eda.worker("payment")
    # When a payment.failed is published under order.placed's routing key (another client's mistake)
    wrong = cloud_event("payment.failed", {"orderId": "o-1", "reason": "declined"})
    broker.publish("order.placed", wrong, message_id=wrong["id"], content_type=CLOUDEVENTS)
    # Then its dead letter gives the mismatch as the reason, as a worker that takes payment.failed does
    dead = dead_letter_of(broker, "payment", wrong["id"])
    assert dead.headers["eda-exception-message"] == ("event type 'payment.failed' does not match the routing key "
                                                     "'order.placed' it was published with"), dead.headers


def test_an_order_sent_under_a_cancellations_routing_key_is_not_charged(eda, broker, make_order):
    # Given a payment worker
    worker = eda.worker("payment")
    spy = broker.spy("payment.*")
    # When an order.placed body comes with the routing key order.cancelled
    forged = cloud_event("order.placed", make_order())
    broker.publish("order.cancelled", forged, message_id=forged["id"], type="order.cancelled",
                   content_type=CLOUDEVENTS)
    # Then it is dead-lettered as a contract failure and charged nothing
    dead = dead_letter_of(broker, "payment", forged["id"])
    assert dead.headers["eda-exception-type"] == "ContractError", dead.headers
    [next_order] = eda.publish("order-placed", make_order())
    spy.wait_for("payment.succeeded", where=lambda e: e.get("causationid") == next_order)
    assert forged["id"] not in caused(spy, "payment.succeeded") + caused(spy, "payment.failed")
    assert worker.proc.poll() is None, worker.output


def test_a_retried_copy_is_checked_against_its_original_routing_key(eda, broker, namespace):
    # Given a shipping worker
    worker = eda.worker("shipping")
    spy = broker.spy("order.shipped")
    work_queue = f"{namespace}.shipping"
    # When copies come back through the default exchange as eda's retries do, one naming the routing key
    # it was first published with, one naming another
    retried, mismatched = cloud_event("inventory.reserved", reservation()), cloud_event("inventory.reserved",
                                                                                          reservation())
    for body, original_key in ((retried, "inventory.reserved"), (mismatched, "order.placed")):
        broker.publish(work_queue, body, exchange="", message_id=body["id"], type="inventory.reserved",
                       content_type=CLOUDEVENTS,
                       headers={"eda-original-routing-key": original_key, "eda-retry-count": 1,
                                "eda-original-exchange": f"{namespace}.events"})
    # Then the one whose type is its original routing key is shipped
    spy.wait_for("order.shipped", where=lambda e: e.get("causationid") == retried["id"])
    # and the other is dead-lettered as a contract failure, not shipped
    dead = dead_letter_of(broker, "shipping", mismatched["id"])
    assert dead.headers["eda-exception-type"] == "ContractError", dead.headers
    assert mismatched["id"] not in caused(spy, "order.shipped")
    assert worker.proc.poll() is None, worker.output


@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_an_event_with_invalid_data_from_another_client_is_named_by_its_id_in_the_log_and_the_dlq(eda, broker, mode):
    # Given a running shipping worker
    worker = eda.worker("shipping")
    # When another client publishes an envelope that is well formed but whose data breaks the contract,
    # without a message_id or type property (structured: all in the body; binary: the ce-* headers)
    body = cloud_event("inventory.reserved", {"orderId": 42})
    if mode == "structured":
        message = ("inventory.reserved", body, {}, {"content_type": CLOUDEVENTS})
    else:
        headers = {f"ce-{k}": v for k, v in body.items() if k not in ("data", "datacontenttype")}
        message = ("inventory.reserved", body["data"], headers, {"content_type": "application/json"})
    publish(broker, [message])
    # Then the worker's dead-letter line names the event by the id and type it carries
    line = worker.wait_for_log(lambda r: r.get("message") == "dead-lettered (contract)", timeout=30)
    assert (line["event_id"], line["event_type"]) == (body["id"], "inventory.reserved"), line
    # and eda dlq show names it the same way
    code, output = eda.run("dlq", "show", "shipping")
    assert code == 0 and f"{body['id']}  inventory.reserved" in output, output
