"""How a failed event is classified, when it is retried, and what its retried or dead-lettered copy says."""

import socket

import pybreaker
import pytest

from eda.errors import ContractError, EdaError, PermanentError
from eda.runtime import failures


class GatewayError(EdaError):
    """A service's own technical failure, as the shop's payment gateway client raises."""

DELIVERY = {"exchange": "shop.events", "routing_key": "order.placed"}
RETRIED = {"exchange": "", "routing_key": "shop.payment"}  # how a copy comes back from a retry queue


def raised(error):
    try:
        raise error
    except Exception as exc:
        return exc


@pytest.mark.parametrize("error, kind", [
    (ContractError("data invalid"), failures.CONTRACT),
    (PermanentError("refund refused"), failures.PERMANENT),
    (pybreaker.CircuitBreakerError("open"), failures.CIRCUIT_OPEN),
    (GatewayError("503"), failures.TRANSIENT),
    (KeyError("orderId"), failures.TRANSIENT),
])
def test_each_error_falls_in_one_failure_class(error, kind):
    assert failures.classify(error) == kind


@pytest.mark.parametrize("headers, count", [
    (None, 0), ({}, 0), ({"eda-retry-count": 2}, 2), ({"eda-retry-count": "3"}, 3),
    ({"eda-retry-count": "many"}, 0), ({"eda-retry-count": -4}, 0),
    ({"x-death": [{"count": 7}]}, 0),  # the broker's own counting is not eda's
])
def test_the_attempt_count_is_read_from_edas_own_header_only(headers, count):
    assert failures.retry_count(headers) == count


def test_a_transient_failure_follows_the_schedule_then_goes_to_the_dlq():
    delays = (200, 200, 400)
    assert [failures.next_delay(failures.TRANSIENT, n, delays) for n in range(5)] == [200, 200, 400, None, None]


@pytest.mark.parametrize("kind", [failures.CONTRACT, failures.PERMANENT])
def test_contract_and_permanent_failures_are_never_retried(kind):
    assert failures.next_delay(kind, 0, (200, 400)) is None


def test_no_delays_means_no_retries():
    assert failures.next_delay(failures.TRANSIENT, 0, ()) is None


def test_a_retried_copy_counts_the_attempt_and_remembers_where_it_was_first_published():
    # Given an event published to the events exchange, failed once
    first = failures.retry_headers({"trace": "t-1"}, DELIVERY, attempts=0)
    assert first == {"trace": "t-1", "eda-retry-count": 1, "eda-original-exchange": "shop.events",
                     "eda-original-routing-key": "order.placed"}
    # When it comes back through the retry queue (default exchange, queue name as key) and fails again
    second = failures.retry_headers(first, RETRIED, attempts=failures.retry_count(first))
    # Then the count goes on and the origin is still the first publish, not the retry route
    assert second["eda-retry-count"] == 2
    assert second["eda-original-exchange"] == "shop.events"
    assert second["eda-original-routing-key"] == "order.placed"


def test_a_dead_lettered_copy_says_what_failed_where_and_when():
    error = raised(GatewayError("charge of order o-1: gateway answered 503"))
    headers = failures.retry_headers({"trace": "t-1"}, DELIVERY, attempts=2)
    dead = failures.dead_letter_headers(headers, RETRIED, error, worker="payment", queue="shop.payment",
                                        attempts=3)
    assert dead["trace"] == "t-1"
    assert dead["eda-exception-type"] == "GatewayError"
    assert dead["eda-exception-message"] == "charge of order o-1: gateway answered 503"
    assert "Traceback" in dead["eda-exception-stacktrace"] and "GatewayError" in dead["eda-exception-stacktrace"]
    assert dead["eda-original-exchange"] == "shop.events"
    assert dead["eda-original-routing-key"] == "order.placed"
    assert dead["eda-original-queue"] == "shop.payment"
    assert dead["eda-retry-count"] == 3
    assert dead["eda-worker"] == "payment"
    assert dead["eda-host"] == socket.gethostname()
    assert dead["eda-failed-at"].endswith("Z") and "T" in dead["eda-failed-at"]


