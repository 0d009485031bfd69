"""What `eda dlq` makes of a dead-lettered message: the event, its reason, and the depth table."""

import json
from datetime import datetime

from amqp.basic_message import Message

from eda.dlq import as_json, dead_event, depth_table, describe, replay_headers

REASON = {"eda-exception-type": "GatewayError", "eda-exception-message": "gateway answered 503",
          "eda-exception-stacktrace": "Traceback ...", "eda-failed-at": "2026-01-02T03:04:05.678Z",
          "eda-retry-count": 3, "eda-worker": "payment", "eda-original-routing-key": "order.placed",
          "eda-failure-category": "transient"}


def test_a_dead_copy_by_eda_says_which_event_died_why_when_and_after_how_many_retries():
    message = Message(b'{"id": "e1"}', application_headers=REASON, message_id="e1", type="order.placed",
                      correlation_id="c1")
    dead = dead_event(message)
    assert {k: dead[k] for k in ("id", "type", "correlation_id", "exception_type", "exception_message",
                                 "category", "failed_at", "retry_count", "worker", "original_routing_key")} == {
        "id": "e1", "type": "order.placed", "correlation_id": "c1", "exception_type": "GatewayError",
        "exception_message": "gateway answered 503", "category": "transient",
        "failed_at": "2026-01-02T03:04:05.678Z", "retry_count": 3, "worker": "payment",
        "original_routing_key": "order.placed"}
    assert describe(dead) == ("e1  order.placed  failed at 2026-01-02T03:04:05.678Z after 3 retries\n"
                              "    [transient] GatewayError: gateway answered 503")
    assert json.loads(as_json(dead))["body"] == '{"id": "e1"}'
    assert json.loads(as_json(dead))["category"] == "transient"


def test_a_dead_copy_without_a_category_shows_its_reason_alone():
    # Dead-lettered by an eda that wrote no category yet
    headers = {k: v for k, v in REASON.items() if k != "eda-failure-category"}
    dead = dead_event(Message(b"{}", application_headers=headers, message_id="e3", type="order.placed"))
    assert dead["category"] is None
    assert describe(dead).splitlines()[1] == "    GatewayError: gateway answered 503"


def test_id_and_type_come_from_a_cloudevent_body_when_the_properties_lack_them():
    dead = dead_event(Message(json.dumps({"id": "e2", "type": "order.placed"}).encode()))
    assert (dead["id"], dead["type"], dead["retry_count"]) == ("e2", "order.placed", 0)


def test_a_copy_dead_lettered_by_the_broker_shows_its_x_death_reason_and_time():
    death = {"reason": "delivery_limit", "queue": "shop.payment", "count": 1, "time": datetime(2026, 1, 2, 3, 4, 5)}
    dead = dead_event(Message(b"\xff not json", application_headers={"x-death": [death]}))
    assert describe(dead) == ("-  -  failed at 2026-01-02T03:04:05Z after 0 retries\n"
                              "    dead-lettered by the broker: delivery_limit in shop.payment")
    assert dead["body"] == "\ufffd not json"


def test_a_replayed_copy_loses_the_failure_record_of_eda_and_of_the_broker_and_keeps_the_rest():
    headers = {**REASON, "eda-original-exchange": "shop.events", "eda-original-routing-key": "order.placed",
               "eda-original-queue": "shop.payment", "eda-host": "h", "x-death": [{"reason": "rejected"}],
               "x-first-death-reason": "rejected", "x-last-death-queue": "shop.payment", "x-delivery-count": 3,
               "traceparent": "00-abc-def-01"}
    # where it was first published stays: the worker checks the event's type against it
    assert replay_headers(headers) == {"traceparent": "00-abc-def-01", "eda-original-exchange": "shop.events",
                                       "eda-original-routing-key": "order.placed"}
    assert replay_headers(None) == {}


def test_a_copy_the_broker_dead_lettered_is_replayed_with_the_routing_key_of_its_first_death():
    headers = {"x-death": [{"reason": "delivery_limit", "exchange": "shop.events", "routing-keys": ["order.placed"],
                            "queue": "shop.payment"}]}
    assert replay_headers(headers) == {"eda-original-exchange": "shop.events",
                                       "eda-original-routing-key": "order.placed"}


def test_a_replayed_request_loses_its_deadline_so_that_a_worker_handles_it():
    # Given a request that expired in its queue (its requester gave up), dead-lettered by the broker
    headers = {"eda-expires-at": "2026-12-06T12:00:01.500Z", "x-death": [
        {"reason": "expired", "exchange": "shop.events", "routing-keys": ["quote.requested"], "queue": "shop.quotes"}]}
    # When it is replayed, whoever replays it wants it handled: it carries no deadline any more
    assert replay_headers(headers) == {"eda-original-exchange": "shop.events",
                                       "eda-original-routing-key": "quote.requested"}


def test_the_depth_table_aligns_columns_and_says_when_a_dlq_is_not_declared():
    assert depth_table([("inventory", "shop.inventory.dlq", None), ("payment", "shop.payment.dlq", 12)]) == [
        "WORKER     QUEUE               DEPTH",
        "inventory  shop.inventory.dlq  not declared",
        "payment    shop.payment.dlq    12",
    ]
