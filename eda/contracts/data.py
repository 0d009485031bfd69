"""``EventData``: the base of every event's data schema, snake_case in Python and camelCase on the wire."""

from marshmallow import EXCLUDE, Schema


def camel_case(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class EventData(Schema):
    """Base of every event's data: camelCase keys on the wire, unknown keys ignored by consumers
    (so a producer may add an optional field without breaking running workers)."""

    class Meta:
        unknown = EXCLUDE

    def on_bind_field(self, field_name, field_obj):
        field_obj.data_key = camel_case(field_obj.data_key or field_name)
