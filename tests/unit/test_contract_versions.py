"""Contracts that evolve: versions of one event type, upcasters between them, the version on the wire,
the exports showing every version, and the check of today's contracts against a baseline."""

import json

import jsonschema
import orjson
import pytest
from marshmallow import fields

from eda import EventData, Worker, contract, handles, upcaster
from eda.contracts import registry
from eda.contracts.compatibility import breaking_changes, data_changes, load_baseline
from eda.contracts.envelope import decode, encode, new_event, to_wire
from eda.contracts.export import asyncapi_document, jsonschema_document
from eda.errors import ContractError, DefinitionError, UnknownEvent
from eda.fields import Id
from tests.unit.test_contract_export import ASYNCAPI_SCHEMA

V1_BODY = {"specversion": "1.0", "id": "e-1", "source": "old/client", "type": "parcel.sent",
           "data": {"parcelId": "p-1", "weight": 2}}


@pytest.fixture
def parcels(own_contracts):
    """parcel.sent in two versions: v2 adds a required carrier; an upcaster fills it for v1 events."""

    @contract("parcel.sent")
    class ParcelSentV1(EventData):
        parcel_id = Id(required=True)
        weight = fields.Integer(required=True)

    @contract("parcel.sent", version=2)
    class ParcelSent(EventData):
        parcel_id = Id(required=True)
        weight = fields.Integer(required=True)
        carrier = fields.String(required=True)

    @upcaster("parcel.sent", from_version=1)
    def add_carrier(data):
        return {**data, "carrier": "post"}

    return ParcelSentV1, ParcelSent


def body(**changes) -> bytes:
    return orjson.dumps({**V1_BODY, **changes})


def test_the_newest_version_is_the_contract_of_its_type_and_each_class_names_its_own(parcels):
    v1, v2 = parcels
    assert registry.get("parcel.sent").version == 2 and registry.get("parcel-sent") is registry.get(v2)
    assert registry.get(v1).version == 1 and registry.version("parcel.sent", 1) is registry.get(v1)
    assert [c.version for c in registry.all_versions() if c.type == "parcel.sent"] == [1, 2]
    with pytest.raises(UnknownEvent, match="parcel.sent has no version 3; registered: 1, 2"):
        registry.version("parcel.sent", 3)


def test_an_event_without_dataschema_is_version_1_and_is_upcast_to_the_newest(parcels):
    event = decode(body())
    assert event.data == {"parcel_id": "p-1", "weight": 2, "carrier": "post"}
    assert event.version is None  # what handlers see: the newest version


def test_an_event_of_the_newest_version_names_it_in_dataschema_and_is_read_as_it_is(parcels):
    event = new_event("parcel.sent", {"parcel_id": "p-2", "weight": 1, "carrier": "ups"}, "eda/test")
    wire = to_wire(event)
    assert wire["dataschema"] == "urn:eda:events:parcel.sent:v2"
    assert decode(encode(event)).data["carrier"] == "ups"


def test_an_older_version_published_by_its_class_is_written_as_that_version(parcels):
    v1, _ = parcels
    event = new_event(v1, {"parcel_id": "p-3", "weight": 4}, "eda/test")
    assert "dataschema" not in to_wire(event)  # version 1: as every client wrote it before versions
    assert decode(encode(event)).data["carrier"] == "post"


def test_a_type_with_one_version_has_no_dataschema_on_the_wire(own_contracts):
    @contract("plain.happened")
    class PlainHappened(EventData):
        thing = Id(required=True)

    assert "dataschema" not in to_wire(new_event("plain.happened", {"thing": "t"}, "eda/test"))


def test_a_reaction_of_an_older_version_keeps_its_version(parcels):
    from eda.worker import Context

    v1, _ = parcels
    cause = decode(body())
    ctx = Context(cause, "eda/test")
    reaction = ctx.publish(v1, {"parcel_id": "p-4", "weight": 1})
    assert reaction.version == 1 and "dataschema" not in orjson.loads(ctx.reactions[0][1])


@pytest.mark.parametrize("dataschema, reason", [
    ("https://schemas.example/parcel.json", "is not urn:eda:events:parcel.sent:vN"),
    ("urn:eda:events:other.type:v2", "is not urn:eda:events:parcel.sent:vN"),
    (42, "is not urn:eda:events:parcel.sent:vN"),
])
def test_a_dataschema_that_is_not_an_eda_schema_id_of_the_type_is_a_contract_failure(parcels, dataschema, reason):
    with pytest.raises(ContractError, match=reason):
        decode(body(dataschema=dataschema))


