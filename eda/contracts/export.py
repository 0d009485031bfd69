"""The contracts as documents: JSON Schema of each event (data and CloudEvents envelope), AsyncAPI of the bus.

The schemas are generated from the marshmallow contracts by apispec's MarshmallowPlugin, so the
documents cannot drift from what workers validate; only the Money field needs a rule of its own.
"""

from decimal import Decimal
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import EXCLUDE, Schema, fields, validate

from eda import names
from eda.contracts.envelope import CONTENT_TYPE, DATA_CONTENT_TYPE, SPECVERSION
from eda.contracts import versions
from eda.contracts.registry import CLIENTS, Contract, all_contracts, all_versions, get
from eda.fields import Money

JSON_SCHEMA = "https://json-schema.org/draft/2020-12/schema"
ASYNCAPI_VERSION = "3.0.0"
AMQP_BINDING = "0.3.0"
MONEY_PATTERN = r"^-?\d+\.\d{2}$"


class CloudEvent(Schema):
    """The CloudEvents 1.0 envelope as eda writes it, for the documents only: ``envelope.decode``
    checks these attributes by hand on the hot path. Extension attributes are allowed."""

    class Meta:
        unknown = EXCLUDE

    specversion = fields.String(required=True, validate=validate.OneOf([SPECVERSION]))
    id = fields.String(required=True, validate=validate.Length(min=1),
                       metadata={"description": "Unique per event; also the AMQP message_id."})
    source = fields.String(required=True, validate=validate.Length(min=1),
                           metadata={"description": "Who published the event, e.g. eda/payment."})
    type = fields.String(required=True, validate=validate.Length(min=1),
                         metadata={"description": "The event type, also its routing key."})
    time = fields.DateTime(metadata={"description": "When it happened (RFC 3339, UTC)."})
    datacontenttype = fields.String(validate=validate.OneOf([DATA_CONTENT_TYPE]))
    correlationid = fields.String(metadata={"description": "Shared by every event of one flow."})
    causationid = fields.String(metadata={"description": "The id of the event this one reacts to."})
    data = fields.Dict(required=True)


def money2properties(self, field, ret, **kwargs) -> dict:
    """Money is written as a string with two decimals and accepted as a JSON number too."""
    if not isinstance(field, Money):
        return {}
    bounds = {k[2:]: _number(ret.pop(k)) for k in ("x-minimum", "x-maximum") if k in ret}
    pattern = MONEY_PATTERN.replace("-?", "") if bounds.get("minimum", -1) >= 0 else MONEY_PATTERN
    return {"anyOf": [{"type": "string", "pattern": pattern}, {"type": "number", **bounds}]}


def _number(text: str) -> int | float:
    value = Decimal(text)
    return int(value) if value == value.to_integral_value() else float(value)


def single_choice2const(self, field, ret, **kwargs) -> dict:
    """``enum`` of one value reads better as ``const``."""
    if len(ret.get("enum", ())) == 1:
        return {"const": ret.pop("enum")[0]}
    return {}


@lru_cache(maxsize=1)
def _converter():
    # Nested schemas (the items of an order) are inlined: each document stands alone.
    plugin = MarshmallowPlugin(schema_name_resolver=lambda schema: None)
    APISpec("eda", "1", openapi_version="3.1.0", plugins=[plugin])
    converter = plugin.converter
    converter.map_to_openapi_type(Money, None, None)  # no single type: see money2properties
    converter.add_attribute_function(money2properties)
    converter.add_attribute_function(single_choice2const)
    return converter


def schema_id(contract: Contract) -> str:
    """``$id`` of one version's schema: what its events carry as ``dataschema`` (from version 2 on)."""
    return versions.schema_id(contract.type, contract.version)


def def_name(contract: Contract) -> str:
    """The key of one version under ``$defs``: the type for the newest, ``<type>:v<N>`` for an older one."""
    return contract.type if contract is get(contract.type) else f"{contract.type}:v{contract.version}"


def data_schema(contract: Contract) -> dict:
    """JSON Schema of the event's ``data`` as it is on the wire (camelCase keys)."""
    schema = _converter().schema2jsonschema(contract.schema)
    return {"title": contract.schema_class.__name__, "description": contract.description,
            "x-version": contract.version, **schema}


