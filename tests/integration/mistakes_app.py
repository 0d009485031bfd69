"""A test project for the fail-fast tests (``EDA_APP=tests.integration.mistakes_app``): a worker whose
handler makes the mistake its event asks for. ``mistake.requested`` with ``kind`` ``unknown-reaction``
publishes a reaction of a type no contract knows, ``key-error`` reads a field the data does not have
(which may depend on the data: retried); ``mistake.wrapped`` reaches a handler whose decorator forgot
``ctx``, so calling it fails (its signature, read through functools.wraps, looked right at start)."""

import functools

from marshmallow import fields

from eda import EventData, Worker, contract, handles
from eda.fields import Id


@contract("mistake.requested", description="Asks the mistakes worker to make a mistake (a test event).")
class MistakeRequested(EventData):
    mistake_id = Id(required=True)
    kind = fields.String(required=True)


@contract("mistake.wrapped", description="Reaches a handler that cannot be called (a test event).")
class MistakeWrapped(EventData):
    mistake_id = Id(required=True)


def forgets_ctx(method):
    @functools.wraps(method)
    def wrapper(self, event):
        return method(self, event, None)

    return wrapper


class Mistakes(Worker):
    name = "mistakes"

    @handles("mistake.requested")
    def make(self, event, ctx):
        if event.data["kind"] == "unknown-reaction":
            ctx.publish("mistake.never.registered", {"mistake_id": event.data["mistake_id"]})
        elif event.data["kind"] == "key-error":
            event.data["no_such_field"]

    @handles("mistake.wrapped")
    @forgets_ctx
    def wrapped(self, event, ctx):
        pass