def test_another_producers_own_dataschema_is_ignored_while_the_type_has_one_version(own_contracts):
    @contract("plain.noted")
    class PlainNoted(EventData):
        thing = Id(required=True)

    noted = {**V1_BODY, "type": "plain.noted", "data": {"thing": "t"}}
    assert decode(orjson.dumps({**noted, "dataschema": "https://registry.example/plain.json"})).data == {"thing": "t"}
    with pytest.raises(ContractError, match="is not urn:eda:events:plain.noted:vN"):
        decode(orjson.dumps({**noted, "dataschema": "urn:eda:events:other.type:v1"}))


def test_a_newer_version_than_known_is_read_by_the_newest_schema_known_here(parcels):
    newer = body(dataschema="urn:eda:events:parcel.sent:v3",
                 data={"parcelId": "p-5", "weight": 1, "carrier": "dhl", "insured": True})
    assert decode(newer).data == {"parcel_id": "p-5", "weight": 1, "carrier": "dhl"}  # unknown fields ignored
    lacking = body(dataschema="urn:eda:events:parcel.sent:v3", data={"parcelId": "p-5", "weight": 1})
    with pytest.raises(ContractError, match=r"version 3 is newer than the newest known here \(2\).*carrier"):
        decode(lacking)


def test_an_upcaster_that_fails_is_a_contract_failure_naming_it(own_contracts):
    @contract("box.packed")
    class BoxPackedV1(EventData):
        box = Id(required=True)

    @contract("box.packed", version=2)
    class BoxPacked(EventData):
        box = Id(required=True)
        size = fields.Integer(required=True)

    @upcaster(BoxPacked, from_version=1)
    def broken(data):
        return {**data, "size": data["sizeInCm"]}

    with pytest.raises(ContractError, match=r"upcasting version 1 failed in .*broken: KeyError: 'sizeInCm'"):
        decode(orjson.dumps({**V1_BODY, "type": "box.packed", "data": {"box": "b"}}))


def test_a_worker_handling_a_type_whose_older_version_cannot_be_upcast_fails_at_start(own_contracts):
    @contract("crate.moved")
    class CrateMovedV1(EventData):
        crate = Id(required=True)

    @contract("crate.moved", version=2)
    class CrateMoved(EventData):
        crate = Id(required=True)
        floor = fields.Integer(required=True)

    class Mover(Worker):
        name = "mover"

        @handles("crate.moved")
        def move(self, event, ctx):
            pass

    with pytest.raises(DefinitionError, match=r"crate.moved: version 1 cannot be read as version 2: no upcaster "
                                              r"from version 1 \(@upcaster\('crate.moved', from_version=1\)\)"):
        Mover.handlers


def test_one_version_registered_twice_with_different_schemas_is_an_error(parcels):
    with pytest.raises(DefinitionError, match="version 2 is registered twice with different schemas"):
        @contract("parcel.sent", version=2)
        class Other(EventData):
            parcel_id = Id(required=True)


def test_versions_of_one_type_share_one_name(parcels):
    with pytest.raises(DefinitionError, match="must share one name"):
        @contract("parcel.sent", name="parcel-shipped", version=3)
        class Renamed(EventData):
            parcel_id = Id(required=True)


def test_the_exports_show_every_version(parcels):
    doc = jsonschema_document()
    assert doc["$defs"]["parcel.sent"]["$id"] == "urn:eda:events:parcel.sent:v2"
    assert doc["$defs"]["parcel.sent:v1"]["$id"] == "urn:eda:events:parcel.sent:v1"
    assert doc["$defs"]["parcel.sent"]["properties"]["dataschema"]["const"] == "urn:eda:events:parcel.sent:v2"
    v2_event = to_wire(new_event("parcel.sent", {"parcel_id": "p", "weight": 1, "carrier": "c"}, "eda/t"))
    jsonschema.validate(v2_event, doc["$defs"]["parcel.sent"])
    jsonschema.validate({**V1_BODY, "time": "2026-01-01T00:00:00Z"}, doc["$defs"]["parcel.sent:v1"])

    class Receiver(Worker):
        name = "receiver"

        @handles("parcel.sent")
        def receive(self, event, ctx):
            pass

    asyncapi = asyncapi_document("shop", {"receiver": Receiver})
    messages = asyncapi["components"]["messages"]
    assert messages["parcel.sent"]["x-version"] == 2 and messages["parcel.sent:v1"]["x-version"] == 1
    assert set(asyncapi["channels"]["parcel.sent"]["messages"]) == {"parcel.sent", "parcel.sent:v1"}
    assert len(asyncapi["operations"]["receiver.receive.parcel.sent"]["messages"]) == 2
    schema = json.loads(ASYNCAPI_SCHEMA.read_text())
    assert [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(asyncapi)] == []


