"""Recurring schedules without a broker: cron expressions in their time zones, the errors of a schedule
defined wrongly, names, the ids and times of a tick's event, and the relay's ticker."""

import json
from datetime import datetime

import pytest

import eda_shop.contracts  # noqa: F401 (the shop's events: stock-replenished)
from eda.errors import ScheduleError

STOCK = {"sku": "SKU-1", "quantity": 5}


@pytest.fixture
def declare():
    from eda.outbox import recurring

    names = []

    def declare_one(*args, **kwargs):
        declared = recurring.schedule(*args, **kwargs)
        names.append(declared.name)
        return declared

    yield declare_one
    for name in names:
        recurring.forget(name)


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_a_schedule_ticks_as_cron_says_in_its_time_zone(declare):
    daily = declare("0 9 * * MON-FRI", "stock-replenished", STOCK, name="daily", timezone="Europe/Paris")
    # Friday 2030-01-04 10:00 Paris: next Monday 09:00 Paris (08:00 UTC)
    assert daily.next_after(at("2030-01-04T10:00:00+01:00")) == at("2030-01-07T08:00:00+00:00")
    # across the change to summer time, still 09:00 Paris (07:00 UTC)
    assert daily.next_after(at("2030-03-31T10:00:00+02:00")) == at("2030-04-01T07:00:00+00:00")
    assert declare("@hourly", "stock-replenished", STOCK, name="hourly").next_after(at("2030-01-01T10:30:00+00:00")) \
        == at("2030-01-01T11:00:00+00:00")
    seconds = declare("*/5 * * * * *", "stock-replenished", STOCK, name="five-seconds")
    assert seconds.next_after(at("2030-01-01T10:00:02.5+00:00")) == at("2030-01-01T10:00:05+00:00")
    assert daily.explain() == "At 09:00 on Monday through Friday"


@pytest.mark.parametrize("args, kwargs, message", [
    (("61 * * * *", "stock-replenished"), {}, "bad cron expression '61 * * * *': Bad minute"),
    (("* * *", "stock-replenished"), {}, "bad cron expression '* * *': Wrong number of fields"),
    (("0 9 * * *", "stock-replenished"), {"timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
    (("0 9 31 2 *", "stock-replenished"), {}, "bad cron expression"),
])
def test_a_schedule_defined_wrongly_is_a_one_line_error_when_declared(declare, args, kwargs, message):
    with pytest.raises(ScheduleError) as caught:
        declare(*args, name="wrong", **kwargs)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_two_schedules_of_one_name_are_refused_the_same_one_twice_is_harmless(declare):
    declare("0 9 * * *", "stock-replenished", STOCK, name="morning")
    declare("0 9 * * *", "stock-replenished", STOCK, name="morning")  # a module imported twice
    with pytest.raises(ScheduleError, match="two recurring schedules are named 'morning'"):
        declare("0 10 * * *", "stock-replenished", STOCK, name="morning")


def test_a_ticks_event_has_an_id_from_the_schedule_and_the_tick_and_the_tick_as_its_time(declare):
    every = declare("* * * * *", "stock-replenished", STOCK, name="every-minute")
    event, body, due = every.event_at(at("2030-01-01T10:00:00+00:00"))
    again, _, _ = every.event_at(at("2030-01-01T10:00:00+00:00"))
    other, _, _ = every.event_at(at("2030-01-01T10:01:00+00:00"))
    assert event.id == again.id == event.correlation_id != other.id
    assert due == at("2030-01-01T10:00:00+00:00")
    wire = json.loads(body)
    assert wire["id"] == event.id and wire["time"] == "2030-01-01T10:00:00.000Z"
    assert wire["source"] == "eda/schedule/every-minute" and wire["data"] == {"sku": "SKU-1", "quantity": 5}


def test_the_relays_ticker_writes_the_next_tick_ahead_and_those_a_slow_loop_passed_once(declare):
    from eda.outbox.recurring import Ticker

    every = declare("* * * * * *", "stock-replenished", STOCK, name="every-second")
    ticker = Ticker([every], 100.5)

    def look(now):
        due = ticker.due(now)
        ticker.written(due)
        return [tick for _, tick in due]

    assert look(100.6) == [101.0]  # the next tick ahead, none before the relay started
    assert look(100.9) == []  # written already
    assert look(101.0) == [102.0]  # 101 falls due now (written ahead); the next one
    assert look(104.2) == [103.0, 104.0, 105.0]  # a slow loop: the ticks it passed, and the next
    stalled = look(100_000.0)  # a relay that stalled for a day: at most 100 passed ticks written, then the next
    assert len(stalled) == 101 and stalled[:2] == [106.0, 107.0] and stalled[-1] == 100_001.0


def test_a_relay_that_takes_over_or_comes_back_writes_from_then_on_never_the_ticks_before(declare):
    from eda.outbox.recurring import Ticker

    # Given a relay that started at 100.5 and stood by (another relay wrote and published the ticks since,
    # and their rows may be deleted by now: their unique ids would not stop them again)
    every = declare("* * * * * *", "stock-replenished", STOCK, name="every-second")
    standby = Ticker([every], 100.5)
    # When it takes the outbox over at 200.2
    standby.resume(200.2)
    # Then it writes the next tick ahead only (the one written ahead before covers 200.0's), none before
    assert [tick for _, tick in standby.due(200.2)] == [201.0]
