"""Fuzzing the real delivery path: arbitrary bodies, properties and headers published to a running
`eda worker shipping` on the real broker. Whatever arrives, the worker stays up and every message is
either handled (its order.shipped on the wire) or dead-lettered with its reason; nothing is left behind.

The budget of examples is fixed and the generation derandomized, so a CI run is reproducible."""

import json
import string
import uuid
from datetime import datetime

import pytest
from amqp.basic_message import Message as AmqpMessage
from hypothesis import HealthCheck, Phase, assume, given, settings, strategies as st

from tests.support import cloud_event, reservation, wait_until

pytestmark = pytest.mark.integration

EXAMPLES = 300  # about 15-30 s on this 2-core machine, most of it the worker reconnecting past undecodable frames
CLOUDEVENTS = "application/cloudevents+json"
ATTRIBUTES = ("specversion", "id", "source", "type", "time", "datacontenttype", "correlationid", "causationid",
              "data", "dataschema", "subject")

# Strings: short and long, any unicode (lone surrogates too, where JSON can carry them escaped).
short_text = st.text(max_size=30)
long_text = st.text(min_size=200, max_size=600)
wild_text = short_text | long_text | st.lists(st.characters() | st.characters(categories=["Cs"]), max_size=30).map("".join)
json_scalar = st.none() | st.booleans() | st.integers() | st.floats() | wild_text
json_value = st.recursive(json_scalar, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(short_text, inner, max_size=4), max_leaves=12)

# AMQP short strings (at most 255 bytes), and raw bytes where a string goes (py-amqp sends them as they are).
short_string = (st.text(max_size=40) | st.text(string.printable, min_size=200, max_size=255)
                | st.sampled_from(["", "inventory.reserved", "order.placed", CLOUDEVENTS, "application/json"]))

# Doubles in headers are finite: RabbitMQ 3.10 closes the connection on a NaN or an infinity (INTERNAL_ERROR),
# so such a message never reaches a worker.
amqp_value = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63 + 1, 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | wild_text | st.binary(max_size=50)
    | st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-10**6, max_value=10**6)
    | st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 1, 1)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(short_text, inner, max_size=4), max_leaves=12)

# eda's own headers, with values of any type; keys a broker treats specially (x-*, CC, BCC) are left out.
eda_headers = st.fixed_dictionaries({}, optional={
    "eda-retry-count": amqp_value | st.sampled_from([0, 1, 2, -1, 2**31, 2**63 - 1, 1e300, -1e300, 0.5, 5e-324, "2",
                                                        "x", b"\x01"]),
    "eda-original-routing-key": amqp_value | st.sampled_from(["inventory.reserved", "order.placed", "", "#"]),
    "eda-original-exchange": amqp_value,
    "eda-exception-type": amqp_value,
    "eda-worker": amqp_value,
})
other_headers = st.dictionaries(
    st.text(max_size=20).filter(lambda k: not k.startswith("x-") and k not in ("CC", "BCC")), amqp_value, max_size=4)
headers = st.builds(lambda a, b: {**b, **a}, eda_headers, other_headers)

SHORT_STRING_PROPERTIES = ("correlation_id", "type", "content_type", "content_encoding", "app_id", "reply_to",
                           "cluster_id")
properties = st.fixed_dictionaries({}, optional={
    **{name: short_string for name in SHORT_STRING_PROPERTIES},
    "content_encoding": short_string | st.sampled_from(["utf-8", "gzip", "binary"]),
    "timestamp": st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 1, 1)),
    "priority": st.integers(0, 255), "delivery_mode": st.sampled_from([1, 2]),
})  # expiration and user_id are left out: the broker would drop the message or refuse the publish
# Now and then a short-string property of raw bytes that are not UTF-8 (py-amqp's decoder refuses those).
raw_property = st.one_of(st.none(), st.none(), st.none(), st.none(), st.none(), st.none(), st.none(),
                         st.tuples(st.sampled_from(SHORT_STRING_PROPERTIES),
                                   st.binary(min_size=1, max_size=20).map(lambda b: b"\xff" + b)))


@st.composite
def cloud_events(draw):
    """A valid CloudEvent of inventory.reserved with some attributes and data mutated or removed."""
    event = cloud_event("inventory.reserved", reservation(), correlationid=draw(short_text),
                        causationid=str(uuid.uuid4()))
    for attribute in draw(st.lists(st.sampled_from(ATTRIBUTES), max_size=4, unique=True)):
        event[attribute] = draw(json_value | wild_text | st.just(...))
    if draw(st.booleans()) and isinstance(event.get("data"), dict):
        field, value = draw(st.sampled_from(["orderId", "items", "extra"])), draw(json_value | st.just(...))
        event["data"] = {k: v for k, v in {**event["data"], field: value}.items() if v is not ...}
    return {k: v for k, v in event.items() if v is not ...}


