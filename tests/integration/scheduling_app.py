"""A test project for scheduled events (``EDA_APP=tests.integration.scheduling_app``): a reminders worker
whose handler delays its reaction (``ctx.publish(..., delay=...)``), and a recurring schedule declared
in code when ``SCHEDULING_EVERY_SECOND`` is set (a tick every second)."""

import os
from datetime import timedelta

from marshmallow import fields

from eda import EventData, Worker, contract, handles, schedule
from eda.fields import Id


@contract("reminder.requested", description="Someone asked to be reminded later.")
class ReminderRequested(EventData):
    reminder_id = Id(required=True)
    delay_ms = fields.Integer(required=True, strict=True)


@contract("reminder.due", description="A reminder fell due.", published_by=("reminders", "clients"))
class ReminderDue(EventData):
    reminder_id = Id(required=True)


class Reminders(Worker):
    name = "reminders"
    description = "Publishes each reminder when it falls due (a test worker)."

    @handles("reminder.requested")
    def remind(self, event, ctx):
        ctx.publish("reminder.due", {"reminder_id": event.data["reminder_id"]},
                    delay=timedelta(milliseconds=event.data["delay_ms"]))


if os.environ.get("SCHEDULING_EVERY_SECOND"):
    schedule("* * * * * *", "reminder.due", {"reminder_id": "tick"}, name="every-second")

if os.environ.get("SCHEDULING_BAD_DATA"):
    schedule("0 9 * * *", "reminder.due", {"reminder": "no such field"}, name="broken")
