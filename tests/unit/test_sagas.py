"""Sagas on SQLite, run by eda's runtime on a TestBus: instances started, moved and completed by their
events, exactly once per event id, their state loaded and saved with optimistic concurrency. The saga is
the booking flow of the ``trips`` fixture (tests/unit/conftest.py); what a saga is refused for is in
test_saga_definitions.py."""

import json

import pytest
from marshmallow import fields

from eda import Settings, handles
from eda.errors import SagaConflict
from eda.outbox import Outbox
from eda.sagas import Instances
from eda.sagas import running as saga_running
from eda.sagas.table import Table, schema
from eda.store import open_store
from eda.testing import TestBus


@pytest.fixture
def settings(tmp_path):
    return Settings(state_dir=tmp_path / "state", namespace="trips-test")


def booked(trip_id="t-1", seats=2):
    return {"trip_id": trip_id, "seats": seats, "price": "120.00"}


def instance(settings, key):
    with Instances(settings, "trips") as instances:
        return instances.get(key)


def test_events_start_move_and_complete_an_instance_keyed_by_the_correlation_field(trips, settings):
    with TestBus(trips, settings=settings) as bus:
        # When a trip is booked
        bus.publish("trip.booked", booked("t-1"))
        # Then an instance of its id holds the state the handler set, at version 1
        started = instance(settings, "t-1")
        assert started.state == {"status": "booked", "seats": 2, "price": "120.00", "history": ["booked"]}
        assert started.version == 1 and not started.completed
        # and the bus shows a test the same instance
        assert bus.saga_instance("trips", "t-1") == started and bus.saga_instance("trips", "t-9") is None
        # When it is paid
        bus.publish("trip.paid", {"trip_id": "t-1"})
        # Then the saga confirms it and the instance is completed, its final state kept
        assert [e.data for e in bus.published("trip.confirmed")] == [{"trip_id": "t-1", "seats": 2}]
        done = instance(settings, "t-1")
        assert done.completed and done.version == 2
        assert done.state["status"] == "confirmed" and done.state["history"] == ["booked", "paid"]
        with Instances(settings, "trips") as instances:
            assert instances.list() == []  # no live instance left
            assert [r.key for r in instances.list(completed=True)] == ["t-1"]
            assert [a.event_type for a in instances.applied("t-1")] == ["trip.booked", "trip.paid"]


def test_a_reaction_keeps_the_flow_and_names_the_event_as_its_cause(trips, settings):
    with TestBus(trips, settings=settings) as bus:
        bus.publish("trip.booked", booked("t-1"), correlation_id="flow-1")
        paid = bus.publish("trip.paid", {"trip_id": "t-1"}, correlation_id="flow-1")
        [confirmed] = bus.published("trip.confirmed")
        assert confirmed.correlation_id == "flow-1" and confirmed.causation_id == paid.id


def test_a_duplicate_event_is_applied_once_and_its_recorded_reactions_go_out_again_under_their_ids(trips, settings):
    with TestBus(trips, settings=settings) as bus:
        bus.publish("trip.booked", booked("t-1"))
        paid = bus.publish("trip.paid", {"trip_id": "t-1"})
        # When the same payment event (same id) arrives again
        bus.publish(paid)
        # Then the handler ran once for it, the instance moved once
        assert trips.runs == [("t-1", "trip.booked"), ("t-1", "trip.paid")]
        assert instance(settings, "t-1").version == 2
        # and its reaction was published again under the same id (a consumer's record absorbs it)
        confirmed = bus.published("trip.confirmed")
        assert len(confirmed) == 2 and confirmed[0].id == confirmed[1].id
        assert confirmed[0].data == confirmed[1].data


def test_a_duplicate_of_a_start_writes_its_timeout_to_the_outbox_once(trips, settings):
    with TestBus(trips, settings=settings) as bus:
        start = bus.publish("trip.booked", booked("t-1"))
        bus.publish(start)
        waiting = Outbox(settings).scheduled()
        assert [(e.type, e.correlation_id) for e in waiting] == [("trip.payment-due", start.correlation_id)]
        assert trips.runs == [("t-1", "trip.booked")]


