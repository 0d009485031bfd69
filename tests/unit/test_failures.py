"""How a failed event is classified, when it is retried, and what its retried or dead-lettered copy says."""

import socket

import pybreaker
import pytest

from eda.errors import ContractError, GatewayError, PermanentError
from eda.runtime import failures

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
    assert failures.cleaned_headers(dead) == {"trace": "t-1"}


def test_an_event_given_back_keeps_its_headers_but_not_the_old_copys_delivery_count():
    headers = {"eda-retry-count": 1, "x-delivery-count": 4, "trace": "t-1"}
    assert failures.given_back_headers(headers) == {"eda-retry-count": 1, "trace": "t-1"}
