"""The cost per event of decoding and validating a body, against kombu's own JSON decode of it."""

import time

from kombu.serialization import loads as kombu_loads

from benchmarks.bench import order_event
from eda.contracts.envelope import decode, encode


def per_call_us(fn, arg, n: int) -> float:
    """The best of three timed loops, in microseconds per call."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(n):
            fn(arg)
        best = min(best, time.perf_counter() - started)
    return best / n * 1e6


def decode_cost(n: int) -> dict:
    """µs per order.placed body: eda's decode (JSON, envelope, contract) and kombu's json decode."""
    event = order_event(1)
    body = encode(event)
    accepted = frozenset({"order.placed"})
    return {
        "body_bytes": len(body),
        "eda_decode_us": per_call_us(lambda b: decode(b, accepted), body, n),
        "kombu_json_decode_us": per_call_us(lambda b: kombu_loads(b, "application/json", "utf-8"), body, n),
        "eda_encode_us": per_call_us(encode, event, n),
    }
