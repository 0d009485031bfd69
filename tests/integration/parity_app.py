"""A test project for the parity tests (``EDA_APP=tests.integration.parity_app``): the same workers run under
``eda worker`` on RabbitMQ and on a TestBus, each scenario chosen by the event's ``mode``.

``parity-front`` (records the events it processed) answers ``parity.requested`` with ``parity.accepted``:
``ok`` at once, ``transient`` after failing its first attempt, ``permanent`` never (PermanentError),
``bad-reaction`` with a reaction that breaks its contract. ``parity-follower`` answers each
``parity.accepted`` with ``parity.done``.
"""

from marshmallow import fields

from eda import EventData, PermanentError, Worker, contract, handles
from eda.fields import Id


@contract("parity.requested", description="A request of the parity tests.")
class ParityRequested(EventData):
    request_id = Id(required=True)
    mode = fields.String(required=True)


@contract("parity.accepted", description="parity-front took a request.", published_by=("parity-front",))
class ParityAccepted(EventData):
    request_id = Id(required=True)


@contract("parity.done", description="parity-follower finished a request.", published_by=("parity-follower",))
class ParityDone(EventData):
    request_id = Id(required=True)


class ParityFront(Worker):
    name = "parity-front"
    description = "Answers parity.requested as its mode says (a test worker)."
    record_processed = True

    def setup(self):
        self.failed = set()  # events whose first attempt failed (transient mode)

    @handles("parity.requested")
    def answer(self, event, ctx):
        request_id, mode = event.data["request_id"], event.data["mode"]
        if mode == "transient" and event.id not in self.failed:
            self.failed.add(event.id)
            raise TimeoutError(f"request {request_id}: the first attempt times out")
        if mode == "permanent":
            raise PermanentError(f"request {request_id} is refused")
        if mode == "bad-reaction":
            ctx.publish(ParityAccepted, {"requestId": request_id})  # camelCase: not the contract's field name
        ctx.publish(ParityAccepted, {"request_id": request_id})


class ParityFollower(Worker):
    name = "parity-follower"
    description = "Answers parity.accepted with parity.done (a test worker)."

    @handles("parity.accepted")
    def finish(self, event, ctx):
        ctx.publish(ParityDone, {"request_id": event.data["request_id"]})
