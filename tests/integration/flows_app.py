"""A test project for ordering by flow (``EDA_APP=tests.integration.flows_app``): a worker ordered by the
CloudEvent's correlation id (``eda.FLOW``) handling two contracts keyed by other fields, appending each
event it handled to a file shared by its instances.

Environment: ``FLOWS_RECORD`` (the file: one line ``pid flow step`` per handled event, written in one
``write``), ``FLOWS_MAX_SLEEP`` (seconds, a random delay per event).
"""

import os
import random
import time

from marshmallow import fields

from eda import FLOW, EventData, Worker, contract, handles
from eda.fields import Id


@contract("parcel.packed", description="A parcel was packed (a test event).", key="warehouse_id")
class ParcelPacked(EventData):
    parcel_id = Id(required=True)
    warehouse_id = Id(required=True)
    step = fields.Integer(required=True, strict=True)


@contract("parcel.sent", description="A parcel was sent (a test event).", key="carrier_id")
class ParcelSent(EventData):
    parcel_id = Id(required=True)
    carrier_id = Id(required=True)
    step = fields.Integer(required=True, strict=True)


class Tracker(Worker):
    name = "tracker"
    description = "Follows each parcel's events in the order of its flow (a test worker)."
    ordered_by = FLOW

    def setup(self):
        path = os.environ.get("FLOWS_RECORD")
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600) if path else None
        self.max_sleep = float(os.environ.get("FLOWS_MAX_SLEEP", "0"))

    def teardown(self):
        if self.fd is not None:
            os.close(self.fd)

    def record(self, event):
        if self.max_sleep:
            time.sleep(random.uniform(0, self.max_sleep))
        if self.fd is not None:
            os.write(self.fd, f"{os.getpid()} {event.correlation_id} {event.data['step']}\n".encode())

    @handles("parcel.packed")
    def packed(self, event, ctx):
        self.record(event)

    @handles("parcel.sent")
    def sent(self, event, ctx):
        self.record(event)
