"""Contracts that evolve, on a real broker: a worker on version 2 handles version 1 events from an old
client as version 2 data; `eda publish` writes the version in `dataschema`; `eda contracts check`
compares the contracts with an exported baseline, and a worker that cannot read an older version
does not start."""

import json
import textwrap

import pytest

from tests.support import handled

pytestmark = pytest.mark.integration

PARCELS_V1 = '''
    from marshmallow import fields
    from eda import EventData, contract
    from eda.fields import Id


    @contract("parcel.sent")
    class ParcelSentV1(EventData):
        parcel_id = Id(required=True)
        weight = fields.Integer(required=True)


    @contract("parcel.labelled", published_by=("labeler",))
    class ParcelLabelled(EventData):
        parcel_id = Id(required=True)
        carrier = fields.String(required=True)
'''

PARCELS_V2 = PARCELS_V1 + '''

    @contract("parcel.sent", version=2)
    class ParcelSent(EventData):
        parcel_id = Id(required=True)
        weight = fields.Integer(required=True)
        carrier = fields.String(required=True)
'''

UPCASTER = '''

    from eda import upcaster


    @upcaster("parcel.sent", from_version=1)
    def by_post(data):
        return {**data, "carrier": "post"}  # every parcel went by post before carriers were named
'''

WORKER = '''

    from eda import Worker, handles


    class Labeler(Worker):
        name = "labeler"

        @handles("parcel.sent")
        def label(self, event, ctx):
            ctx.publish("parcel.labelled", {"parcel_id": event.data["parcel_id"], "carrier": event.data["carrier"]})
'''


def app(folder, name: str, *parts: str) -> dict:
    (folder / f"{name}.py").write_text(textwrap.dedent("".join(parts)).lstrip())
    return {"EDA_APP": name}


@pytest.fixture
def labeler_queues(eda, broker, namespace):
    yield
    eda.stop_all()
    for suffix in ("", ".dlq", ".retry.200ms", ".retry.400ms"):
        broker.channel.queue_delete(f"{namespace}.labeler{suffix}")


def test_a_worker_on_version_2_handles_an_old_clients_version_1_events_as_version_2(eda, broker, tmp_path,
                                                                                    labeler_queues):
    eda.cwd = tmp_path
    env = app(tmp_path, "parcels", PARCELS_V2, UPCASTER, WORKER)
    worker = eda.worker("labeler", **env)
    spy = broker.spy("parcel.*")
    # An old client writes version 1: no dataschema, no carrier.
    broker.publish("parcel.sent", {"specversion": "1.0", "id": "old-1", "source": "old/client", "type": "parcel.sent",
                                   "data": {"parcelId": "p-1", "weight": 3}},
                   content_type="application/cloudevents+json")
    # eda publishes the newest version, and says so in dataschema.
    code, output = eda.run("publish", "parcel-sent", "--data", json.dumps({"parcelId": "p-2", "weight": 1,
                                                                           "carrier": "ups"}), **env)
    assert code == 0, output
    worker.wait_for_log(handled("parcel.sent", worker="labeler"))
    labelled = {e["data"]["parcelId"]: e["data"]["carrier"] for e in spy.wait_for("parcel.labelled", count=2)}
    assert labelled == {"p-1": "post", "p-2": "ups"}
    [new] = [e for e in spy.of_type("parcel.sent") if e["data"]["parcelId"] == "p-2"]
    assert new["dataschema"] == "urn:eda:events:parcel.sent:v2"


def test_a_worker_that_cannot_read_an_older_version_of_its_events_does_not_start(eda, tmp_path):
    eda.cwd = tmp_path
    env = app(tmp_path, "parcels", PARCELS_V2, WORKER)  # version 2, no upcaster from version 1
    code, output = eda.run("worker", "labeler", **env)
    assert code == 2, output
    assert output.splitlines()[-1] == ("error: parcel.sent: version 1 cannot be read as version 2: no upcaster "
                                       "from version 1 (@upcaster('parcel.sent', from_version=1))"), output


def test_contracts_check_exits_1_on_a_breaking_change_against_the_baseline_and_0_otherwise(eda, tmp_path):
    eda.cwd = tmp_path
    baseline = tmp_path / "contracts.baseline.json"
    code, output = eda.run("contracts", "export", "-o", str(baseline), **app(tmp_path, "before", PARCELS_V1))
    assert code == 0, output

    # A field added as optional: compatible.
    optional = PARCELS_V1.replace("weight = fields.Integer(required=True)\n",
                                  "weight = fields.Integer(required=True)\n        note = fields.String()\n", 1)
    code, output = eda.run("contracts", "check", "--against", str(baseline), **app(tmp_path, "optional", optional))
    assert code == 0 and f"no breaking change against {baseline}" in output, output

    # A field removed and another made required in place: breaking, each named.
    broken = PARCELS_V1.replace("        weight = fields.Integer(required=True)\n", "", 1).replace(
        "carrier = fields.String(required=True)", "carrier = fields.String(required=True)\n        "
                                                 "label = fields.String(required=True)")
    code, output = eda.run("contracts", "check", "--against", str(baseline), **app(tmp_path, "broken", broken))
    assert code == 1, output
    assert "breaking: parcel.sent v1: field 'weight' removed" in output
    assert "breaking: parcel.labelled v1: field 'label' is new and required (events without it are refused)" in output
    assert output.splitlines()[-1] == f"error: 2 breaking changes against {baseline}", output

    # Version 2 without an upcaster from the baseline's version 1: breaking; with it: compatible.
    code, output = eda.run("contracts", "check", "--against", str(baseline), **app(tmp_path, "v2", PARCELS_V2))
    assert code == 1 and "no upcaster from version 1" in output, output
    code, output = eda.run("contracts", "check", "--against", str(baseline),
                           **app(tmp_path, "v2up", PARCELS_V2, UPCASTER))
    assert code == 0, output

    code, output = eda.run("contracts", "check", "--against", str(tmp_path / "missing.json"), **app(tmp_path, "v2up2",
                                                                                                      PARCELS_V2))
    assert code == 2 and output.splitlines()[-1].startswith("error: --against "), output