bodies = st.one_of(
    st.binary(max_size=300).map(lambda b: ("bytes", b)),
    json_value.map(lambda v: ("json", v)),
    st.builds(lambda: cloud_event("inventory.reserved", reservation())).map(lambda v: ("valid", v)),
    cloud_events().map(lambda v: ("mutated", v)),
)


def encode(body) -> bytes:
    kind, value = body
    return value if kind == "bytes" else json.dumps(value).encode()


def encodable(message: AmqpMessage) -> bool:
    """Whether py-amqp can encode the message's properties at all (else it never reaches the broker)."""
    try:
        message._serialize_properties()
        return True
    except Exception:
        return False


def test_arbitrary_deliveries_are_each_handled_or_dead_lettered_and_the_worker_stays_up(eda, broker, namespace):
    # Given a running shipping worker
    worker = eda.worker("shipping")
    spy = broker.spy("order.shipped")
    work_queue = f"{namespace}.shipping"
    sent = {}  # message_id (marker first) -> (the event id a handle would name, a description of the example)
    channel = broker.conn.channel()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
                                     HealthCheck.large_base_example])
    @given(body=bodies, props=properties, raw=raw_property, hdrs=headers, retried=st.booleans(),
           message_id=short_string)
    def deliver(body, props, raw, hdrs, retried, message_id):
        # every example carries a unique marker in its message_id (a dead letter keeps it)
        marker = f"fuzz-{len(sent):05d}-"
        kind, value = body
        expected_id = None
        if kind in ("valid", "mutated") and isinstance(value.get("id"), str):
            value = {**value, "id": marker + value["id"]}  # unique, so no example is another's duplicate
            expected_id = value["id"]
        if raw is not None:
            props = {**props, raw[0]: raw[1]}
        message = AmqpMessage(encode((kind, value)), application_headers=hdrs,
                              **{**props, "message_id": (marker + message_id)[:255]})
        assume(encodable(message) and len(message.properties["message_id"].encode()) <= 255)
        # When it arrives through the events exchange, or through the default exchange as a retried copy
        exchange, routing_key = ("", work_queue) if retried else (f"{namespace}.events", "inventory.reserved")
        channel.basic_publish_confirm(message, exchange=exchange, routing_key=routing_key, mandatory=True)
        sent[message.properties["message_id"]] = (expected_id, f"{kind} {value!r:.300} {props!r:.300} {hdrs!r:.300}")

    deliver()
    channel.close()
    assert len(sent) >= EXAMPLES // 2, f"only {len(sent)} examples could be published"

    # Then every example is accounted for: handled (its reaction names it) or in the DLQ with a reason
    def unaccounted():
        handled = {e.get("causationid") for e in spy.of_type("order.shipped")}
        dead = {m.properties.get("message_id"): m for m in broker.dead_letters("shipping")}
        return {message_id: what for message_id, (event_id, what) in sent.items()
                if message_id not in dead and (event_id is None or event_id not in handled)}, dead

    try:
        wait_until(lambda: not unaccounted()[0], timeout=120, interval=0.5, message="every example accounted for")
    except AssertionError:
        missing, _ = unaccounted()
        alive = "running" if worker.proc.poll() is None else f"exited {worker.proc.returncode}"
        raise AssertionError(f"{len(missing)} of {len(sent)} examples neither handled nor dead-lettered (worker "
                             f"{alive}); the first: " + "\n".join(list(missing.values())[:5])
                             + "\nworker output (end):\n" + worker.output[-3000:]) from None
    _, dead = unaccounted()
    # each dead letter says why
    for message_id, letter in dead.items():
        assert letter.headers.get("eda-exception-type"), (message_id, letter.headers)
    # and the examples took both ways: many handled, many dead-lettered
    shipped = {e.get("causationid") for e in spy.of_type("order.shipped")}
    handled = [i for i, (event_id, _) in sent.items() if event_id in shipped]
    assert len(handled) >= 20 and len(set(sent) & set(dead)) >= 20, (len(handled), len(dead))
    # the worker is still the same running process, and nothing is left in its queues
    assert worker.proc.poll() is None, worker.output[-3000:]
    for queue in (work_queue, f"{work_queue}.retry.200ms", f"{work_queue}.retry.400ms"):
        wait_until(lambda q=queue: not broker.exists(q) or broker.depth(q) == 0, timeout=30, message=f"{queue} empty")
    assert worker.proc.poll() is None, worker.output[-3000:]
