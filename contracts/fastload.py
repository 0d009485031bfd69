"""A faster ``load`` for the common case of valid data, built from a marshmallow schema's own fields.

Validating a worker's every event through ``Schema.load`` costs tens of microseconds, most of it
marshmallow's per-schema and per-field machinery rather than the checks themselves. ``compile_load``
walks the schema once and returns a function that runs the same fields' deserialization and the
same validators directly: strings and strict integers of the expected JSON type are taken as they
are, lists of nested schemas are loaded item by item with the nested schema's own plan, any other
field goes through its own ``Field.deserialize``.

The fast path only ever accepts: on any doubt (a value of another type, a failing validator) it
gives up and the caller runs marshmallow's ``Schema.load``, whose result or error is the answer.
Schemas with load hooks, or that do not ignore unknown fields, are not compiled (None).
"""

from marshmallow import EXCLUDE, Schema, ValidationError, fields, missing


class GiveUp(Exception):
    """The fast path cannot decide: let marshmallow load the data."""


STR, INT, LIST, FIELD = range(4)


def compile_load(schema: Schema):
    """A function data -> loaded dict that raises GiveUp or ValidationError; None if not applicable."""
    if any(schema._hooks.values()) or schema.unknown != EXCLUDE:
        return None
    plan = []
    for name, field in schema.load_fields.items():
        attribute = field.attribute or name
        if "." in attribute:
            return None
        inner = None
        if type(field) is fields.String:
            kind = STR
        elif type(field) is fields.Integer and field.strict:
            kind = INT
        elif (type(field) is fields.List and type(field.inner) is fields.Nested
              and not field.inner.only and not field.inner.exclude and field.inner.unknown is None):
            inner = compile_load(field.inner.schema)
            if inner is None:
                return None
            kind = LIST
        else:
            kind = FIELD
        plan.append((field.data_key or name, attribute, field, kind, inner, tuple(field.validators)))
    return _loader(tuple(plan))


def _loader(plan):
    def load(data) -> dict:
        if type(data) is not dict:
            raise GiveUp
        out = {}
        for key, attribute, field, kind, inner, validators in plan:
            raw = data.get(key, missing)
            if (kind is STR and type(raw) is str) or (kind is INT and type(raw) is int):
                value = raw
            elif kind is LIST and type(raw) is list:
                value = [inner(item) for item in raw]
            else:
                out_value = field.deserialize(raw, key, data)  # runs the field's validators itself
                if out_value is not missing:
                    out[attribute] = out_value
                continue
            for validator in validators:
                if validator(value) is False:  # marshmallow treats a False return as a failure too
                    raise GiveUp
            out[attribute] = value
        return out

    return load