def test_a_timeout_is_a_scheduled_reaction_in_the_outbox_with_the_saga_as_source(trips, settings):
    with TestBus(trips, settings=settings) as bus:
        start = bus.publish("trip.booked", booked("t-1"))
    [due] = Outbox(settings).scheduled()
    assert due.type == "trip.payment-due" and due.source == "eda/trips"
    assert 14 * 60 < due.due - json.loads(json.dumps(due.added)) <= 15 * 60 + 1
    assert due.correlation_id == start.correlation_id


def test_a_timeout_that_comes_in_time_ends_the_instance_and_a_late_one_is_ignored(trips, settings):
    with TestBus(trips, settings=settings) as bus:
        # Given two trips, one paid
        bus.publish("trip.booked", booked("t-1"))
        bus.publish("trip.booked", booked("t-2"))
        bus.publish("trip.paid", {"trip_id": "t-2"})
        # When both payment deadlines arrive
        bus.publish("trip.payment-due", {"trip_id": "t-1"})
        bus.publish("trip.payment-due", {"trip_id": "t-2"})
        # Then the unpaid trip is released, and the deadline of the completed one changes nothing
        assert [e.data["trip_id"] for e in bus.published("trip.released")] == ["t-1"]
        assert instance(settings, "t-1").state["status"] == "released"
        assert instance(settings, "t-2").state["status"] == "confirmed"
        assert ("t-2", "trip.payment-due") not in trips.runs


def test_an_event_that_starts_no_instance_is_ignored_when_there_is_none(trips, settings):
    with TestBus(trips, settings=settings) as bus:
        bus.publish("trip.payment-due", {"trip_id": "t-9"})
        assert instance(settings, "t-9") is None and trips.runs == []


def test_a_start_of_a_live_instance_runs_on_it_so_events_may_arrive_in_either_order(trips, settings):
    with TestBus(trips, settings=settings) as bus:
        # When the payment arrives before the booking
        bus.publish("trip.paid", {"trip_id": "t-1"})
        assert instance(settings, "t-1").state == {"status": "paid", "history": ["paid"]}
        bus.publish("trip.booked", booked("t-1"))
        # Then the booking runs on the instance the payment started, which keeps what it knew
        moved = instance(settings, "t-1")
        assert moved.state["history"] == ["paid", "booked"] and moved.state["status"] == "paid"
        assert moved.version == 2


def test_a_start_of_a_completed_instance_is_ignored(trips, settings):
    with TestBus(trips, settings=settings) as bus:
        bus.publish("trip.booked", booked("t-1"))
        bus.publish("trip.paid", {"trip_id": "t-1"})
        # When the trip is booked again under a new event id
        bus.publish("trip.booked", booked("t-1", seats=5))
        # Then nothing starts again: the completed instance keeps its final state
        assert trips.runs.count(("t-1", "trip.booked")) == 1
        assert instance(settings, "t-1").state["seats"] == 2


def test_state_outlives_the_worker(trips, settings):
    with TestBus(trips, settings=settings) as bus:
        bus.publish("trip.booked", booked("t-1"))
    with TestBus(trips, settings=settings) as bus:
        bus.publish("trip.paid", {"trip_id": "t-1"})
        assert [e.data for e in bus.published("trip.confirmed")] == [{"trip_id": "t-1", "seats": 2}]


def test_a_handler_that_leaves_the_state_invalid_dead_letters_the_event_and_saves_nothing(trips, settings):
    class Broken(trips):
        name = "broken"

        @handles("trip.paid")
        def paid(self, event, ctx):
            self.seats = "many"  # not an integer
            ctx.publish("trip.confirmed", {"trip_id": self.key, "seats": 1})

    with TestBus(Broken, settings=settings) as bus:
        bus.publish("trip.booked", booked("t-1"))
        with bus.expect_dead_letters():
            bus.publish("trip.paid", {"trip_id": "t-1"})
        [dead] = bus.dead_letters("broken")
        assert dead.exception_type == "SagaStateError" and dead.attempts == 1
        assert "saga broken t-1: trip.paid left its state invalid" in dead.reason
        assert "seats: Not a valid integer. ('many')" in dead.reason
        assert bus.published("trip.confirmed") == []
    with Instances(settings, "broken") as instances:
        assert instances.get("t-1").version == 1


