"""Replies on the wire: where a reply goes, what a failure reply holds, which request a reply answers.

A request is an event published with the AMQP properties ``reply_to`` (RabbitMQ's direct reply-to,
``amq.rabbitmq.reply-to``, which the broker rewrites into the requester channel's own address) and
``correlation_id``. Its reply is a CloudEvent of the contract the request's contract names
(``@contract(..., reply=...)``), with the request's correlation id and the request's id as its
causation id, sent through the default exchange with ``reply_to`` as routing key. A request expires
with its requester's timeout: its AMQP ``expiration`` has the broker dead-letter it while it waits in
a queue, and its ``eda-expires-at`` header has the worker dead-letter it unhandled when it comes later
(delivered before, or retried). When a worker
dead-letters a request, it tells the requester so with a failure reply: a CloudEvent of type
``eda.request.failed`` (no contract: its data is eda's own) naming the worker and the reason.

Pure functions, shared by the requester (``eda.publishing.requester``) and the worker's settlement.
"""

import uuid
from datetime import datetime, timezone

import orjson

from eda.contracts.binary import PREFIX
from eda.contracts.envelope import (CONTENT_TYPE, DATA_CONTENT_TYPE, SPECVERSION, Event, clip, event_properties,
                                    now_rfc3339)
from eda.errors import ContractError, Expired, RequestFailed
from eda.names import DIRECT_REPLY_TO, REQUEST_FAILED as FAILED  # noqa: F401 (eda.replies.DIRECT_REPLY_TO)


EXPIRES_AT = "eda-expires-at"  # header: RFC 3339 UTC time past which nobody wants the event handled


def expiry(timeout: float, now: float) -> tuple[str, dict]:
    """The AMQP ``expiration`` (whole milliseconds, at least 1) and the ``eda-expires-at`` header of a
    request sent at ``now`` (seconds since the epoch) whose requester waits ``timeout`` seconds."""
    at = datetime.fromtimestamp(now + timeout, timezone.utc).isoformat(timespec="milliseconds")
    return str(max(1, round(timeout * 1000))), {EXPIRES_AT: at.replace("+00:00", "Z")}


def check_expiry(headers, now: float) -> None:
    """Raise ``Expired`` when ``headers`` carry an ``eda-expires-at`` that ``now`` (seconds since the
    epoch) is past. A value that is no RFC 3339 time with a zone is ignored: it cannot be told."""
    value = headers.get(EXPIRES_AT) if isinstance(headers, dict) else None
    if value is None:
        return
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    try:
        at = datetime.fromisoformat(value) if isinstance(value, str) and len(value) < 64 else None
    except ValueError:
        return
    if at is None or at.tzinfo is None:
        return
    late = now - at.timestamp()
    if late > 0:
        raise Expired(f"expired {late:.3f}s before a handler could take it ({EXPIRES_AT} {value}: its "
                      f"requester stopped waiting then): not handled")


def is_direct(reply_to: str) -> bool:
    """True for a direct reply-to address (the broker's rewriting of ``amq.rabbitmq.reply-to``)."""
    return reply_to.startswith(DIRECT_REPLY_TO)


def reply_to_of(properties) -> str | None:
    """Where a delivery's reply goes: its ``reply_to`` property when it is a non-empty string."""
    reply_to = properties.get("reply_to") if properties else None
    return reply_to if isinstance(reply_to, str) and reply_to else None


def reply_properties(reply: Event, request_properties) -> dict:
    """The AMQP properties of a reply: an event's, with the request's ``correlation_id`` property
    copied as the RPC convention has it (eda's requests carry their correlation id there anyway)."""
    return _correlated(event_properties(reply), request_properties)


def _correlated(properties: dict, request_properties) -> dict:
    correlation_id = request_properties.get("correlation_id") if request_properties else None
    if isinstance(correlation_id, str) and correlation_id:
        properties["correlation_id"] = correlation_id
    return properties


def failure(request: Event, request_properties, error: BaseException, *, worker: str, source: str,
            reason: str) -> tuple[bytes, dict]:
    """The body and properties of a failure reply to ``request``, which ``worker`` dead-lettered."""
    event_id = str(uuid.uuid4())
    body = orjson.dumps({
        "specversion": SPECVERSION, "id": event_id, "source": source, "type": FAILED, "time": now_rfc3339(),
        "datacontenttype": DATA_CONTENT_TYPE, "correlationid": request.correlation_id, "causationid": request.id,
        "data": {"worker": worker, "exceptionType": type(error).__name__, "reason": reason},
    })
    properties = {"content_type": CONTENT_TYPE, "delivery_mode": 2, "message_id": event_id, "type": FAILED,
                  "correlation_id": request.correlation_id, "app_id": source}
    return body, _correlated(properties, request_properties)


def answered(body: bytes, properties, headers, waiting) -> str | None:
    """The id of the request a reply answers, among those ``waiting`` (a container of request ids):
    its causation id (a ``ce-causationid`` header in binary mode), else its ``correlation_id``
    property, which a replier following the RPC convention copies from the request (eda's requests
    carry their own id there unless they joined a flow). None: it answers no request waiting here."""
    candidates = []
    if headers and isinstance(headers.get(PREFIX + "causationid"), (str, bytes)):
        candidates.append(headers[PREFIX + "causationid"])
    else:
        try:
            wire = orjson.loads(body)
        except (ValueError, TypeError):
            wire = None
        if isinstance(wire, dict):
            candidates.append(wire.get("causationid"))
    candidates.append(properties.get("correlation_id") if properties else None)
    for candidate in candidates:
        if isinstance(candidate, bytes):
            candidate = candidate.decode("utf-8", "replace")
        if isinstance(candidate, str) and candidate in waiting:
            return candidate
    return None


def failed(body: bytes, properties, request: Event) -> RequestFailed | None:
    """The RequestFailed a failure reply to ``request`` stands for, or None when it is no failure reply."""
    if (properties or {}).get("type") != FAILED:
        return None
    try:
        data = orjson.loads(body).get("data") or {}
    except (ValueError, TypeError, AttributeError):
        raise ContractError(f"{request.type}: a failure reply that is not a JSON object") from None
    worker, kind, reason = (clip(data.get(k), 60) if not isinstance(data.get(k), str) else data[k][:1000]
                            for k in ("worker", "exceptionType", "reason"))
    return RequestFailed(f"{request.type}: worker {worker} failed the request: {kind}: {reason} "
                         f"(request {request.id}; it is in the worker's dead-letter queue)")
