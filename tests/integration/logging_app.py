"""A test project for the log-line tests (``EDA_APP=tests.integration.logging_app``): three workers, one
of each kind (handler threads, inline on the I/O thread, ``async def`` on the event loop), each logging
one line of its own with a field of its own (``step``) from its handler of ``note.taken``, as a
team's handler would, without naming the event."""

from eda import EventData, Worker, contract, handles
from eda.fields import Id


@contract("note.taken", description="A note was taken (a test event).")
class NoteTaken(EventData):
    note_id = Id(required=True)


class Threaded(Worker):
    name = "logthreads"

    @handles("note.taken")
    def take(self, event, ctx):
        self.log.info("taking the note", extra={"step": "threads"})


class Inline(Worker):
    name = "loginline"
    inline = True

    @handles("note.taken")
    def take(self, event, ctx):
        self.log.info("taking the note", extra={"step": "inline"})


class Coroutines(Worker):
    name = "logasync"

    @handles("note.taken")
    async def take(self, event, ctx):
        self.log.info("taking the note", extra={"step": "async"})


WORKERS = ("logthreads", "loginline", "logasync")