@pytest.mark.parametrize("status", [5, {"a": 1}], ids=["a number", "a dict"])
def test_a_handler_that_puts_what_is_no_text_in_a_string_field_dead_letters_the_event(trips, settings, status):
    # Given a saga whose status field is a String, and a handler that sets it to something else
    class Sloppy(trips):
        name = "sloppy"

        @handles("trip.paid")
        def paid(self, event, ctx):
            self.status = status  # marshmallow would write it as its str() and read that back as valid

    # When the handler runs, then the event is dead-lettered as for any invalid state, and nothing saved
    with TestBus(Sloppy, settings=settings) as bus:
        bus.publish("trip.booked", booked("t-1"))
        with bus.expect_dead_letters():
            bus.publish("trip.paid", {"trip_id": "t-1"})
        [dead] = bus.dead_letters("sloppy")
        assert dead.exception_type == "SagaStateError" and "status: Not a valid string." in dead.reason
    with Instances(settings, "sloppy") as instances:
        assert instances.get("t-1").version == 1


def test_a_handler_that_sets_an_attribute_that_is_no_field_dead_letters_the_event(trips, settings):
    # Given a saga whose handler sets an attribute its state does not declare (a typo of status)
    class Typo(trips):
        name = "typo"

        @handles("trip.paid")
        def paid(self, event, ctx):
            self.stauts = "paid"

    # When the handler runs, then the event is dead-lettered naming the attribute, and nothing saved:
    # the attribute would have been lost without a word
    with TestBus(Typo, settings=settings) as bus:
        bus.publish("trip.booked", booked("t-1"))
        with bus.expect_dead_letters():
            bus.publish("trip.paid", {"trip_id": "t-1"})
        [dead] = bus.dead_letters("typo")
        assert dead.exception_type == "SagaStateError"
        assert "trip.paid set 'stauts', not a field of its state, which would not be kept" in dead.reason
    with Instances(settings, "typo") as instances:
        assert instances.get("t-1").version == 1


def test_a_handler_that_fails_rolls_the_instance_back_and_is_retried(trips, settings):
    failures = [RuntimeError("the first attempt fails")]

    class Flaky(trips):
        name = "flaky"

        @handles("trip.paid")
        def paid(self, event, ctx):
            self.status = "half-way"
            if failures:
                raise failures.pop()
            self.status = "confirmed"
            self.complete()

    with TestBus(Flaky, settings=settings.with_(retry_delays="1s")) as bus:
        bus.publish("trip.booked", booked("t-1"))
        bus.publish("trip.paid", {"trip_id": "t-1"})
    with Instances(settings, "flaky") as instances:
        row = instances.get("t-1")
        assert row.state["status"] == "confirmed" and row.version == 2 and row.completed


# Optimistic concurrency, on the table itself

def test_a_save_from_a_stale_version_writes_nothing_and_says_so(tmp_path):
    store = open_store(Settings(state_dir=tmp_path), "trips", schema(postgresql=False))
    table = Table("trips")
    event = type("E", (), {"id": "e-1", "type": "trip.booked"})
    try:
        with store.transaction() as tx:
            assert table.save(tx, "t-1", '{"n":1}', None, False, event, [])
        with store.transaction() as tx:
            _, before = table.load(tx, "t-1", "e-2")
        # Another handling moves the instance first
        with store.transaction() as tx:
            assert table.save(tx, "t-1", '{"n":2}', before, False, type("E", (), {"id": "e-3", "type": "x"}), [])
        # Then a save from the version read before writes nothing
        with store.transaction() as tx:
            assert not table.save(tx, "t-1", '{"n":3}', before, False, type("E", (), {"id": "e-2", "type": "x"}), [])
        # and a second start of the same key writes nothing either, nor a second record of one event
        with store.transaction() as tx:
            assert not table.save(tx, "t-1", '{"n":4}', None, False, type("E", (), {"id": "e-4", "type": "x"}), [])
        with store.transaction() as tx:
            recorded, now = table.load(tx, "t-1", "e-1")
        assert recorded == [] and now.state == {"n": 2} and now.version == 2
        assert [a.event_id for a in table.applied(store, "t-1")] == ["e-1", "e-3"]
    finally:
        store.close()


