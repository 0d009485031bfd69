"""Middleware on the real broker, in `eda` processes (the test app: tests/integration/middleware_app.py,
wearing the documented examples of docs/examples): a header every publish carries, on a worker's
reactions, `eda publish`, a Producer and the outbox relay; a rate limit shared by two worker processes
through PostgreSQL; a publish refused by a middleware; the start error of a middleware of the other
style."""

from collections import Counter

import pytest

from docs.examples.tenant_header import TenantHeader
from eda import Producer, Settings
from eda.outbox import Outbox
from tests.registry_scope import contracts_of
from tests.support import handled, wait_until

pytestmark = pytest.mark.integration

APP = "tests.integration.middleware_app"
TENANT_EVERYWHERE = "docs.examples.tenant_header:TenantHeader"  # EDA_MIDDLEWARE: process-wide, APP_TENANT's


@pytest.fixture(scope="module", autouse=True)
def middleware_contracts():
    """middleware_app's contracts, registered in this process for this module's Producer and Outbox only."""
    with contracts_of(APP):
        yield


@pytest.fixture
def app(app_queues):
    app_queues("triage", "jobs", "gatekeeper", "asyncjobs")
    return {"EDA_APP": APP}


def ticket(ticket_id: str) -> dict:
    return {"ticketId": ticket_id}


def test_a_worker_s_own_middleware_puts_a_header_on_every_reaction_it_publishes(eda, broker, app):
    # Given the triage worker, whose own middleware is the TenantHeader example (tenant acme)
    spy = broker.spy("ticket.#")
    eda.worker("triage", **app)
    # When tickets are opened by `eda publish`, which has no middleware here
    ids = eda.publish("ticket-opened", ticket("t-1"), ticket("t-2"), **app)
    # Then each reaction carries the header on the wire, and the published tickets do not
    routed = spy.wait_for("ticket.routed", count=2)
    assert sorted(e["causationid"] for e in routed) == sorted(ids)
    for event in routed:
        assert spy.message_of(event["id"]).headers["tenant"] == "acme"
    for event_id in ids:
        assert "tenant" not in (spy.message_of(event_id).headers or {})


def test_eda_publish_runs_the_process_wide_middleware_and_a_worker_s_own_runs_inside_it(eda, broker, app):
    # Given EDA_MIDDLEWARE naming the TenantHeader example (APP_TENANT=globex) for eda publish and the worker
    spy = broker.spy("ticket.#")
    everywhere = {**app, "EDA_MIDDLEWARE": TENANT_EVERYWHERE, "APP_TENANT": "globex"}
    eda.worker("triage", **everywhere)
    # When a ticket is published with eda publish
    event_id, = eda.publish("ticket-opened", ticket("t-3"), **everywhere)
    # Then eda publish's event carries the process-wide header
    [reaction] = spy.wait_for("ticket.routed")
    assert spy.message_of(event_id).headers["tenant"] == "globex"
    # And the reaction the worker's own TenantHeader("acme") wrote last: it runs inside the process-wide one
    assert spy.message_of(reaction["id"]).headers["tenant"] == "acme"


def test_a_producer_s_middleware_puts_the_header_on_what_it_publishes(broker, env, app):
    spy = broker.spy("ticket.#")
    settings = Settings(broker_url=env["EDA_BROKER_URL"], namespace=env["EDA_NAMESPACE"])
    with Producer(settings, source="tests/web", middleware=[TenantHeader("initech")]) as producer:
        event = producer.publish("ticket.opened", {"ticket_id": "t-4"})
    [published] = spy.wait_for("ticket.opened")
    assert published["id"] == event.id and spy.message_of(event.id).headers["tenant"] == "initech"


def test_the_outbox_relay_runs_the_process_wide_middleware(eda, broker, env, app):
    # Given an event in an application's outbox (where the relay of this environment looks)
    spy = broker.spy("ticket.#")
    outbox = Outbox(Settings(broker_url=env["EDA_BROKER_URL"], namespace=env["EDA_NAMESPACE"],
                             state_dir=env["EDA_STATE_DIR"], database_url=env.get("EDA_DATABASE_URL")))
    conn = outbox.connect()
    with conn:
        event = outbox.add(conn, "ticket.opened", {"ticket_id": "t-5"})
    conn.close()
    # When the relay publishes it with EDA_MIDDLEWARE naming the TenantHeader example
    eda.start("outbox", "relay", EDA_MIDDLEWARE=TENANT_EVERYWHERE, APP_TENANT="hooli", **app)
    # Then it carries the header on the wire
    spy.wait_for("ticket.opened", timeout=30)
    assert spy.message_of(event.id).headers["tenant"] == "hooli"


def test_a_reaction_a_publish_middleware_refuses_dead_letters_its_event_with_the_reason(eda, broker, namespace,
                                                                                         app):
    # Given the gatekeeper worker, whose own middleware refuses every reaction with a PermanentError
    spy = broker.spy("ticket.#")
    worker = eda.worker("gatekeeper", **app)
    # When a ticket is opened
    event_id, = eda.publish("ticket-opened", ticket("t-6"), **app)
    # Then the ticket is dead-lettered at once with the middleware's reason, and no reaction went out
    dlq = f"{namespace}.gatekeeper.dlq"
    wait_until(lambda: broker.depth(dlq) == 1, message="the ticket in the DLQ")
    [dead] = broker.peek(dlq)
    assert dead.properties["message_id"] == event_id
    assert dead.headers["eda-exception-message"] == "ticket.routed may not leave this worker"
    assert worker.count(lambda r: r.get("message") == "dead-lettered (permanent)") == 1
    assert spy.of_type("ticket.routed") == []


def test_a_rate_limit_in_postgresql_holds_across_two_worker_processes(eda, broker, database, app):
    # Given two instances of the jobs worker (4 handler threads each) sharing the RateLimit example,
    # 5 jobs a second for both together, counted in one PostgreSQL
    limit, jobs = 5, 30
    shared = {**app, "EDA_DATABASE_URL": database, "JOBS_LIMIT": str(limit), "JOBS_PER": "1",
              "EDA_CONCURRENCY": "4"}
    workers = [eda.worker("jobs", **shared) for _ in range(2)]
    # When 30 jobs are submitted at once
    eda.publish("job-submitted", *({"jobId": f"j-{n}"} for n in range(jobs)), **app)
    wait_until(lambda: sum(w.count(handled("job.submitted")) for w in workers) == jobs, timeout=60,
               message=f"{jobs} jobs handled")
    # Then every job ran once, and no one-second window let more than 5 through, both processes counted
    admitted = [(r["period"], n) for n, w in enumerate(workers) for r in w.records if r.get("message") == "admitted"]
    ran = [r["job_id"] for w in workers for r in w.records if r.get("message") == "ran the job"]
    assert sorted(ran) == sorted(f"j-{n}" for n in range(jobs))
    per_window = Counter(period for period, _ in admitted)
    assert len(admitted) == jobs and max(per_window.values()) == limit, per_window
    assert len(per_window) >= jobs // limit
    # And the limit was shared, not per process: windows took events from both instances at once
    assert any(len({n for p, n in admitted if p == period}) == 2 for period in per_window), admitted


def test_a_middleware_for_plain_handlers_on_an_async_worker_is_one_error_line_and_exit_2(eda, app):
    code, output = eda.run("worker", "asyncjobs", **app)
    assert code == 2, output
    assert output.strip().splitlines() == [
        "error: middleware tests.integration.middleware_app.PlainOnly cannot wrap worker 'asyncjobs', whose "
        "handlers are `async def`: it has handle but no handle_async"]
