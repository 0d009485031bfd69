"""The CloudEvents 1.0 envelope in structured JSON mode: build, encode and decode events.

The envelope is checked by hand rather than with a schema: it is a handful of attributes and this
runs once per event on the hot path. The data is validated by its event's marshmallow contract.
"""

import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

import orjson

from eda.contracts import registry, versions
from eda.errors import ContractError

SPECVERSION = "1.0"
SHORT_STRING_BYTES = 255  # AMQP short strings (message_id, correlation_id, type, app_id) hold at most this
CONTENT_TYPE = "application/cloudevents+json"
DATA_CONTENT_TYPE = "application/json"
# The UUID namespace of reaction ids (uuid5): a reaction's id is a function of what caused it.
REACTION_IDS = uuid.UUID("6f1d3c9e-5a43-4c56-9d0b-8c1e2f7a9b31")


def reaction_id(cause_id: str, source: str, type: str, index: int) -> str:
    """The id of the ``index``-th reaction of ``type`` that ``source`` publishes to the event ``cause_id``."""
    return str(uuid.uuid5(REACTION_IDS, f"{cause_id}\n{source}\n{type}\n{index}"))


@dataclass
class Event:
    """One event: its CloudEvents attributes and its data as loaded by its contract."""

    type: str
    data: dict
    source: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: str = field(default_factory=lambda: now_rfc3339())
    correlation_id: str | None = None
    causation_id: str | None = None
    # The CloudEvents Distributed Tracing extension (W3C Trace Context), carried on to reactions.
    traceparent: str | None = None
    tracestate: str | None = None
    # With tracing on (eda.tracing): this event's span in this process, its publish span while it is
    # sent or its handling span while it is handled. Never on the wire.
    span: object = field(default=None, repr=False, compare=False)
    # The contract version of ``data``: None for the type's newest (what workers hand their handlers,
    # upcast where the event was older), a number where a publisher asked for an older one.
    version: int | None = None

    def __post_init__(self):
        if self.correlation_id is None:
            self.correlation_id = self.id  # the first event of a flow starts its correlation

    @property
    def contract(self) -> registry.Contract:
        return registry.get(self.type) if self.version is None else registry.version(self.type, self.version)

    def reaction(self, type: str, data: dict, source: str, version: int | None = None, index: int = 0) -> "Event":
        """A new event caused by this one: same correlation, this event as its cause; ``version`` where
        its data is of an older version than the type's newest. Its id is derived from this event's id,
        the reacting source, the type and ``index`` (its rank among that handling's reactions of the
        type), so that handling this event again (a redelivery after a lost connection or a paused
        worker) publishes the same reactions under the same ids: consumers that record the ids they
        processed take the second copy as the duplicate it is, and nothing downstream happens twice."""
        if version is not None and version == registry.get(type).version:
            version = None
        return Event(type=type, data=data, source=source, id=reaction_id(self.id, source, type, index),
                     correlation_id=self.correlation_id, causation_id=self.id, traceparent=self.traceparent,
                     tracestate=self.tracestate, version=version)


def check_attribute(name: str, value, *, required: bool = True) -> None:
    """Raise ContractError unless ``value`` is a string the wire can carry: not empty, and at most 255
    bytes of UTF-8, since id, type, source and correlation id are also AMQP short-string properties."""
    if value is None and not required:
        return
    if not isinstance(value, str) or not value:
        raise ContractError(f"CloudEvent attribute {name!r} is missing or not a string")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ContractError(f"CloudEvent attribute {name!r} is not valid UTF-8") from None
    if size > SHORT_STRING_BYTES:
        raise ContractError(f"CloudEvent attribute {name!r} is {size} bytes long; at most {SHORT_STRING_BYTES} "
                            f"bytes of UTF-8 fit an AMQP property")


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_event(type: str, data: dict, source: str, **attributes) -> Event:
    """An event of a known type; ``data`` holds Python values (snake_case keys). Attributes the wire
    cannot carry (see ``check_attribute``) are refused here, before anything is sent."""
    contract = registry.get(type)  # unknown types fail here, before anything is built
    check_attribute("source", source)
    for name, attribute in (("id", "id"), ("correlationid", "correlation_id"), ("causationid", "causation_id")):
        check_attribute(name, attributes.get(attribute), required=False)
    if contract is not registry.get(contract.type):  # an older version, named by its contract class
        attributes["version"] = contract.version
    return Event(type=contract.type, data=data, source=source, **attributes)


def to_wire(event: Event, data: dict | None = None) -> dict:
    """The CloudEvent as a JSON-ready dict, data dumped by its contract (camelCase, money as strings)
    unless ``data`` is its wire form already."""
    wire = {
        "specversion": SPECVERSION,
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "time": event.time,
        "datacontenttype": DATA_CONTENT_TYPE,
        "correlationid": event.correlation_id,
        "data": event.contract.dump(event.data) if data is None else data,
    }
    version = event.version or registry.get(event.type).version
    if version != 1:  # none: version 1, as every event was before versions (eda.contracts.versions)
        wire["dataschema"] = versions.schema_id(event.type, version)
    if event.causation_id:
        wire["causationid"] = event.causation_id
    if event.traceparent:
        wire["traceparent"] = event.traceparent
        if event.tracestate:
            wire["tracestate"] = event.tracestate
    return wire


