"""Breaking changes of today's contracts against a baseline: ``eda contracts check --against FILE``, for CI.

The baseline is what ``eda contracts export --format jsonschema`` wrote (every version of every event),
kept in the repository. Compared version by version:

- a version already in the baseline must not change in place: a removed field, a field newly required
  (a new required field, or an optional one made required), a field whose type changed (a field made
  nullable included: an older consumer refuses the null) and a field taking fewer values (an ``enum``
  narrowed) are breaking (adding an optional field, or a value to an ``enum``, is not);
- a version the baseline has and today does not register must still be readable: a chain of upcasters
  from it to today's newest version (``@upcaster``), or its events in the queues can no longer be read;
- an event type the baseline has and today does not is breaking.
"""

import json
from pathlib import Path

from eda.contracts import versions
from eda.contracts.export import data_schema
from eda.contracts.registry import all_versions
from eda.errors import ConfigError


def load_baseline(path: str) -> dict[tuple[str, int], dict]:
    """(type, version) -> JSON Schema of the data, from an exported JSON Schema document."""
    where = f"--against {path}"
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"{where}: not JSON: {exc}") from None
    try:
        found = {}
        for schema in doc["$defs"].values():
            props = schema["properties"]
            found[(props["type"]["const"], int(schema.get("x-version", 1)))] = props["data"]
        return found
    except (KeyError, TypeError, AttributeError, ValueError):
        raise ConfigError(f"{where}: not a document of `eda contracts export --format jsonschema`") from None


def breaking_changes(baseline: dict[tuple[str, int], dict]) -> list[str]:
    """One line per breaking change of today's contracts against the baseline; none: compatible."""
    today = {(c.type, c.version): c for c in all_versions()}
    newest = {}
    for (event_type, version) in today:
        newest[event_type] = max(version, newest.get(event_type, 0))
    found = []
    for (event_type, version), old in sorted(baseline.items()):
        label = f"{event_type} v{version}"
        if event_type not in newest:
            found.append(f"{label}: the event type is gone")
        elif (event_type, version) in today:
            found += [f"{label}: {change}" for change in data_changes(old, data_schema(today[(event_type, version)]))]
        elif version > newest[event_type]:
            found.append(f"{label}: gone, and the newest version registered is {newest[event_type]}")
        elif not versions.can_upcast(event_type, version, newest[event_type]):
            found.append(f"{label}: no longer registered and no upcasters lead from it to version "
                         f"{newest[event_type]}: its events cannot be read")
    for event_type in sorted({t for t, _ in today}):
        found += versions.problems(event_type)
    return found


def data_changes(old: dict, new: dict, name: str = "") -> list[str]:
    """Breaking differences between two JSON Schemas of data (``name``: the dotted field they describe,
    empty for the data itself): fields removed, newly required, or of another type."""
    if _kind(old) != _kind(new):
        return [f"field {name or 'data'!r} changed type: {_shown(old)} -> {_shown(new)}"]
    narrowed = _values(old) - _values(new) if "enum" in new or "const" in new else set()
    if narrowed or (("enum" in new or "const" in new) and not ("enum" in old or "const" in old)):
        shown = ", ".join(sorted(narrowed)) if narrowed else "any value but the listed ones"
        return [f"field {name or 'data'!r} no longer takes {shown}"]
    if "properties" in old or "properties" in new:
        return _object_changes(old, new, name)
    if isinstance(old.get("items"), dict) and isinstance(new.get("items"), dict):
        return data_changes(old["items"], new["items"], f"{name}[]")
    return []


def _object_changes(old: dict, new: dict, name: str) -> list[str]:
    found = []
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    old_required, new_required = set(old.get("required", ())), set(new.get("required", ()))
    field = (lambda prop: f"{name}.{prop}") if name else (lambda prop: prop)
    for prop in old_props:
        if prop not in new_props:
            found.append(f"field {field(prop)!r} removed")
    for prop in sorted((new_required - old_required) & set(new_props)):
        if prop in old_props:
            found.append(f"field {field(prop)!r} is now required")
        else:
            found.append(f"field {field(prop)!r} is new and required (events without it are refused)")
    for prop in old_props:
        if prop in new_props:
            found += data_changes(old_props[prop], new_props[prop], field(prop))
    return found


def _values(schema: dict) -> set:
    """The values an ``enum`` (or ``const``) allows, as JSON text (any JSON value compares)."""
    listed = schema.get("enum", [schema["const"]] if "const" in schema else [])
    return {json.dumps(v, sort_keys=True) for v in listed}


def _kind(schema: dict) -> tuple:
    """What a value of the schema is: its JSON type(s) and format, or the kinds of its alternatives."""
    if "anyOf" in schema:
        return ("anyOf", tuple(sorted(str(_kind(s)) for s in schema["anyOf"])))
    kind = schema.get("type")
    kind = tuple(sorted(kind)) if isinstance(kind, list) else (kind,)
    return kind + ((schema["format"],) if "format" in schema else ())


def _shown(schema: dict) -> str:
    if "anyOf" in schema:
        return " or ".join(_shown(s) for s in schema["anyOf"])
    kind = schema.get("type", "any")
    text = "/".join(kind) if isinstance(kind, list) else str(kind)
    return f"{text} ({schema['format']})" if "format" in schema else text
