"""What happens to an event whose handling failed: classified, then retried later or dead-lettered.

Pure functions: they decide and build headers; the runtime does the confirmed publish and the ack.
"""

import socket
import traceback
from datetime import datetime, timezone

import pybreaker

from eda.errors import ContractError, PermanentError

RETRY_COUNT = "eda-retry-count"
ORIGINAL_EXCHANGE = "eda-original-exchange"
ORIGINAL_ROUTING_KEY = "eda-original-routing-key"
STACKTRACE_LIMIT = 4000

CONTRACT = "contract"  # never retried
PERMANENT = "permanent"  # the handler said retrying cannot help
TRANSIENT = "transient"  # retried with a delay, then dead-lettered
CIRCUIT_OPEN = "circuit-open"  # not the event's fault: given back, no attempt counted

FAILURE_HEADERS = (
    "eda-exception-type", "eda-exception-message", "eda-exception-stacktrace", ORIGINAL_EXCHANGE,
    ORIGINAL_ROUTING_KEY, "eda-original-queue", "eda-failed-at", "eda-worker", "eda-host",
)


def classify(error: BaseException) -> str:
    if isinstance(error, ContractError):
        return CONTRACT
    if isinstance(error, PermanentError):
        return PERMANENT
    if isinstance(error, pybreaker.CircuitBreakerError):
        return CIRCUIT_OPEN
    return TRANSIENT


def retry_count(headers) -> int:
    """Attempts already retried, from eda's own header (``x-death`` counting differs across versions)."""
    try:
        return max(0, int((headers or {}).get(RETRY_COUNT, 0)))
    except (TypeError, ValueError):
        return 0


def next_delay(kind: str, attempts: int, delays_ms) -> int | None:
    """The delay before the next attempt, or None when the event goes to the DLQ now."""
    if kind != TRANSIENT or attempts >= len(delays_ms):
        return None
    return delays_ms[attempts]


def origin(headers, delivery_info) -> tuple[str, str]:
    """Where the event was first published: a retried copy arrives through the default exchange."""
    headers = headers or {}
    return (headers.get(ORIGINAL_EXCHANGE, delivery_info.get("exchange", "")),
            headers.get(ORIGINAL_ROUTING_KEY, delivery_info.get("routing_key", "")))


def retry_headers(headers, delivery_info, attempts: int) -> dict:
    exchange, routing_key = origin(headers, delivery_info)
    return {**(headers or {}), RETRY_COUNT: attempts + 1, ORIGINAL_EXCHANGE: exchange,
            ORIGINAL_ROUTING_KEY: routing_key}


def dead_letter_headers(headers, delivery_info, error: BaseException, *, worker: str, queue: str,
                        attempts: int) -> dict:
    """The original headers plus the reason the event is dead: what failed, where and when."""
    exchange, routing_key = origin(headers, delivery_info)
    stack = "".join(traceback.format_exception(error)) if error.__traceback__ else ""
    return {
        **(headers or {}),
        "eda-exception-type": type(error).__name__,
        "eda-exception-message": str(error)[:1000],
        "eda-exception-stacktrace": stack[-STACKTRACE_LIMIT:],
        ORIGINAL_EXCHANGE: exchange,
        ORIGINAL_ROUTING_KEY: routing_key,
        "eda-original-queue": queue,
        "eda-failed-at": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        RETRY_COUNT: attempts,
        "eda-worker": worker,
        "eda-host": socket.gethostname(),
    }


def given_back_headers(headers) -> dict:
    """Headers for an event returned unhandled to its queue: as they were, less the broker's delivery count
    of the old copy (a quorum queue counts the new copy's deliveries afresh)."""
    return {k: v for k, v in (headers or {}).items() if k != "x-delivery-count"}


def cleaned_headers(headers) -> dict:
    """Headers for a replayed event: the failure record removed and the attempt count reset."""
    return {k: v for k, v in (headers or {}).items() if k not in FAILURE_HEADERS and k != RETRY_COUNT}