def event_properties(event: Event) -> dict:
    """The AMQP properties the wire contract fixes for an event."""
    return {"content_encoding": "utf-8", **amqp_properties(event)}


def amqp_properties(event: Event) -> dict:
    """``event_properties`` without content_encoding: what eda's own publisher sends, since py-amqp
    would otherwise decode the body to str for every consumer."""
    return {
        "content_type": CONTENT_TYPE,
        "delivery_mode": 2,
        "message_id": event.id,
        "type": event.type,
        "correlation_id": event.correlation_id,
        "timestamp": int(time.time()),
        "app_id": event.source,
    }


def encode(event: Event, data: dict | None = None) -> bytes:
    """The event's JSON body; data JSON cannot hold (a lone surrogate in a string) is a ContractError."""
    try:
        return orjson.dumps(to_wire(event, data))
    except orjson.JSONEncodeError as exc:
        raise ContractError(f"{event.type}: data cannot be written as JSON: {exc}") from None


TRACESTATE_MAX_CHARS = 512  # what W3C Trace Context asks every vendor to carry on
_TRACEPARENT = re.compile(r"(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}(-[^\x00-\x1f]*)?")


def trace_context(traceparent, tracestate=None) -> tuple[str | None, str | None]:
    """The ``traceparent`` and ``tracestate`` attributes as the wire may carry them on, or (None, None)
    where the traceparent is not W3C Trace Context (any other client may write it): a malformed one is
    ignored and the event starts a new trace, it never fails. A tracestate is kept only beside a valid
    traceparent and while it is a string of at most 512 characters."""
    if type(traceparent) is not str or len(traceparent) > SHORT_STRING_BYTES or not _TRACEPARENT.fullmatch(
            traceparent) or (traceparent.startswith("00") and len(traceparent) != 55):
        return None, None
    if type(tracestate) is not str or not tracestate or len(tracestate) > TRACESTATE_MAX_CHARS:
        tracestate = None
    return traceparent, tracestate


_REQUIRED = ("id", "source", "type")
_OPTIONAL = ("correlationid", "causationid")
TIME_MAX_CHARS = 64  # an RFC 3339 time is about 30 characters


def clip(value, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages that quote what arrived."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _load_version(contract: registry.Contract, data, version: int) -> dict:
    """Data of any version as the newest known: an older one upcast first; a newer one read by the
    newest schema known here, which ignores fields it does not know (it fails where it lacks one)."""
    if version < contract.version:
        return contract.load(versions.upcast(contract.type, data, version, contract.version))
    try:
        return contract.load(data)
    except ContractError as exc:
        if version == contract.version:
            raise
        raise ContractError(f"version {version} is newer than the newest known here ({contract.version}): {exc}",
                            exc.fields) from None


def decode(body: bytes, accepted_types=None) -> Event:
    """Parse and validate a body into an Event; raise ContractError saying what is wrong.

    ``accepted_types`` limits the types a worker takes: anything else is a contract failure too. The
    attributes that become AMQP properties of a reaction (id, source, type, correlation and causation
    id) must fit them: a reaction that cannot be written is refused here, not on the I/O thread."""
    try:
        wire = orjson.loads(body)  # about 3x faster than json.loads; str or bytes; refuses lone surrogates
    except (UnicodeDecodeError, ValueError, TypeError) as exc:
        raise ContractError(f"body is not UTF-8 JSON: {clip(str(exc), 200)}") from None
    if not isinstance(wire, dict):
        raise ContractError("body is not a CloudEvent: not a JSON object")
    if wire.get("specversion") != SPECVERSION:
        raise ContractError(f"body is not a CloudEvent 1.0: specversion is {clip(wire.get('specversion'))}")
    for name in _REQUIRED:
        check_attribute(name, wire.get(name))
    for name in _OPTIONAL:
        if wire.get(name) not in (None, ""):
            check_attribute(name, wire[name])
    time = wire.get("time")
    if time is not None and (not isinstance(time, str) or len(time) > TIME_MAX_CHARS):
        raise ContractError(f"CloudEvent attribute 'time' is not an RFC 3339 time: {clip(time)}")
    content_type = wire.get("datacontenttype", DATA_CONTENT_TYPE)
    if content_type != DATA_CONTENT_TYPE:
        raise ContractError(f"datacontenttype {clip(content_type)} is not {DATA_CONTENT_TYPE}")
    type_ = wire["type"]
    if accepted_types is not None and type_ not in accepted_types:
        raise ContractError(f"event type {clip(type_)} is not handled here")
    try:
        contract = registry.get(type_)
    except Exception:
        raise ContractError(f"unknown event type {clip(type_)}") from None
    if "data" not in wire:
        raise ContractError(f"{type_}: the event has no data")
    traceparent = tracestate = wire.get("traceparent")
    if traceparent is not None:
        traceparent, tracestate = trace_context(traceparent, wire.get("tracestate"))
    dataschema = wire.get("dataschema")
    if dataschema is None and contract.version == 1:
        data = contract.load(wire["data"])  # the common case: one version, nothing to upcast
    else:
        data = _load_version(contract, wire["data"], versions.version_in(dataschema, type_, contract.version))
    return Event(
        type=type_,
        data=data,
        source=wire["source"],
        id=wire["id"],
        time=time or now_rfc3339(),
        correlation_id=wire.get("correlationid") or wire["id"],
        causation_id=wire.get("causationid") or None,
        traceparent=traceparent,
        tracestate=tracestate,
    )
