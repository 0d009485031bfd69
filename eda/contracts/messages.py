"""What is wrong with an event's data, in words a user can act on: the keys a schema does not know (with
a suggestion), the values its fields cannot write, and marshmallow's nested error messages flattened
into one line, keyed by the Python names a producer wrote. ``Contract`` (eda.contracts.registry) raises
its ContractErrors with them."""

import difflib
import re

from marshmallow import Schema, fields as mfields


def _nested(field):
    """The schema of a nested field or of a list of nested items, else None."""
    if isinstance(field, mfields.List):
        field = field.inner
    return field.schema if isinstance(field, mfields.Nested) else None


def _hint(key: str, known) -> str:
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()
    guess = snake if snake in known else next(iter(difflib.get_close_matches(key, known, 1)), None)
    return f" (did you mean '{guess}'?)" if guess else ""


def unknown_keys(schema: Schema, data: dict, prefix: str = "") -> list[str]:
    """Python-side keys the schema does not know, nested items included, each with a suggestion."""
    known = {(f.attribute or n): f for n, f in schema.fields.items()}
    problems = []
    for key, value in data.items():
        field = known.get(key)
        if field is None:
            problems.append(f"unknown field '{prefix}{key}'{_hint(str(key), known)}")
            continue
        nested = _nested(field)
        if nested is None:
            continue
        if isinstance(field, mfields.List) and isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    problems += unknown_keys(nested, item, f"{prefix}{key}.{i}.")
        elif isinstance(value, dict):
            problems += unknown_keys(nested, value, f"{prefix}{key}.")
    return problems


UNKNOWN = "Unknown field."  # marshmallow's message for a key its schema does not know


def _camel(name: str) -> str:
    return re.sub(r"_(.)", lambda m: m.group(1).upper(), name)


def _into_nested(field, value, walk):
    """``walk(messages, schema)`` applied to a nested field's messages (each item's, for a list of
    nested items); any other field's messages as they are."""
    nested = _nested(field) if field is not None else None
    if nested is None or not isinstance(value, dict):
        return value
    if isinstance(field, mfields.List):
        return {i: walk(v, nested) for i, v in value.items()}
    return walk(value, nested)


def wire_hints(messages, schema: Schema):
    """marshmallow's error messages on wire data, where a key is unknown with a suggestion: the wire
    name it is close to (``order_id`` -> ``orderId``, the Python name written where the wire's is due)."""
    if not isinstance(messages, dict):
        return messages
    by_key = {(f.data_key or n): f for n, f in schema.fields.items()}
    camel = {_camel(name): name for name in by_key}
    out = {}
    for key, value in messages.items():
        field = by_key.get(key)
        if field is None and value == [UNKNOWN]:
            guess = camel.get(_camel(str(key)))
            value = [f"Unknown field{f' (did you mean {guess!r}?)' if guess else _hint(str(key), by_key)}."]
        out[key] = _into_nested(field, value, wire_hints)
    return out


def unwritable(schema: Schema, data: dict) -> str:
    """Which top-level fields cannot be written to the wire, for the error message."""
    bad = []
    for name, field in schema.dump_fields.items():
        attribute = field.attribute or name
        try:
            field.serialize(attribute, data, accessor=schema.get_attribute)
        except Exception as exc:
            reason = field.error_messages.get("invalid") or f"{type(exc).__name__}: {exc}"
            bad.append(f"{attribute}: {reason} ({data.get(attribute)!r})")
    return "; ".join(bad) or "a value cannot be written as JSON"


def python_names(messages, schema: Schema):
    """marshmallow's error messages, keyed by wire names, re-keyed by the Python names."""
    if not isinstance(messages, dict):
        return messages
    by_key = {(f.data_key or n): (f.attribute or n, f) for n, f in schema.fields.items()}
    out = {}
    for key, value in messages.items():
        name, field = by_key.get(key, (key, None))
        out[name] = _into_nested(field, value, python_names)
    return out


def describe(messages, prefix="") -> str:
    """Flatten marshmallow's nested error messages into ``field: reason; other.0.sku: reason``."""
    parts = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            parts.append(describe(value, f"{prefix}{key}."))
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        parts.append(f"{prefix.rstrip('.')}: {' '.join(messages)}" if prefix else " ".join(messages))
    else:
        parts.extend(describe(m, prefix) for m in messages)
    return "; ".join(parts)
