"""Queue and exchange names, derived in one place: the wire contract depends on them.

AMQP names are short strings (at most 255 bytes), and RabbitMQ keeps names starting ``amq.`` to
itself. So a namespace is 1 to 100 characters of letters, digits and ``-_.:``, not ``amq`` nor
starting ``amq.``: that leaves 155 bytes for ``.{worker}.retry.{delay}``, the longest suffix eda adds.
Every name function checks the name it derives all the same (a long plugin worker name, say).
"""

import hashlib
import re

from eda.errors import ConfigError

MAX_NAME_BYTES = 255  # AMQP short string
MAX_NAMESPACE = 100
MAX_DELAY_MS = 2**32 - 1  # the largest retry delay (about 49.7 days); longer TTLs the broker may refuse
NAMESPACE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"  # RabbitMQ's pseudo-queue a requester's replies come to
REQUEST_FAILED = "eda.request.failed"  # the type of the reply a request gets when its handler failed


def check_namespace(namespace: str) -> str:
    """Return ``namespace`` if every name derived from it can fit; else raise ConfigError saying why."""
    where = "--namespace (EDA_NAMESPACE)"
    if not isinstance(namespace, str) or not NAMESPACE_PATTERN.fullmatch(namespace):
        shown = namespace if len(str(namespace)) <= 40 else f"{str(namespace)[:40]}..."
        raise ConfigError(f"{where}: {shown!r} is not a namespace: use letters, digits and - _ . : "
                          f"(starting with a letter or digit)")
    if len(namespace) > MAX_NAMESPACE:
        raise ConfigError(f"{where}: {len(namespace)} characters is too long; at most {MAX_NAMESPACE}, so that "
                          f"queue names with their suffixes fit AMQP's {MAX_NAME_BYTES} bytes")
    if namespace.lower() == "amq" or namespace.lower().startswith("amq."):
        raise ConfigError(f"{where}: names starting 'amq.' are reserved by RabbitMQ; choose another namespace")
    return namespace


def _checked(name: str) -> str:
    if len(name) > MAX_NAME_BYTES // 4 and len(name.encode("utf-8")) > MAX_NAME_BYTES:  # cheap for short names
        raise ConfigError(f"the name {name[:60]}... is {len(name.encode('utf-8'))} bytes long; AMQP names hold at "
                          f"most {MAX_NAME_BYTES}: use a shorter namespace or worker name")
    return name


def events_exchange(namespace: str) -> str:
    """The durable topic exchange every event is published to."""
    return _checked(f"{namespace}.events")


def dead_letter_exchange(namespace: str) -> str:
    """The direct exchange that routes failed events to their worker's DLQ."""
    return _checked(f"{namespace}.dlx")


def work_queue(namespace: str, worker: str) -> str:
    """The durable queue a named worker consumes from."""
    return _checked(f"{namespace}.{worker}")


def dead_letter_queue(namespace: str, worker: str) -> str:
    """Where a worker's failed events end, with the reason in their headers."""
    return _checked(f"{namespace}.{worker}.dlq")


def partitions_exchange(namespace: str, worker: str, by_flow: bool = False) -> str:
    """An ordered worker's consistent-hash exchange: it spreads the worker's events over its partitions.
    A worker ordered by the flow has one of another name (``flow-partitions``): RabbitMQ keeps an
    exchange's first arguments whatever a later declare asks, so what it hashes is in its name."""
    return _checked(f"{namespace}.{worker}.{'flow-partitions' if by_flow else 'partitions'}")


def partition_queue(namespace: str, worker: str, index: int) -> str:
    """One partition of an ordered worker: its events are handled one at a time, in queue order."""
    return _checked(f"{namespace}.{worker}.p{index}")


# The header the consistent-hash exchange hashes (its ``hash-header``): the value of the event's
# partition key field, set by every eda publisher and by any other client following the wire contract.
PARTITION_KEY_HEADER = "eda-partition-key"

# ``ordered_by = FLOW``: a worker ordered by the flow, not by a data field. Its consistent-hash exchange
# hashes the AMQP ``correlation_id`` property (``hash-property``), which every event of one flow shares
# (a reaction keeps its cause's): an order's events, whatever their contracts' keys. Not a field name.
FLOW = "@correlation_id"
FLOW_PROPERTY = "correlation_id"


def retry_queue(namespace: str, worker: str, delay_ms: int) -> str:
    """A TTL queue that holds an event for ``delay_ms`` and then returns it to the worker's queue."""
    return _checked(f"{namespace}.{worker}.retry.{format_delay(delay_ms)}")


def format_delay(delay_ms: int) -> str:
    """Render a delay the way users write it: 500ms, 5s, 2m, 1h."""
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if delay_ms >= size and delay_ms % size == 0:
            return f"{delay_ms // size}{unit}"
    return f"{delay_ms}ms"


def parse_delay(text: str) -> int:
    """Parse ``500ms``, ``5s``, ``2m``, ``1h`` or plain seconds into milliseconds (at most MAX_DELAY_MS)."""
    text = text.strip().lower()
    for unit, size in (("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("", 1000)):
        number = text[: -len(unit)] if unit else text
        if (not unit or text.endswith(unit)) and number.replace(".", "", 1).isascii() \
                and number.replace(".", "", 1).isdigit():
            delay = int(float(number) * size)
            if delay > MAX_DELAY_MS:
                raise ValueError(f"{text!r} is too long a delay (at most {MAX_DELAY_MS // 3_600_000}h)")
            return delay
    raise ValueError(f"not a duration: {text!r} (use e.g. 500ms, 5s, 2m, 1h)")


def schema_name(namespace: str) -> str:
    """The PostgreSQL schema of a namespace: the namespace itself, or a prefix and a hash past 63 bytes."""
    if len(namespace.encode()) <= 63:
        return namespace
    return namespace[:40] + "-" + hashlib.sha256(namespace.encode()).hexdigest()[:16]