def event_schema(contract: Contract) -> dict:
    """JSON Schema of the whole CloudEvent of one type: the envelope with its data schema inside."""
    envelope = _converter().schema2jsonschema(CloudEvent)
    envelope["properties"]["type"] = {**envelope["properties"]["type"], "const": contract.type}
    envelope["properties"]["data"] = data_schema(contract)
    if contract.version != 1:
        envelope["properties"]["dataschema"] = {"type": "string", "const": schema_id(contract)}
        envelope.setdefault("required", []).append("dataschema")
    reply = {"x-reply": contract.reply_contract().type} if contract.reply is not None else {}
    return {"$schema": JSON_SCHEMA, "$id": schema_id(contract), "title": f"{contract.type} CloudEvent",
            "description": contract.description, "x-version": contract.version, **reply, **envelope}


def jsonschema_document() -> dict:
    """Every version of every event's schema under ``$defs``; the document accepts any one of them.
    ``eda contracts check --against`` compares today's contracts with such a document."""
    every = all_versions()
    return {
        "$schema": JSON_SCHEMA,
        "$id": "urn:eda:events",
        "title": "eda events",
        "description": "CloudEvents 1.0 (structured JSON mode) of every event type and version on the bus.",
        "oneOf": [{"$ref": schema_id(c)} for c in every],
        "$defs": {def_name(c): event_schema(c) for c in every},
    }


def _package_version() -> str:
    try:
        return version("eda")
    except PackageNotFoundError:
        return "0"


def _ref(*path: str) -> dict:
    return {"$ref": "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in path)}


def asyncapi_document(namespace: str, workers: dict[str, type]) -> dict:
    """AsyncAPI 3.0 of the bus in ``namespace``: a channel per routing key on the topic exchange (where
    publishers send), a channel per worker queue (where workers receive), and every event's message."""
    exchange = {"name": names.events_exchange(namespace), "type": "topic", "durable": True, "autoDelete": False}
    channels, operations, messages = {}, {}, {}
    contracts = all_contracts()
    consumers = {c.type: [w for w, cls in workers.items() if c.type in cls.handlers] for c in contracts}
    for c in contracts:
        for v in versions.of(c.type):  # every version may be on the wire: its own message
            payload = {k: val for k, val in event_schema(v).items() if k not in ("$schema", "$id")}
            messages[def_name(v)] = {
                "name": c.type, "title": c.name + (f" (version {v.version})" if v is not c else ""),
                "summary": v.description, "contentType": CONTENT_TYPE,
                "payload": payload, "correlationId": {"location": "$message.payload#/correlationid"},
                "bindings": {"amqp": {"messageType": c.type, "bindingVersion": AMQP_BINDING}},
                "x-version": v.version,
            }
        who = ", ".join(f"{w} (queue {names.work_queue(namespace, w)})" for w in consumers[c.type]) or "no worker"
        channels[c.type] = {
            "address": c.type,
            "description": f"Routing key {c.type} on {exchange['name']}. "
                           f"Published by {', '.join(c.published_by)}; consumed by {who}.",
            "messages": {def_name(v): _ref("components", "messages", def_name(v)) for v in versions.of(c.type)},
            "bindings": {"amqp": {"is": "routingKey", "exchange": exchange, "bindingVersion": AMQP_BINDING}},
        }
        for publisher in c.published_by:
            operations[f"{publisher}.send.{c.type}"] = {
                "action": "send", "channel": _ref("channels", c.type),
                "summary": f"{'Clients (eda publish, producers)' if publisher == CLIENTS else publisher} "
                           f"publish {c.type}, confirmed and mandatory.",
                "messages": [_ref("channels", c.type, "messages", def_name(v)) for v in versions.of(c.type)],
                "bindings": {"amqp": {"cc": [c.type], "deliveryMode": 2, "mandatory": True,
                                      "bindingVersion": AMQP_BINDING}},
                "x-eda-worker": publisher,
            }
    answered = _replies(contracts, channels, messages)  # request type -> its operations' reply
    for c in contracts:
        for publisher in c.published_by if c.type in answered else ():
            operations[f"{publisher}.send.{c.type}"]["reply"] = answered[c.type]
    for worker, cls in workers.items():
        queue, channel = names.work_queue(namespace, worker), f"queue.{worker}"
        types = sorted(cls.handlers)
        ordering = "the flow (correlation id)" if cls.ordered_by == names.FLOW else cls.ordered_by
        where = f"Worker {worker}'s queue, bound to {', '.join(types)}" if not cls.ordered_by else (
            f"Worker {worker} is ordered by {ordering}: its partition queues {queue}.p0, {queue}.p1, ... "
            f"(one active consumer each) get its events ({', '.join(types)}) from the consistent-hash exchange "
            f"{names.partitions_exchange(namespace, worker, cls.ordered_by == names.FLOW)}, by the "
            + (f"{names.FLOW_PROPERTY} property (the flow)" if cls.ordered_by == names.FLOW
               else f"{names.PARTITION_KEY_HEADER} header"))
        channels[channel] = {
            "address": queue,
            "description": f"{where}; failed events end in {names.dead_letter_queue(namespace, worker)}.",
            "messages": {def_name(v): _ref("components", "messages", def_name(v))
                         for t in types for v in versions.of(t)},
            "bindings": {"amqp": {"is": "queue", "queue": {"name": queue, "durable": True, "exclusive": False,
                                                           "autoDelete": False}, "bindingVersion": AMQP_BINDING}},
            **_saga(cls),
        }
        for t in types:
            operations[f"{worker}.receive.{t}"] = {
                "action": "receive", "channel": _ref("channels", channel),
                "summary": f"{worker} handles {t}; acked once its reactions are confirmed.",
                "messages": [_ref("channels", channel, "messages", def_name(v)) for v in versions.of(t)],
                "bindings": {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING}},
                "x-eda-worker": worker,
                **({"reply": answered[t]} if t in answered else {}),
            }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {"title": "eda event bus", "version": _package_version(),
                 "description": f"Events of namespace {namespace!r}: CloudEvents 1.0 in JSON on the topic "
                                f"exchange {exchange['name']}, the routing key being the event type."},
        "defaultContentType": CONTENT_TYPE,
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def _saga(cls) -> dict:
    """A saga's queue channel says so (``x-eda-saga``): its correlation field and the JSON Schema of an
    instance's state, as its table ``saga_instances`` keeps it (snake_case keys, as declared)."""
    state = getattr(cls, "_eda_state_schema", None)
    if state is None:
        return {}
    return {"x-eda-saga": {"correlation": cls.correlation,
                           "state": {"title": f"{cls.__name__} state",
                                     "description": f"The state of one instance of saga {cls.name}, kept in the "
                                                    f"worker's store (table saga_instances, saga = {cls.name!r}).",
                                     **{k: v for k, v in _converter().schema2jsonschema(state).items()
                                        if k != "additionalProperties"}}}}  # a field no longer declared stays


