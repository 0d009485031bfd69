"""Events built from data, validated against their contracts: from the wire's form (``eda publish``) or
from Python's (``Producer.publish``, ``Outbox.add``, scheduled events)."""

from eda.contracts import registry
from eda.contracts.envelope import Event, new_event


def build_event(event_name: registry.EventRef, data, source: str, correlation_id: str | None = None) -> Event:
    """An event from wire-form data (camelCase, as JSON has it), validated strictly (unknown fields too)."""
    contract = registry.get(event_name)
    attrs = {"correlation_id": correlation_id} if correlation_id else {}
    return new_event(contract, contract.load(data, strict=True), source, **attrs)


def python_event(event_name: registry.EventRef, data, source: str, correlation_id: str | None = None) -> tuple[Event, dict]:
    """An event from Python-side data (snake_case keys, Python values), validated as ``Producer.publish``
    and ``outbox.add`` take it; returned with its wire data, so that encoding it dumps nothing again."""
    contract = registry.get(event_name)
    loaded, wire = contract.from_python(data)
    attrs = {"correlation_id": correlation_id} if correlation_id else {}
    return new_event(contract, loaded, source, **attrs), wire  # the contract itself: an older version stays one
