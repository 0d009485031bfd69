"""A saga's state in PostgreSQL under real concurrency, as several instances of the worker on several
hosts meet it: two events of one instance handled at the same moment by two workers each move it once
(the loser of the race runs its handler again on the winner's state), and two copies of one event are
applied once. Driven through the saga's handlers without a broker; tests/integration/test_sagas.py
runs sagas under `eda worker`."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from marshmallow import fields

from eda import EventData, Saga, Settings, contract, handles, starts
from eda.contracts.envelope import new_event
from eda.fields import Id
from eda.sagas import Instances
from eda.worker import Context
from tests import pg

pytestmark = pytest.mark.integration


@contract("tally.opened", description="A tally was opened (a test event).")
class TallyOpened(EventData):
    tally_id = Id(required=True)


@contract("tally.counted", description="One more for a tally (a test event).")
class TallyCounted(EventData):
    tally_id = Id(required=True)
    mark = Id(required=True)


WAITED = threading.local()


class Tallies(Saga):
    """Each tally.counted appends its mark; the handler waits at a barrier, so that two handlings read the
    same version before either saves."""

    name = "tallies"
    correlation = "tally_id"
    marks = fields.List(fields.String(), load_default=list)
    barrier = None  # a threading.Barrier the first run of each handling waits at
    runs = []

    @starts("tally.opened")
    def opened(self, event, ctx):
        self.marks = []

    @handles("tally.counted")
    def counted(self, event, ctx):
        self.runs.append(event.data["mark"])
        if self.barrier is not None and not getattr(WAITED, "done", False):
            WAITED.done = True  # each thread's first run only: its re-run after a conflict goes on alone
            self.barrier.wait(timeout=10)  # both read the state before either saves
        self.marks = [*self.marks, event.data["mark"]]


@pytest.fixture
def workers(database):
    """Two instances of the saga worker (as on two hosts), sharing one PostgreSQL database."""
    settings = Settings(database_url=database, namespace="sagas", concurrency=2)
    made = [Tallies(settings), Tallies(settings)]
    for worker in made:
        worker.setup()
    Tallies.runs, Tallies.barrier = [], None
    yield made, settings
    for worker in made:
        worker.teardown()


def handle(worker, event):
    ctx = Context(event, worker.source, worker)
    getattr(worker, worker.handlers[event.type])(event, ctx)
    return ctx


def test_two_events_of_one_instance_handled_at_once_by_two_workers_each_move_it_once(workers):
    (first, second), settings = workers
    handle(first, new_event("tally.opened", {"tally_id": "t-1"}, "test"))
    # When two workers handle two events of the same instance at the same moment
    Tallies.barrier = threading.Barrier(2)
    events = [new_event("tally.counted", {"tally_id": "t-1", "mark": mark}, "test") for mark in ("a", "b")]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(handle, (first, second), events))
    # Then both marks are in the state: the handling that lost the race ran again on the other's state
    with Instances(settings, "tallies") as instances:
        row = instances.get("t-1")
        assert sorted(row.state["marks"]) == ["a", "b"] and row.version == 3
        assert sorted(a.event_id for a in instances.applied("t-1")[1:]) == sorted(e.id for e in events)
    assert sorted(Tallies.runs) in (["a", "a", "b"], ["a", "b", "b"])  # one of them twice


def test_two_copies_of_one_event_handled_at_once_by_two_workers_apply_it_once(workers):
    (first, second), settings = workers
    handle(first, new_event("tally.opened", {"tally_id": "t-2"}, "test"))
    Tallies.barrier = threading.Barrier(2)
    event = new_event("tally.counted", {"tally_id": "t-2", "mark": "x"}, "test")
    # When two workers handle the same event (a redelivery racing the first copy) at the same moment
    with ThreadPoolExecutor(2) as pool:
        contexts = list(pool.map(handle, (first, second), (event, event)))
    # Then it is applied once, and both copies give the same (empty) reactions
    with Instances(settings, "tallies") as instances:
        row = instances.get("t-2")
        assert row.state["marks"] == ["x"] and row.version == 2
    assert [ctx.reactions for ctx in contexts] == [[], []]


def test_state_is_jsonb_that_sql_can_query(workers, database):
    (first, _), _ = workers
    handle(first, new_event("tally.opened", {"tally_id": "t-3"}, "test"))
    handle(first, new_event("tally.counted", {"tally_id": "t-3", "mark": "m"}, "test"))
    assert pg.query(database, "SELECT key, state->'marks'->>0, version, completed_at FROM sagas.saga_instances "
                              "WHERE saga = 'tallies' AND key = 't-3'") == [("t-3", "m", 2, None)]


def test_past_the_retention_a_live_instance_keeps_its_records_and_a_completed_one_goes_with_them(workers):
    (first, _), settings = workers
    handle(first, new_event("tally.opened", {"tally_id": "t-4"}, "test"))
    opened = new_event("tally.opened", {"tally_id": "t-5"}, "test")
    handle(first, opened)
    with first._eda_saga.store.transaction() as tx:  # t-4 completed long ago
        tx.execute("UPDATE saga_instances SET completed_at = 1 WHERE saga = 'tallies' AND key = 't-4'")
    running = first._eda_saga
    running.retention = -1  # every record is past it
    assert running.prune() == (1, 1)  # t-4 and the record of its opening; t-5 lives on with its record
    with Instances(settings, "tallies") as instances:
        assert instances.get("t-4") is None
        assert [a.event_id for a in instances.applied("t-5")] == [opened.id]