# The check against a baseline

def schema(properties: dict, required=()) -> dict:
    return {"type": "object", "properties": properties, "required": list(required)}


STRING, INTEGER = {"type": "string"}, {"type": "integer"}


@pytest.mark.parametrize("new, expected", [
    (schema({"a": STRING, "b": INTEGER}, ["a"]), []),
    (schema({"a": STRING, "b": INTEGER, "c": STRING}, ["a"]), []),  # an optional field added
    (schema({"a": STRING}, ["a"]), ["field 'b' removed"]),
    (schema({"a": STRING, "b": INTEGER}, ["a", "b"]), ["field 'b' is now required"]),
    (schema({"a": STRING, "b": INTEGER, "c": STRING}, ["a", "c"]),
     ["field 'c' is new and required (events without it are refused)"]),
    (schema({"a": INTEGER, "b": INTEGER}, ["a"]), ["field 'a' changed type: string -> integer"]),
    (schema({"a": {"type": ["string", "null"]}, "b": INTEGER}, ["a"]),
     ["field 'a' changed type: string -> string/null"]),
    (schema({"a": {"type": "string", "enum": ["x"]}, "b": INTEGER}, ["a"]),
     ["field 'a' no longer takes any value but the listed ones"]),
])
def test_data_changes_name_what_breaks_a_consumer(new, expected):
    assert data_changes(schema({"a": STRING, "b": INTEGER}, ["a"]), new) == expected


def test_an_enum_may_grow_but_not_shrink():
    old = schema({"size": {"type": "string", "enum": ["S", "M", "L"]}})
    assert data_changes(old, schema({"size": {"type": "string", "enum": ["S", "M", "L", "XL"]}})) == []
    assert data_changes(old, schema({"size": {"type": "string", "enum": ["M", "L"]}})) == \
        ["field 'size' no longer takes \"S\""]


def test_data_changes_look_into_nested_objects_and_list_items():
    old = schema({"items": {"type": "array", "items": schema({"sku": STRING, "qty": INTEGER}, ["sku"])}})
    new = schema({"items": {"type": "array", "items": schema({"sku": INTEGER}, ["sku", "qty"])}})
    assert data_changes(old, new) == ["field 'items[].qty' removed", "field 'items[].sku' changed type: "
                                                                      "string -> integer"]


def baseline_of_now() -> dict:
    """Today's contracts as a baseline, read the way `eda contracts check --against` reads its file."""
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".json") as file:
        json.dump(jsonschema_document(), file)
        file.flush()
        return load_baseline(file.name)


def test_today_against_its_own_export_has_no_breaking_change(parcels):
    assert breaking_changes(baseline_of_now()) == []


def test_a_new_version_with_an_upcaster_from_the_baseline_is_compatible(own_contracts):
    @contract("tag.added")
    class TagAddedV1(EventData):
        tag = Id(required=True)

    baseline = baseline_of_now()
    registry._CONTRACTS.pop("tag.added"), registry._BY_KEY.pop("tag.added"), registry._BY_KEY.pop("tag-added")
    from eda.contracts import versions
    versions._VERSIONS.pop("tag.added")

    @contract("tag.added", version=2)
    class TagAdded(EventData):
        tag = Id(required=True)
        color = fields.String(required=True)

    assert breaking_changes(baseline) == ["tag.added v1: no longer registered and no upcasters lead from it to "
                                          "version 2: its events cannot be read"]

    @upcaster("tag.added", 1)
    def red(data):
        return {**data, "color": "red"}

    assert breaking_changes(baseline) == []


def test_a_type_gone_or_changed_in_place_is_breaking(parcels):
    baseline = baseline_of_now()
    baseline[("gone.event", 1)] = schema({"x": STRING})
    now = baseline[("parcel.sent", 2)]
    baseline[("parcel.sent", 2)] = schema({**now["properties"], "insured": STRING}, now["required"])
    assert breaking_changes(baseline) == ["gone.event v1: the event type is gone",
                                          "parcel.sent v2: field 'insured' removed"]


def test_events_built_for_producers_and_the_outbox_keep_the_version_their_class_names(parcels):
    from eda.contracts.building import build_event, python_event

    v1, _ = parcels
    event, wire = python_event(v1, {"parcel_id": "p-6", "weight": 2}, "eda/test")
    assert event.version == 1 and "dataschema" not in to_wire(event, wire)
    assert build_event(v1, {"parcelId": "p-7", "weight": 2}, "eda/test").version == 1
    assert python_event("parcel.sent", {"parcel_id": "p", "weight": 1, "carrier": "c"}, "eda/t")[0].version is None
