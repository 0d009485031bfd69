"""What happens to an event whose handling failed: classified, then retried later or dead-lettered.

Pure functions: they decide and build headers; the runtime does the confirmed publish and the ack.
What may pass with time is retried; what is the same at every attempt (a contract broken, a
PermanentError, a programming mistake) is dead-lettered at once, its category in ``eda-failure-category``.
"""

import os
import socket
import traceback
from datetime import datetime, timezone

import pybreaker
from amqp.serialization import dumps

from eda.errors import ContractError, PermanentError, UnknownEvent

RETRY_COUNT = "eda-retry-count"
ORIGINAL_EXCHANGE = "eda-original-exchange"
ORIGINAL_ROUTING_KEY = "eda-original-routing-key"
STACKTRACE_LIMIT = 4000
MAX_RETRY_COUNT = 1000  # any attempt count past every schedule: the event is at its schedule's end
# A moved copy's headers must fit one AMQP frame (131072 bytes here) beside the other properties; past
# this budget the event's own headers are left out of the copy and eda's failure record kept.
HEADERS_BUDGET = 100_000

CONTRACT = "contract"  # never retried
PERMANENT = "permanent"  # the handler said retrying cannot help
PROGRAMMING = "programming"  # a mistake in the code, the same at every attempt: never retried
TRANSIENT = "transient"  # retried with a delay, then dead-lettered
CIRCUIT_OPEN = "circuit-open"  # not the event's fault: given back, no attempt counted
CATEGORY = "eda-failure-category"  # which of the above dead-lettered the event

FAILURE_HEADERS = (
    "eda-exception-type", "eda-exception-message", "eda-exception-stacktrace", CATEGORY, ORIGINAL_EXCHANGE,
    ORIGINAL_ROUTING_KEY, "eda-original-queue", "eda-failed-at", "eda-worker", "eda-host",
)
OWN_HEADERS = (*FAILURE_HEADERS, RETRY_COUNT)  # kept first when a copy's headers must be cut down

EDA_CODE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # eda/ itself


def classify(error: BaseException) -> str:
    if isinstance(error, ContractError):
        return CONTRACT
    if isinstance(error, PermanentError):
        return PERMANENT
    if isinstance(error, pybreaker.CircuitBreakerError):
        return CIRCUIT_OPEN
    if isinstance(error, UnknownEvent) or (isinstance(error, TypeError) and _raised_by_the_call(error)):
        return PROGRAMMING  # a reaction of a type no contract knows; a handler that cannot take (event, ctx)
    return TRANSIENT


def _raised_by_the_call(error: TypeError) -> bool:
    """A TypeError raised by eda's call of the handler itself (its arguments do not fit), not from inside
    it: the innermost frame of its traceback is eda's (the call site has no deeper frame), and no frame
    is a handler's body. A TypeError inside the handler may depend on the data: it stays transient."""
    from eda.worker import HANDLER_CODES  # filled by @handles

    tb, innermost = error.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code in HANDLER_CODES:
            return False
        innermost, tb = tb, tb.tb_next
    return innermost is not None and innermost.tb_frame.f_code.co_filename.startswith(EDA_CODE)


def retry_count(headers) -> int:
    """Attempts already retried, from eda's own header (``x-death`` counting differs across versions).

    Read defensively, since any publisher can set it: an int is clamped to 0..MAX_RETRY_COUNT (past
    every schedule), a string of digits read as one, anything else counts as 0. It never raises."""
    value = (headers or {}).get(RETRY_COUNT, 0) if isinstance(headers, dict) else 0
    if type(value) is str and value.isdigit() and len(value) <= 4:
        value = int(value)
    if type(value) is not int:  # bool, float (1e300), None, bytes, a table...
        return 0
    return min(max(value, 0), MAX_RETRY_COUNT)


def next_delay(kind: str, attempts: int, delays_ms) -> int | None:
    """The delay before the next attempt, or None when the event goes to the DLQ now."""
    if kind != TRANSIENT or attempts >= len(delays_ms):
        return None
    return delays_ms[attempts]