FAILURE_REPLY = {  # eda.request.failed: what a worker answers a request it dead-lettered (eda.replies)
    "name": names.REQUEST_FAILED, "title": "request failed", "contentType": CONTENT_TYPE,
    "summary": "A worker dead-lettered the request: its name, the exception's type and the reason.",
    "payload": {"type": "object", "required": ["specversion", "id", "source", "type", "causationid", "data"],
                "properties": {"type": {"const": names.REQUEST_FAILED}, "causationid": {"type": "string"},
                               "data": {"type": "object", "required": ["worker", "exceptionType", "reason"],
                                        "properties": {"worker": {"type": "string"},
                                                       "exceptionType": {"type": "string"},
                                                       "reason": {"type": "string"}}}}},
    "bindings": {"amqp": {"messageType": names.REQUEST_FAILED, "bindingVersion": AMQP_BINDING}},
}


def _replies(contracts, channels: dict, messages: dict) -> dict:
    """The reply of each request type (AsyncAPI's operation ``reply``), its channel added to ``channels``:
    the requester's direct reply-to address, reached through the default exchange by the request's
    ``reply_to``, where the reply (or a failure reply) goes."""
    found = {}
    for c in contracts:
        if c.reply is None:
            continue
        reply = c.reply_contract()
        messages.setdefault(names.REQUEST_FAILED, FAILURE_REPLY)
        channel = f"{c.type}.reply"
        channels[channel] = {
            "address": None,
            "title": f"Replies to {c.type}",
            "description": f"The requester's direct reply-to address ({names.DIRECT_REPLY_TO}, which the broker "
                           f"names for the requester's channel), reached through the default exchange with the "
                           f"request's reply_to as routing key: {reply.type}, or {names.REQUEST_FAILED} when a worker "
                           f"dead-lettered the request. Confirmed before the request is acked; never on "
                           f"the events exchange.",
            "messages": {**{def_name(v): _ref("components", "messages", def_name(v)) for v in versions.of(reply.type)},
                         names.REQUEST_FAILED: _ref("components", "messages", names.REQUEST_FAILED)},
            "bindings": {"amqp": {"is": "routingKey", "exchange": {"name": "", "type": "direct", "durable": True},
                                  "bindingVersion": AMQP_BINDING}},
        }
        found[c.type] = {
            "address": {"location": "$message.header#/replyTo",
                        "description": f"The request's AMQP reply_to property ({names.DIRECT_REPLY_TO})."},
            "channel": _ref("channels", channel),
            "messages": [_ref("channels", channel, "messages", name) for name in channels[channel]["messages"]],
        }
    return found
