"""Faster ``load`` and ``dump`` for the common case, built from a marshmallow schema's own fields.

Validating a worker's every event through ``Schema.load`` costs tens of microseconds, most of it
marshmallow's per-schema and per-field machinery rather than the checks themselves. ``compile_load``
walks the schema once and returns a function that runs the same fields' deserialization and the
same validators directly: strings and strict integers of the expected JSON type are taken as they
are, lists of nested schemas are loaded item by item with the nested schema's own plan, any other
field goes through its own ``Field.deserialize``.

The fast path only ever accepts: on any doubt (a value of another type, a failing validator) it
gives up and the caller runs marshmallow's ``Schema.load``, whose result or error is the answer.
Schemas with load hooks, or that do not ignore unknown fields, are not compiled (None).

``compile_dump`` does the same for writing a handler's data to the wire: plain strings and integers
are copied, lists of nested schemas dumped item by item, every other field through its own
``Field.serialize``; anything else (an object rather than a dict, a key a dict method shadows) goes
to ``Schema.dump``.
"""

from marshmallow import EXCLUDE, Schema, fields, missing


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


def compile_dump(schema: Schema):
    """A function data dict -> wire dict that raises GiveUp when ``Schema.dump`` must decide; or None."""
    if any(schema._hooks.values()):
        return None
    plan = []
    for name, field in schema.dump_fields.items():
        attribute = field.attribute or name
        if "." in attribute or field.dump_default is not missing:
            return None
        inner = None
        if type(field) is fields.String:
            kind = STR
        elif type(field) is fields.Integer and not field.as_string:
            kind = INT
        elif type(field) is fields.List and type(field.inner) is fields.Nested and not field.inner.many:
            inner = compile_dump(field.inner.schema)
            if inner is None or field.inner.schema.many:
                return None
            kind = LIST
        else:
            kind = FIELD
        # A key missing from the data: marshmallow would then read the dict's attribute of that name.
        shadowed = hasattr(dict, attribute)
        plan.append((field.data_key or name, attribute, field, kind, inner, shadowed))
    return _dumper(tuple(plan), schema.get_attribute)


def _dumper(plan, accessor):
    def dump(data) -> dict:
        if type(data) is not dict:
            raise GiveUp
        out = {}
        for key, attribute, field, kind, inner, shadowed in plan:
            value = data.get(attribute, missing)
            if value is missing:
                if shadowed:
                    raise GiveUp
                continue
            if (kind is STR and type(value) is str) or (kind is INT and type(value) is int):
                out[key] = value
            elif kind is LIST and type(value) is list:
                out[key] = [inner(item) for item in value]
            else:
                out[key] = field.serialize(attribute, data, accessor=accessor)
        return out

    return dump