def test_a_conflict_runs_the_handler_again_and_gives_up_as_a_transient_failure(trips, settings, monkeypatch):
    # Given a store where every save finds the instance changed by another handling
    monkeypatch.setattr(Table, "save", lambda *args, **kwargs: False)
    with TestBus(trips, settings=settings.with_(retry_delays="1s"), dead_letters="allow") as bus:
        bus.publish("trip.booked", booked("t-1"))
        # Then the handler ran CONFLICT_ATTEMPTS times per attempt, and the event failed transiently
        [dead] = bus.dead_letters("trips")
        assert dead.exception_type == "SagaConflict" and dead.attempts == 2
        assert "saga trips t-1: the instance kept changing under trip.booked" in dead.reason
        assert len(trips.runs) == 2 * saga_running.CONFLICT_ATTEMPTS
    assert SagaConflict.__mro__[1].__name__ == "EdaError"  # not a PermanentError: retried


def test_records_past_the_retention_are_deleted_with_their_completed_instance(trips, settings):
    with TestBus(trips, settings=settings) as bus:
        bus.publish("trip.booked", booked("t-1"))
        bus.publish("trip.paid", {"trip_id": "t-1"})
        t2 = bus.publish("trip.booked", booked("t-2"))
        running = bus.worker("trips")._eda_saga
        assert running.prune() == (0, 0)
        running.retention = -1  # everything is past it
        # Then the completed t-1 goes with the records of its two events; the live t-2 keeps its record
        assert running.prune() == (1, 2)
        with Instances(settings, "trips") as instances:
            assert [r.key for r in instances.list(completed=True)] == ["t-2"]  # live instances are never deleted
            assert [a.event_id for a in instances.applied("t-2")] == [t2.id]
        # so that a late copy of the event that started it long ago is still recognised, not applied again
        bus.publish(t2)
        assert trips.runs.count(("t-2", "trip.booked")) == 1
        assert instance(settings, "t-2").version == 1


def test_a_saga_s_own_setup_and_teardown_run_with_its_store_open(trips, settings):
    seen = []

    class WithSetup(trips):
        name = "with-setup"

        def setup(self):
            seen.append(("setup", self._eda_saga is not None))

        def teardown(self):
            seen.append(("teardown", self._eda_saga is not None))

    with TestBus(WithSetup, settings=settings) as bus:
        bus.publish("trip.booked", booked("t-1"))
    assert seen == [("setup", True), ("teardown", True)]
    assert bus.worker("with-setup")._eda_saga is None  # closed after the teardown


def test_a_timeout_fires_on_the_bus_once_its_time_passes(trips, settings):
    with TestBus(trips, settings=settings) as bus:
        bus.publish("trip.booked", booked("t-1"))
        [due] = bus.scheduled()
        assert due.type == "trip.payment-due" and due.source == "eda/trips"
        # When 14 minutes pass, nothing happens yet
        bus.advance(14 * 60)
        assert bus.published("trip.released") == [] and len(bus.scheduled()) == 1
        # When the 15th passes, the deadline arrives as an event and the unpaid trip is released
        bus.advance(61)
        assert [e.data for e in bus.published("trip.released")] == [{"trip_id": "t-1"}]
        assert bus.scheduled() == []
        assert instance(settings, "t-1").state["status"] == "released"


def test_a_none_set_in_a_field_that_allows_it_stays_none_and_does_not_turn_back_into_the_default(trips, settings):
    seen = []

    class Owners(trips):
        name = "owners"
        owner = fields.String(load_default="nobody", allow_none=True)

        @handles("trip.paid")
        def paid(self, event, ctx):
            self.owner = None

        @handles("trip.payment-due")
        def due(self, event, ctx):
            seen.append(self.owner)

    with TestBus(Owners, settings=settings) as bus:
        bus.publish("trip.booked", booked("t-1"))
        bus.publish("trip.paid", {"trip_id": "t-1"})
        bus.publish("trip.payment-due", {"trip_id": "t-1"})
    assert seen == [None]
