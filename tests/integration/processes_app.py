"""A test project for `eda worker --processes N` (``EDA_APP=tests.integration.processes_app``).

- ``chores``: appends ``pid event_id`` to the file ``CHORES_RECORD`` for each chore it handled (one
  ``write``), after sleeping ``CHORES_SLEEP`` seconds (``CHORES_SLOW`` for a chore whose id begins
  with ``slow``): which process handled what. With ``CHORES_STARTED``, the same line goes to that file
  as each chore starts.
- ``crasher``: kills its own process with SIGKILL as it starts, every time (a crash loop).
"""

import os
import signal
import time

from eda import EventData, Worker, contract, handles
from eda.fields import Id


@contract("chore.requested", description="Something to do (a test event).")
class ChoreRequested(EventData):
    chore_id = Id(required=True)


class Chores(Worker):
    name = "chores"
    description = "Does chores, writing down which process did each (a test worker)."

    def setup(self):
        self.fd = os.open(os.environ["CHORES_RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.sleep = float(os.environ.get("CHORES_SLEEP", "0"))
        self.slow = float(os.environ.get("CHORES_SLOW", self.sleep))
        started = os.environ.get("CHORES_STARTED")
        self.started = os.open(started, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600) if started else None

    def teardown(self):
        os.close(self.fd)
        if self.started is not None:
            os.close(self.started)

    @handles("chore.requested")
    def do(self, event, ctx):
        if self.started is not None:
            os.write(self.started, f"{os.getpid()} {event.id}\n".encode())
        time.sleep(self.slow if event.data["chore_id"].startswith("slow") else self.sleep)
        os.write(self.fd, f"{os.getpid()} {event.id}\n".encode())


class Crasher(Worker):
    name = "crasher"
    description = "Dies as it starts (a test worker)."

    def setup(self):
        os.kill(os.getpid(), signal.SIGKILL)

    @handles("chore.requested")
    def do(self, event, ctx):
        pass
