"""What a saga is refused for when it is defined or started: a missing correlation field, a handled event
without it, async handlers, state fields hiding an instance's own names; and what every saga is."""

import pytest
from marshmallow import fields

from eda import FLOW, EventData, Saga, Settings, contract, handles, starts
from eda.errors import DefinitionError
from eda.fields import Id
from eda.testing import TestBus


@pytest.fixture
def settings(tmp_path):
    return Settings(state_dir=tmp_path / "state", namespace="trips-test")


def test_a_saga_is_a_worker_ordered_by_the_flow_run_inline_on_sqlite(trips):
    assert trips.ordered_by == FLOW
    assert trips(Settings()).inline and not trips(Settings(database_url="postgresql://h/db")).inline


def test_a_saga_without_a_correlation_field_is_refused_at_start(trips, settings):
    class Nameless(Saga):
        name = "nameless"

        @starts("trip.booked")
        def booked(self, event, ctx):
            pass

    with pytest.raises(DefinitionError, match="saga 'nameless': correlation must name the data field"):
        with TestBus(Nameless, settings=settings):
            pass


def test_a_saga_handling_an_event_without_its_correlation_field_is_refused_at_start(trips, settings):
    @contract("weather.changed")
    class WeatherChanged(EventData):
        city = Id(required=True)

    class Mixed(trips):
        name = "mixed"

        @handles("weather.changed")
        def weather(self, event, ctx):
            pass

    with pytest.raises(DefinitionError, match="saga 'mixed' is correlated by 'trip_id', but the contract of "
                                              "weather.changed has no such field"):
        with TestBus(Mixed, settings=settings):
            pass


def test_a_saga_s_handlers_are_plain_def(trips):
    with pytest.raises(DefinitionError, match="a saga's handlers are plain `def`"):
        class Async(Saga):
            name = "async"
            correlation = "trip_id"

            @starts("trip.booked")
            async def booked(self, event, ctx):
                pass


@pytest.mark.parametrize("field", ["key", "complete", "correlation", "name", "_secret"])
def test_a_state_field_cannot_hide_what_an_instance_has(trips, field):
    with pytest.raises(DefinitionError, match=f"a state field cannot be named '{field}'"):
        type("Bad", (Saga,), {"name": "bad", "correlation": "trip_id", field: fields.String()})


@pytest.mark.parametrize("handler_first", [False, True], ids=["field, then handler", "handler, then field"])
def test_a_handler_named_as_a_state_field_is_refused(trips, handler_first):
    # A second binding of one name in a class body replaces the first: the field, or the handler, was gone
    with pytest.raises(DefinitionError, match=r"'paid' names a state field and something else too"):
        if handler_first:
            class Handler(trips):
                name = "handler-first"

                @handles("trip.paid")
                def paid(self, event, ctx):
                    pass

                paid = fields.Boolean(load_default=False)
        else:
            class Field(trips):
                name = "field-first"
                paid = fields.Boolean(load_default=False)

                @handles("trip.paid")
                def paid(self, event, ctx):
                    pass
