"""Exchanges, queues and routing of the in-memory broker, as RabbitMQ routes.

The default exchange routes to the queue named by the routing key; direct, topic, fanout and headers
exchanges as AMQP 0-9-1 says; ``x-consistent-hash`` (RabbitMQ's plugin) spreads messages over its
bindings by the hash of the routing key, of the header its ``hash-header`` argument names, or of the
property named by ``hash-property``: each binding's key is its weight (buckets on a jump consistent
hash), so one value always reaches one queue while the bindings stay. Exchanges bound to exchanges
pass each message on with its routing key.
"""

import functools
import hashlib

HASHED_PROPERTIES = ("message_id", "correlation_id", "timestamp")


class Binding:
    __slots__ = ("target", "key", "arguments")

    def __init__(self, target, key: str, arguments: dict):
        self.target, self.key, self.arguments = target, key, arguments


class Exchange:
    TYPES = ("direct", "topic", "fanout", "headers", "x-consistent-hash")

    def __init__(self, name: str, kind: str, *, durable=False, auto_delete=False, arguments=None):
        self.name, self.kind = name, kind
        self.durable, self.auto_delete = durable, auto_delete
        self.arguments = dict(arguments or {})
        self.bindings: list[Binding] = []  # in the order they were made (a hash ring's buckets follow it)

    def bind(self, target, key: str, arguments=None) -> None:
        arguments = dict(arguments or {})
        if not any(b.target is target and b.key == key and b.arguments == arguments for b in self.bindings):
            self.bindings.append(Binding(target, key, arguments))

    def unbind(self, target, key: str, arguments=None) -> None:
        arguments = dict(arguments or {})
        self.bindings = [b for b in self.bindings
                         if not (b.target is target and b.key == key and b.arguments == arguments)]

    def unbind_all(self, target) -> None:
        self.bindings = [b for b in self.bindings if b.target is not target]

    def binding_problem(self, key: str) -> str | None:
        """Why a binding with ``key`` is refused (a consistent-hash weight must be a whole number >= 1)."""
        if self.kind != "x-consistent-hash":
            return None
        try:
            weight = int(key)
        except (TypeError, ValueError):
            return f"The binding key must be an integer: {key!r}"
        return "The binding key must be greater than 0" if weight < 1 else None

    def targets(self, routing_key: str, properties) -> list:
        """The queues and exchanges a message with ``routing_key`` goes to from here; ``properties()``
        gives its decoded properties, read only where the exchange type needs them."""
        if self.kind == "fanout":
            return [b.target for b in self.bindings]
        if self.kind == "direct":
            return [b.target for b in self.bindings if b.key == routing_key]
        if self.kind == "topic":
            return [b.target for b in self.bindings if topic_matches(b.key, routing_key)]
        if self.kind == "headers":
            headers = properties().get("application_headers") or {}
            return [b.target for b in self.bindings if headers_match(b.arguments, headers)]
        return self._hashed(routing_key, properties)

    def _hashed(self, routing_key: str, properties) -> list:
        if not self.bindings:
            return []
        if "hash-header" in self.arguments:
            value = (properties().get("application_headers") or {}).get(self.arguments["hash-header"])
        elif "hash-property" in self.arguments:
            value = properties().get(self.arguments["hash-property"])
        else:
            value = routing_key
        weights = [int(b.key) for b in self.bindings]
        bucket = jump_hash(stable_hash(value), sum(weights))
        for binding, weight in zip(self.bindings, weights):
            if bucket < weight:
                return [binding.target]
            bucket -= weight
        return []


class Queue:
    def __init__(self, name: str, *, durable=False, auto_delete=False, arguments=None, owner=None):
        self.name = name
        self.durable, self.auto_delete = durable, auto_delete
        self.arguments = dict(arguments or {})
        self.owner = owner  # the connection of an exclusive queue
        self.messages: list = []  # ready messages, in queue order (a requeue goes back to its place)
        self.consumers: list = []
        self.had_consumer = False  # an auto-delete queue goes once its last consumer went
        self._next = 0  # round robin among the consumers

    @property
    def ttl_ms(self) -> int | None:
        ttl = self.arguments.get("x-message-ttl")
        return ttl if isinstance(ttl, int) and not isinstance(ttl, bool) and ttl >= 0 else None

    @property
    def quorum(self) -> bool:
        return self.arguments.get("x-queue-type") == "quorum"

    @property
    def single_active(self) -> bool:
        return self.arguments.get("x-single-active-consumer") is True

    def next_consumer(self):
        """The consumer the next message goes to: the active one of a single-active-consumer queue
        (the first registered), else the next with room in its prefetch, in turn; None if none has room."""
        if self.single_active:
            active = self.consumers[0] if self.consumers else None
            return active if active is not None and active.ready else None
        count = len(self.consumers)
        for i in range(count):
            consumer = self.consumers[(self._next + i) % count]
            if consumer.ready:
                self._next = (self._next + i + 1) % count
                return consumer
        return None


def route(broker, exchange: Exchange, routing_key: str, properties) -> list[Queue]:
    """The queues a message published to ``exchange`` reaches, each once, through exchange-to-exchange bindings."""
    if exchange.name == "":
        queue = broker.queues.get(routing_key)
        return [queue] if queue is not None else []
    reached, seen, pending = [], {exchange.name}, [exchange]
    while pending:
        for target in pending.pop(0).targets(routing_key, properties):
            if isinstance(target, Queue):
                if target not in reached:
                    reached.append(target)
            elif target.name not in seen:
                seen.add(target.name)
                pending.append(target)
    return reached


@functools.lru_cache(maxsize=4096)
def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: ``*`` is one word, ``#`` zero or more, words separated by dots."""
    return _words_match(tuple(pattern.split(".")), tuple(key.split(".")))


def _words_match(pattern: tuple, words: tuple) -> bool:
    if not pattern:
        return not words
    if pattern[0] == "#":
        return _words_match(pattern[1:], words) or (bool(words) and _words_match(pattern, words[1:]))
    return bool(words) and pattern[0] in ("*", words[0]) and _words_match(pattern[1:], words[1:])


def headers_match(arguments: dict, headers: dict) -> bool:
    wanted = {k: v for k, v in arguments.items() if not k.startswith("x-")}
    hits = [k in headers and (v is None or headers[k] == v) for k, v in wanted.items()]
    return any(hits) if arguments.get("x-match") == "any" else all(hits)


def stable_hash(value) -> int:
    """A 64-bit hash of a header or property value, the same in every process (no hash randomisation)."""
    text = b"\0undefined" if value is None else value if isinstance(value, bytes) else str(value).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def jump_hash(key: int, buckets: int) -> int:
    """Lamping and Veach's jump consistent hash: the bucket of ``key`` among ``buckets``."""
    bucket, jump = -1, 0
    while jump < buckets:
        bucket = jump
        key = (key * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        jump = int((bucket + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return bucket
