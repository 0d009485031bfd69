"""A test project for the middleware tests (``EDA_APP=tests.integration.middleware_app``): workers wearing
the documented examples (docs/examples) and a few middleware of the tests' own.

- ``triage`` routes each ticket.opened to a team (a ticket.routed reaction), its reactions carrying
  ``tenant: acme`` (the TenantHeader example, as its own middleware).
- ``jobs`` runs job.submitted under the RateLimit example, shared by its instances: ``JOBS_LIMIT``
  events per ``JOBS_PER`` seconds; it logs ``admitted`` with the window of each event it let through.
- ``gatekeeper`` routes tickets too, but its own middleware refuses to publish any reaction.
- ``asyncjobs`` has ``async def`` handlers and a middleware that wraps plain ones only: a start error.
"""

import os
import threading

from eda import EventData, Middleware, PermanentError, Worker, contract, handles
from eda.fields import Id

from docs.examples.rate_limit import RateLimit
from docs.examples.tenant_header import TenantHeader


@contract("ticket.opened", description="A support ticket was opened (a test event).")
class TicketOpened(EventData):
    ticket_id = Id(required=True)


@contract("ticket.routed", description="A ticket was given to a team (a test event).",
          published_by=("triage", "gatekeeper"))
class TicketRouted(EventData):
    ticket_id = Id(required=True)
    team = Id(required=True)


@contract("job.submitted", description="A job to run, at a limited rate (a test event).")
class JobSubmitted(EventData):
    job_id = Id(required=True)


class Triage(Worker):
    name = "triage"
    middleware = (TenantHeader("acme"),)

    @handles("ticket.opened")
    def route(self, event, ctx):
        ctx.publish("ticket.routed", {"ticket_id": event.data["ticket_id"], "team": "billing"})


class CountedRateLimit(RateLimit):
    """The example's rate limit, logging the window each event it let through was counted in."""

    def __init__(self, limit, per):
        super().__init__(limit, per)
        self.last = threading.local()  # the window this thread counted in last

    def count(self, worker, period):
        self.last.period = period
        return super().count(worker, period)

    def admit(self, worker):
        wait = super().admit(worker)
        if wait is None:
            worker.log.info("admitted", extra={"period": self.last.period, "pid": os.getpid()})
        return wait


class Jobs(Worker):
    name = "jobs"
    middleware = (CountedRateLimit(int(os.environ.get("JOBS_LIMIT", "5")), float(os.environ.get("JOBS_PER", "1"))),)

    @handles("job.submitted")
    def run(self, event, ctx):
        self.log.info("ran the job", extra={"job_id": event.data["job_id"]})


class Refuse(Middleware):
    def publish(self, message, call_next):
        raise PermanentError(f"{message.event.type} may not leave this worker")


class Gatekeeper(Worker):
    name = "gatekeeper"
    middleware = (Refuse(),)

    @handles("ticket.opened")
    def route(self, event, ctx):
        ctx.publish("ticket.routed", {"ticket_id": event.data["ticket_id"], "team": "nobody"})


class PlainOnly(Middleware):
    def handle(self, event, ctx, call_next):
        return call_next(event, ctx)


class AsyncJobs(Worker):
    name = "asyncjobs"
    middleware = (PlainOnly(),)

    @handles("job.submitted")
    async def run(self, event, ctx):
        pass