def origin(headers, delivery_info) -> tuple[str, str]:
    """Where the event was first published: a copy eda moved (a retry, a give-back, a replay) arrives
    through the default exchange and carries its origin in headers."""
    headers = headers or {}
    if delivery_info.get("exchange"):  # from the events exchange: what the broker says, never a header
        return delivery_info.get("exchange", ""), delivery_info.get("routing_key", "")
    return (headers.get(ORIGINAL_EXCHANGE, delivery_info.get("exchange", "")),
            headers.get(ORIGINAL_ROUTING_KEY, delivery_info.get("routing_key", "")))


def routed_as(headers, delivery_info) -> str | None:
    """The routing key the event was routed with, which must be its type: the broker's for an event
    from the events exchange; for a copy eda moved through the default exchange (published to the
    queue by name, which needs write access to that queue) the original routing key in its headers,
    or None where it has none."""
    if delivery_info.get("exchange"):
        return delivery_info.get("routing_key")
    return (headers or {}).get(ORIGINAL_ROUTING_KEY)


def describe(error: BaseException) -> str:
    """``str(error)``, or its type's name where even that fails (a handler's own exception class)."""
    try:
        return str(error)
    except Exception:  # noqa: BLE001
        return f"<{type(error).__name__} that cannot be shown>"


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
        "eda-exception-message": describe(error)[:1000],
        "eda-exception-stacktrace": stack[-STACKTRACE_LIMIT:],
        CATEGORY: classify(error),
        ORIGINAL_EXCHANGE: exchange,
        ORIGINAL_ROUTING_KEY: routing_key,
        "eda-original-queue": queue,
        "eda-failed-at": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        RETRY_COUNT: attempts,
        "eda-worker": worker,
        "eda-host": socket.gethostname(),
    }


def given_back_headers(headers, delivery_info) -> dict:
    """Headers for an event returned unhandled to its queue: as they were, with where it was first
    published, less the broker's delivery count of the old copy (a quorum queue counts the new copy's
    deliveries afresh)."""
    exchange, routing_key = origin(headers, delivery_info)
    kept = {k: v for k, v in (headers or {}).items() if k != "x-delivery-count"}
    return {**kept, ORIGINAL_EXCHANGE: exchange, ORIGINAL_ROUTING_KEY: routing_key}


def cleaned_headers(headers) -> dict:
    """Headers for a replayed event: the failure record removed and the attempt count reset; where it
    was first published is kept, since the worker checks the event's type against it."""
    keep = (ORIGINAL_EXCHANGE, ORIGINAL_ROUTING_KEY)
    return {k: v for k, v in (headers or {}).items()
            if k in keep or (k not in FAILURE_HEADERS and k != RETRY_COUNT)}


def encodable_headers(headers: dict, own: tuple = ()) -> dict:
    """``headers`` as they can be written again: a value AMQP cannot encode (a decimal too wide, a
    table nested past Python's recursion limit) is replaced by a note, and past ``HEADERS_BUDGET``
    bytes only eda's own headers (``own``, written last) are kept. Moves are rare: the cost is theirs."""
    try:
        if len(dumps("F", [headers])) <= HEADERS_BUDGET:
            return headers
    except Exception:  # noqa: BLE001 - any encoding failure: go header by header
        pass
    out, size = {}, 0
    for key in [k for k in headers if k not in own] + [k for k in own if k in headers]:
        value = headers[key]
        try:
            item = len(dumps("F", [{key: value}]))
        except Exception as exc:  # noqa: BLE001
            value = f"eda: value left out, it cannot be encoded again ({type(exc).__name__})"
            item = len(dumps("F", [{key: value}]))
        out[key] = value
        size += item
    while size > HEADERS_BUDGET:
        foreign = next((k for k in out if k not in own), None)
        if foreign is None:
            break
        size -= len(dumps("F", [{foreign: out.pop(foreign)}]))
    return out