def test_a_long_stacktrace_and_message_are_truncated():
    error = raised(ValueError("x" * 5000))
    dead = failures.dead_letter_headers({}, DELIVERY, error, worker="w", queue="q", attempts=0)
    assert len(dead["eda-exception-message"]) <= 1000
    assert len(dead["eda-exception-stacktrace"]) <= failures.STACKTRACE_LIMIT
    # The end of a traceback names the error: that is the part kept
    assert dead["eda-exception-stacktrace"].rstrip().endswith("x")


def test_an_error_never_raised_has_no_stacktrace():
    dead = failures.dead_letter_headers({}, DELIVERY, ContractError("body is not JSON"), worker="w", queue="q",
                                        attempts=0)
    assert dead["eda-exception-stacktrace"] == ""
    assert dead["eda-exception-type"] == "ContractError"


def test_a_replayed_copy_loses_the_failure_record_and_the_attempt_count():
    dead = failures.dead_letter_headers({"trace": "t-1"}, DELIVERY, raised(KeyError("k")), worker="w", queue="q",
                                        attempts=3)
    assert failures.cleaned_headers(dead) == {"trace": "t-1", "eda-original-exchange": "shop.events",
                                              "eda-original-routing-key": "order.placed"}


def test_an_event_given_back_keeps_its_headers_and_origin_but_not_the_old_copys_delivery_count():
    headers = {"eda-retry-count": 1, "x-delivery-count": 4, "trace": "t-1"}
    assert failures.given_back_headers(headers, DELIVERY) == {
        "eda-retry-count": 1, "trace": "t-1", "eda-original-exchange": "shop.events",
        "eda-original-routing-key": "order.placed"}


@pytest.mark.parametrize("value, count", [
    (1e300, 0), (float("inf"), 0), (float("nan"), 0), (True, 0), (2**70, failures.MAX_RETRY_COUNT),
    (b"3", 0), ({"a": 1}, 0), ([1], 0), ("99999999999", 0), (None, 0), (3, 3),
])
def test_a_hostile_attempt_count_counts_as_0_or_as_the_end_of_any_schedule_and_never_raises(value, count):
    assert failures.retry_count({"eda-retry-count": value}) == count
    # and the dead-lettered copy's headers can be written again
    dead = failures.dead_letter_headers({"eda-retry-count": value}, DELIVERY, ValueError("x"), worker="w",
                                        queue="q", attempts=failures.retry_count({"eda-retry-count": value}))
    assert failures.encodable_headers(dead) is not None


def test_an_event_from_the_events_exchange_is_routed_as_the_brokers_routing_key_whatever_its_headers_say():
    forged = {"eda-original-routing-key": "order.cancelled"}
    assert failures.routed_as(forged, DELIVERY) == "order.placed"
    assert failures.origin(forged, DELIVERY) == ("shop.events", "order.placed")


def test_a_copy_moved_through_the_default_exchange_is_routed_as_its_original_routing_key():
    assert failures.routed_as({"eda-original-routing-key": "order.placed"}, RETRIED) == "order.placed"
    assert failures.routed_as({}, RETRIED) is None


def test_headers_that_cannot_be_encoded_again_are_replaced_by_a_note_and_edas_own_are_kept():
    from decimal import Decimal

    from amqp.serialization import dumps

    deep = {}
    for _ in range(5000):
        deep = {"d": deep}
    headers = {"wide": Decimal("1" * 40), "deep": deep, "fine": "yes", "eda-worker": "w"}
    cleaned = failures.encodable_headers(headers, own=("eda-worker",))
    assert cleaned["fine"] == "yes" and cleaned["eda-worker"] == "w"
    assert "cannot be encoded" in cleaned["wide"] and "cannot be encoded" in cleaned["deep"]
    dumps("F", [cleaned])  # writes


def test_headers_over_the_budget_keep_edas_own_and_drop_the_events_own():
    headers = {f"h{i}": "x" * 1000 for i in range(200)} | {"eda-worker": "w"}
    cleaned = failures.encodable_headers(headers, own=("eda-worker",))
    assert cleaned["eda-worker"] == "w"
    from amqp.serialization import dumps
    assert len(dumps("F", [cleaned])) <= failures.HEADERS_BUDGET
