"""Queue and exchange names, derived in one place: the wire contract depends on them."""


def events_exchange(namespace: str) -> str:
    """The durable topic exchange every event is published to."""
    return f"{namespace}.events"


def dead_letter_exchange(namespace: str) -> str:
    """The direct exchange that routes failed events to their worker's DLQ."""
    return f"{namespace}.dlx"


def work_queue(namespace: str, worker: str) -> str:
    """The durable queue a named worker consumes from."""
    return f"{namespace}.{worker}"


def dead_letter_queue(namespace: str, worker: str) -> str:
    """Where a worker's failed events end, with the reason in their headers."""
    return f"{namespace}.{worker}.dlq"


def retry_queue(namespace: str, worker: str, delay_ms: int) -> str:
    """A TTL queue that holds an event for ``delay_ms`` and then returns it to the worker's queue."""
    return f"{namespace}.{worker}.retry.{format_delay(delay_ms)}"


def format_delay(delay_ms: int) -> str:
    """Render a delay the way users write it: 500ms, 5s, 2m, 1h."""
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if delay_ms >= size and delay_ms % size == 0:
            return f"{delay_ms // size}{unit}"
    return f"{delay_ms}ms"


def parse_delay(text: str) -> int:
    """Parse ``500ms``, ``5s``, ``2m``, ``1h`` or plain seconds into milliseconds."""
    text = text.strip().lower()
    for unit, size in (("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)):
        if text.endswith(unit) and text[: -len(unit)].replace(".", "", 1).isdigit():
            return int(float(text[: -len(unit)]) * size)
    if text.replace(".", "", 1).isdigit():
        return int(float(text) * 1000)
    raise ValueError(f"not a duration: {text!r} (use e.g. 500ms, 5s, 2m, 1h)")
